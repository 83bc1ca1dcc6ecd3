"""Card features against a brute-force reference, late events, redeliveries, persistence, bounded memory, eviction."""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass

import pytest

from fraudstream.contracts import Authorization
from fraudstream.core.features import money
from fraudstream.core.features.card import (
    CARD_FEATURES,
    CARD_IDLE_MS,
    MAX_GAP_S,
    NO_TIME,
    RECENT_TX,
    CardState,
    calendar_features,
    card_features,
    shared,
)
from fraudstream.core.features.money import UNITS_PER_EUR
from fraudstream.core.state import StateStore

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
T0 = 1_700_438_400_000  # 2023-11-20T00:00:00Z, a Monday

#: name -> (bucket width, buckets in the ring, buckets in the window), as documented
WINDOWS = {"1h": (5 * MIN, 12, 12), "24h": (HOUR, 24, 24), "7d": (DAY, 30, 7), "30d": (DAY, 30, 30)}
CNP = {"ecom", "moto"}


# --- the reference -------------------------------------------------------------------------


@dataclass
class Event:
    ts: int
    amount: float
    merchant: str
    country: str | None
    channel: str | None
    small: bool = False  # under a tenth of the card's 30-day mean before it


class ReferenceCard:
    """Keeps every event it accepted and computes each feature from scratch, from the documentation.

    A window as of ``ts`` covers the bucket of ``ts`` and the n-1 before it, minus buckets the ring's
    clock (the newest accepted event) has already expired, plus this authorization. An event older
    than the clock minus the grace period is late: scored, never stored.
    """

    def __init__(self, grace_ms: int, tz_offset_h: int = 0) -> None:
        self.grace_ms = grace_ms
        self.tz = tz_offset_h
        self.events: list[Event] = []

    @property
    def clock(self) -> int | None:
        return max((e.ts for e in self.events), default=None)

    def _window(self, ts: int, name: str) -> list[Event]:
        width, ring, span = WINDOWS[name]
        b = ts // width
        head = max(e.ts // width for e in self.events) if self.events else None
        return [e for e in self.events if b - span < e.ts // width <= b and (head is None or e.ts // width > head - ring)]

    def features(self, ev: Event) -> tuple[dict[str, float], dict[str, set[str]]]:
        clock = self.clock
        late = clock is not None and ev.ts < clock - self.grace_ms
        out: dict[str, float] = {"amount": ev.amount, "late": float(late)}
        for name in WINDOWS:
            amounts = [e.amount for e in self._window(ev.ts, name)] + [ev.amount]
            mean = sum(amounts) / len(amounts)
            out["card_count_" + name] = float(len(amounts))
            out["card_amount_sum_" + name] = sum(amounts)
            out["card_amount_mean_" + name] = mean
            out["card_amount_std_" + name] = math.sqrt(sum((a - mean) ** 2 for a in amounts) / len(amounts))
        before = [e.amount for e in self._window(ev.ts, "30d")]
        if before:
            mean = sum(before) / len(before)
            std = math.sqrt(sum((a - mean) ** 2 for a in before) / len(before))
            out["card_amount_ratio_30d"] = ev.amount / mean
            out["card_amount_zscore_30d"] = (ev.amount - mean) / max(std, 0.1 * mean)
        else:
            out["card_amount_ratio_30d"], out["card_amount_zscore_30d"] = 1.0, 0.0
        ev.small = bool(before) and out["card_amount_ratio_30d"] < 0.1
        day = self._window(ev.ts, "24h")
        out["card_cnp_share_24h"] = (sum(e.channel in CNP for e in day) + (ev.channel in CNP)) / (len(day) + 1)
        out["card_small_count_24h"] = float(sum(e.small for e in day) + ev.small)
        out["card_atm_count_24h"] = float(sum(e.channel == "atm" for e in day) + (ev.channel == "atm"))
        out["is_card_not_present"] = float(ev.channel in CNP)
        out["is_atm"] = float(ev.channel == "atm")
        out["card_count_vs_30d"] = 30 * out["card_count_24h"] / out["card_count_30d"]
        out["card_spend_vs_30d"] = 30 * out["card_amount_sum_24h"] / out["card_amount_sum_30d"]
        out["card_seconds_since_prev"] = MAX_GAP_S if clock is None else min(max(ev.ts - clock, 0) / 1000, MAX_GAP_S)
        local = dt.datetime.fromtimestamp(ev.ts / 1000, dt.UTC) + dt.timedelta(hours=self.tz)
        out["is_night"] = float(local.hour < 7)
        out["is_weekend"] = float(local.weekday() >= 5)
        # Sets, exact: what was used in the 24 hours up to this minute, and what was used after it.
        minute = ev.ts // MIN
        recent = [e for e in self.events if minute - 1440 < e.ts // MIN <= minute]
        later = [e for e in self.events if e.ts // MIN > minute]
        sets = {
            "merchants": {e.merchant for e in recent} | {ev.merchant},
            "countries": {e.country for e in recent if e.country} | ({ev.country} if ev.country else set()),
            "merchants_later": {e.merchant for e in later},
            "countries_later": {e.country for e in later if e.country},
            "merchants_30d": {e.merchant for e in self.events if minute - 30 * 1440 <= e.ts // MIN <= minute},
            "merchants_ever": {e.merchant for e in self.events},
            "countries_30d": {e.country for e in self.events if minute - 30 * 1440 <= e.ts // MIN <= minute},
            "channels": {e.channel or "pos" for e in recent} | {ev.channel or "pos"},
            "channels_30d": {e.channel or "pos" for e in self.events if minute - 30 * 1440 <= e.ts // MIN <= minute},
        }
        if not late:
            self.events.append(ev)
        return out, sets


# --- random streams ------------------------------------------------------------------------

MERCHANTS = [f"m{i}" for i in range(12)]  # fewer than the 16 remembered: the distinct count is exact
COUNTRIES = ["JP", "US", "FR", "DE", "GB", None]  # fewer than the 8 remembered
CHANNELS = ["pos", "ecom", "atm", "moto", None]


def random_stream(seed: int, n: int, grace_ms: int, out_of_order: bool) -> list[Authorization]:
    rng = random.Random(seed)
    clock = T0 + rng.randrange(DAY)
    out = []
    for i in range(n):
        r = rng.random()
        if out_of_order and r < 0.2:
            ts = clock - rng.randint(0, grace_ms)  # out of order, within grace: lands in its bucket
        elif out_of_order and r < 0.27:
            ts = clock - grace_ms - rng.randint(1, 3 * DAY)  # late
        else:
            gap = rng.choice([0, rng.randint(1, 120_000), rng.randint(1, 3 * HOUR), rng.randint(1, 2 * DAY), rng.randint(5 * DAY, 35 * DAY)]
                             if rng.random() < 0.03 else [0, rng.randint(1, 120_000), rng.randint(1, 3 * HOUR), rng.randint(1, 20 * HOUR)])
            ts = clock + gap
            snap = rng.random()
            if snap < 0.1:  # exactly on a bucket edge of one of the rings
                ts = ts - ts % rng.choice((5 * MIN, HOUR, DAY))
            elif snap < 0.2:  # the last ms of a bucket
                width = rng.choice((5 * MIN, HOUR, DAY))
                ts = ts - ts % width + width - 1
            ts = max(ts, clock)
            clock = ts
        amount = round(rng.choice([rng.uniform(1, 60), rng.uniform(50, 400), rng.uniform(1000, 9000)]), 2)
        out.append(Authorization(f"t{i}", "c1", rng.choice(MERCHANTS), amount, ts, country=rng.choice(COUNTRIES), channel=rng.choice(CHANNELS)))
    return out


def assert_matches(got: dict[str, float], want: dict[str, float], where: str) -> None:
    for name, value in want.items():
        scale = max(1.0, abs(value))
        tol = 1e-6 * scale
        if name.startswith(("card_amount_std", "card_amount_zscore")):
            tol = 1e-3 * scale  # sum of squares minus squared mean loses digits
        assert got[name] == pytest.approx(value, abs=tol), f"{where}: {name} = {got[name]}, expected {value}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_in_order_stream_matches_reference(seed: int) -> None:
    state, ref = CardState(), ReferenceCard(300_000, tz_offset_h=9)
    for auth in random_stream(seed, 350, 300_000, out_of_order=False):
        got = card_features(state, auth, 300_000, tz_offset_h=9)
        want, sets = ref.features(Event(auth.ts, auth.amount, auth.merchant_id, auth.country, auth.channel))
        assert_matches(got, want, auth.tx_id)
        assert got["card_distinct_merchants_24h"] == len(sets["merchants"]), auth.tx_id
        assert got["card_distinct_countries_24h"] == max(1, len(sets["countries"])), auth.tx_id
        assert got["card_first_at_merchant"] == float(auth.merchant_id not in sets["merchants_30d"]), auth.tx_id
        first_use = not ref.events[:-1]
        assert got["card_first_country"] == float(bool(auth.country) and auth.country not in sets["countries_30d"] and not first_use)
        assert got["card_first_channel"] == float((auth.channel or "pos") not in sets["channels_30d"] and not first_use)
        assert got["card_distinct_channels_24h"] == len(sets["channels"]), auth.tx_id
        sets_checked = {"card_distinct_merchants_24h", "card_distinct_countries_24h", "card_first_at_merchant", "card_first_country",
                        "card_first_channel", "card_distinct_channels_24h"}
        assert set(got) == set(want) | sets_checked


@pytest.mark.parametrize(("seed", "grace_ms"), [(11, 300_000), (12, 300_000), (13, 2 * HOUR)])
def test_out_of_order_stream_matches_reference(seed: int, grace_ms: int) -> None:
    """Out-of-order events within grace land in their buckets; late ones are scored only.

    With a 2-hour grace, some events within grace fall before the 1-hour ring's oldest bucket.
    """
    state, ref = CardState(), ReferenceCard(grace_ms, tz_offset_h=-5)
    lates = 0
    for auth in random_stream(seed, 400, grace_ms, out_of_order=True):
        got = card_features(state, auth, grace_ms, tz_offset_h=-5)
        want, sets = ref.features(Event(auth.ts, auth.amount, auth.merchant_id, auth.country, auth.channel))
        lates += want["late"] == 1.0
        assert_matches(got, want, auth.tx_id)
        # The card remembers when it last used each merchant: one used again later (in event time,
        # already seen) drops out of an older event's count. Nothing else may differ.
        merchants, later = sets["merchants"], sets["merchants_later"]
        exact = len(merchants)
        missing = len({m for m in merchants - {auth.merchant_id} if m in later})
        assert exact - missing <= got["card_distinct_merchants_24h"] <= exact, auth.tx_id
        if not later:
            assert got["card_distinct_merchants_24h"] == exact, auth.tx_id
        countries = sets["countries"]
        if not sets["countries_later"]:
            assert got["card_distinct_countries_24h"] == max(1, len(countries)), auth.tx_id
        else:
            assert 1 <= got["card_distinct_countries_24h"] <= max(1, len(countries)), auth.tx_id
        if want["late"]:
            # Read-only: "first at merchant" is whether the card remembers the merchant at all.
            assert got["card_first_at_merchant"] == float(auth.merchant_id not in sets["merchants_ever"]), auth.tx_id
        elif auth.merchant_id not in later:
            assert got["card_first_at_merchant"] == float(auth.merchant_id not in sets["merchants_30d"]), auth.tx_id
    assert lates > 10


# --- single features by hand ------------------------------------------------------------------


def auth(tx: str, ts: int, amount: float = 10.0, merchant: str = "m1", country: str | None = "JP", channel: str | None = "pos") -> Authorization:
    return Authorization(tx, "c1", merchant, amount, ts, country=country, channel=channel)


def test_a_first_authorization() -> None:
    f = card_features(CardState(), auth("t1", T0, 80.0, channel="ecom"))
    assert f["late"] == 0.0
    for w in WINDOWS:
        assert (f[f"card_count_{w}"], f[f"card_amount_sum_{w}"], f[f"card_amount_mean_{w}"], f[f"card_amount_std_{w}"]) == (1.0, 80.0, 80.0, 0.0)
    assert (f["card_amount_ratio_30d"], f["card_amount_zscore_30d"]) == (1.0, 0.0)
    assert f["card_seconds_since_prev"] == MAX_GAP_S
    assert (f["card_first_at_merchant"], f["card_distinct_merchants_24h"], f["card_distinct_countries_24h"]) == (1.0, 1.0, 1.0)
    assert f["card_cnp_share_24h"] == 1.0


def test_ratio_and_zscore_use_the_previous_30_days_only() -> None:
    s = CardState()
    for i, a in enumerate((10.0, 20.0, 30.0)):
        card_features(s, auth(f"t{i}", T0 + i * HOUR, a))
    f = card_features(s, auth("t9", T0 + 5 * HOUR, 100.0))
    # previous: mean 20, population std sqrt(200/3) = 8.165 (above the floor of 2)
    assert f["card_amount_ratio_30d"] == pytest.approx(5.0)
    assert f["card_amount_zscore_30d"] == pytest.approx(80 / math.sqrt(200 / 3))
    # std floored at 10% of the mean
    s = CardState()
    card_features(s, auth("a", T0, 50.0))
    card_features(s, auth("b", T0 + MIN, 50.0))
    f = card_features(s, auth("c", T0 + 2 * MIN, 75.0))
    assert f["card_amount_zscore_30d"] == pytest.approx(25 / 5)
    # Thirty days on, the earlier amounts have left the window: no normal, neutral values.
    f = card_features(s, auth("d", T0 + 30 * DAY, 500.0))
    assert (f["card_count_30d"], f["card_amount_ratio_30d"], f["card_amount_zscore_30d"]) == (1.0, 1.0, 0.0)


def test_seconds_since_previous() -> None:
    s = CardState()
    card_features(s, auth("a", T0))
    assert card_features(s, auth("b", T0 + 90_500))["card_seconds_since_prev"] == 90.5
    # out of order within grace: not negative
    assert card_features(s, auth("c", T0 + 30_000))["card_seconds_since_prev"] == 0.0
    # capped at 30 days
    assert card_features(s, auth("d", T0 + 90 * DAY))["card_seconds_since_prev"] == MAX_GAP_S


def test_distinct_merchants_and_countries_in_24_hours() -> None:
    s = CardState()
    card_features(s, auth("a", T0, merchant="m1", country="JP"))
    card_features(s, auth("b", T0 + HOUR, merchant="m2", country="US"))
    f = card_features(s, auth("c", T0 + 2 * HOUR, merchant="m1", country="JP"))
    assert (f["card_distinct_merchants_24h"], f["card_distinct_countries_24h"], f["card_first_at_merchant"]) == (2.0, 2.0, 0.0)
    f = card_features(s, auth("d", T0 + HOUR + DAY, merchant="m3", country=None))  # m1 (2 h) still in, a (0 h) out
    assert (f["card_distinct_merchants_24h"], f["card_distinct_countries_24h"]) == (2.0, 1.0)
    f = card_features(s, auth("e", T0 + 3 * DAY, merchant="m3", country=None))
    assert (f["card_distinct_merchants_24h"], f["card_distinct_countries_24h"]) == (1.0, 1.0)


def test_an_out_of_order_authorization_counts_its_own_merchant() -> None:
    s = CardState()
    card_features(s, auth("a", T0 + 2 * MIN, merchant="m1", country="JP"))
    f = card_features(s, auth("b", T0, merchant="m1", country="JP"))  # two minutes older, within grace
    assert f["late"] == 0.0
    assert (f["card_distinct_merchants_24h"], f["card_distinct_countries_24h"]) == (1.0, 1.0)


def test_first_at_merchant_forgets_after_30_days_and_past_16_merchants() -> None:
    s = CardState()
    card_features(s, auth("a", T0, merchant="m1"))
    assert card_features(s, auth("b", T0 + 30 * DAY, merchant="m1"))["card_first_at_merchant"] == 0.0  # exactly 30 days
    assert card_features(s, auth("c", T0 + 60 * DAY + MIN, merchant="m1"))["card_first_at_merchant"] == 1.0
    s = CardState()
    for i in range(17):  # m0 is the least recently used when m16 arrives
        card_features(s, auth(f"t{i}", T0 + i * MIN, merchant=f"m{i}"))
    assert len(s.merchants) == 16
    assert card_features(s, auth("x", T0 + 20 * MIN, merchant="m1"))["card_first_at_merchant"] == 0.0
    assert card_features(s, auth("y", T0 + 21 * MIN, merchant="m0"))["card_first_at_merchant"] == 1.0


def test_cnp_share() -> None:
    s = CardState()
    shares = [card_features(s, auth(f"t{i}", T0 + i * HOUR, channel=ch))["card_cnp_share_24h"]
              for i, ch in enumerate(("pos", "ecom", "moto", "atm", None))]
    assert shares == pytest.approx([0.0, 1 / 2, 2 / 3, 2 / 4, 2 / 5])


@pytest.mark.parametrize(
    ("iso", "tz", "night", "weekend"),
    [
        ("2023-11-18T06:59:59.999", 0, 1.0, 1.0),  # Saturday, last ms of the night
        ("2023-11-18T07:00:00", 0, 0.0, 1.0),
        ("2023-11-19T23:59:59.999", 0, 0.0, 1.0),  # Sunday
        ("2023-11-20T00:00:00", 0, 1.0, 0.0),  # Monday midnight
        ("2023-11-17T12:00:00", 0, 0.0, 0.0),  # Friday noon
        ("2023-11-19T15:00:00", 9, 1.0, 0.0),  # Monday 00:00 in Tokyo
        ("2023-11-17T22:00:00", 9, 0.0, 1.0),  # Saturday 07:00 in Tokyo
        ("2023-11-20T03:00:00", -5, 0.0, 1.0),  # Sunday 22:00 in New York
        ("2023-11-20T11:59:00", -5, 1.0, 0.0),  # Monday 06:59 in New York
    ],
)
def test_night_and_weekend_flags(iso: str, tz: int, night: float, weekend: float) -> None:
    ts = int(dt.datetime.fromisoformat(iso).replace(tzinfo=dt.UTC).timestamp() * 1000)
    assert calendar_features(ts, tz) == (night, weekend)
    f = card_features(CardState(), auth("t", ts), tz_offset_h=tz)
    assert (f["is_night"], f["is_weekend"]) == (night, weekend)


# --- late events ---------------------------------------------------------------------------


def history(n: int = 50) -> CardState:
    s = CardState()
    rng = random.Random(4)
    for i in range(n):
        card_features(s, auth(f"h{i}", T0 + i * 17 * MIN, rng.uniform(5, 500), merchant=rng.choice(MERCHANTS),
                              country=rng.choice(COUNTRIES), channel=rng.choice(CHANNELS)))
    return s


@pytest.mark.parametrize("age", [300_001, HOUR, 3 * DAY, 40 * DAY])
def test_a_late_event_is_scored_and_leaves_state_byte_identical(age: int) -> None:
    s = history()
    before = s.to_bytes()
    f = card_features(s, auth("late", s.clock - age, 999.0, merchant="new-merchant", channel="ecom"), grace_ms=300_000)
    assert f["late"] == 1.0
    assert s.to_bytes() == before
    assert f["card_count_1h"] >= 1.0 and f["card_first_at_merchant"] == 1.0
    assert f["card_seconds_since_prev"] == 0.0


def test_an_event_exactly_grace_behind_the_clock_is_not_late() -> None:
    s = history()
    before = s.to_bytes()
    f = card_features(s, auth("edge", s.clock - 300_000), grace_ms=300_000)
    assert f["late"] == 0.0
    assert s.to_bytes() != before


def test_late_event_windows_see_the_history_as_of_its_own_time() -> None:
    s = CardState()
    card_features(s, auth("a", T0, 100.0))
    card_features(s, auth("b", T0 + 3 * HOUR, 10.0))
    f = card_features(s, auth("late", T0 + 20 * MIN, 40.0))
    assert f["late"] == 1.0
    # 1h: the 5-minute ring's clock (b, 3 h later) has expired a's bucket; only the late event counts.
    assert (f["card_count_1h"], f["card_amount_sum_1h"]) == (1.0, 40.0)
    # 24h as of hour 0: a and the late event; b's hour is after it.
    assert (f["card_count_24h"], f["card_amount_sum_24h"]) == (2.0, 140.0)
    # Day buckets: a and b share the late event's day, so both are its "previous 30 days".
    assert (f["card_count_30d"], f["card_amount_sum_30d"]) == (3.0, 150.0)
    assert f["card_amount_ratio_30d"] == pytest.approx(40 / 55)


# --- persistence ---------------------------------------------------------------------------


def test_round_trip_preserves_the_features_of_the_next_event() -> None:
    # Alert and block state is no longer here: see test_a_standing_round_trips in tests/core/test_decision.py.
    s = history(200)
    for i in range(195, 200):
        s.note_tx(f"h{i}")
    copy = CardState.from_bytes(s.to_bytes())
    assert copy.to_bytes() == s.to_bytes()
    assert (copy.clock, list(copy.recent_tx)) == (s.clock, list(s.recent_tx))
    assert copy.seen_tx("h199") and copy.seen_tx("h195") and not copy.seen_tx("h194")
    for i, (dt_ms, merchant) in enumerate(((MIN, "m3"), (7 * HOUR, "zz"), (-2 * MIN, "m5"), (-DAY, "m1"), (40 * DAY, "m3"))):
        nxt = auth(f"n{i}", s.clock + dt_ms, 123.0 + i, merchant=merchant, channel="moto")
        assert card_features(copy, nxt) == card_features(s, nxt)
        assert copy.to_bytes() == s.to_bytes()


def test_a_fresh_state_round_trips() -> None:
    # A fresh standing (not compromised, no open alert): test_a_fresh_standing_round_trips in tests/core/test_decision.py.
    s = CardState()
    copy = CardState.from_bytes(s.to_bytes())
    assert (copy.clock, len(copy.recent_tx), copy.seen_tx("t1")) == (NO_TIME, 0, False)
    assert copy.to_bytes() == s.to_bytes()


# --- redeliveries --------------------------------------------------------------------------


def test_the_card_remembers_its_last_8_transactions() -> None:
    s = CardState()
    assert not s.seen_tx("t0")
    for i in range(RECENT_TX):
        s.note_tx(f"t{i}")
    assert RECENT_TX == 8 and all(s.seen_tx(f"t{i}") for i in range(8))
    s.note_tx("t8")  # the oldest is forgotten: memory stays bounded
    assert len(s.recent_tx) == 8 and not s.seen_tx("t0") and all(s.seen_tx(f"t{i}") for i in range(1, 9))


def test_a_readonly_event_is_scored_and_leaves_state_byte_identical() -> None:
    """What the card stage does with a redelivery: the features are read, nothing is stored."""
    s = history()
    before = s.to_bytes()
    nxt = auth("ro", s.clock + MIN, 999.0, merchant="new-merchant", channel="ecom")
    f = card_features(s, nxt, readonly=True)
    assert f["late"] == 0.0  # not late: read-only because the caller said so
    assert s.to_bytes() == before
    # The same windows as storing it would give: the event counts itself either way.
    stored = card_features(CardState.from_bytes(before), nxt)
    for name in ("card_count_1h", "card_count_24h", "card_count_7d", "card_count_30d", "card_amount_sum_30d", "card_first_at_merchant"):
        assert f[name] == stored[name], name


# --- bounded memory ------------------------------------------------------------------------


def full_state() -> CardState:
    """A card that has used more merchants, countries and tx_ids than it remembers: its largest state."""
    s = CardState()
    for i in range(30):
        card_features(s, Authorization(f"f{i}", "c1", f"merchant-{i}", 10.0, T0 + i * MIN, country=f"C{chr(65 + i % 26)}"))
        s.note_tx(f"f{i}")  # as the card stage does
    assert len(s.merchants) == 16 and len(s.countries) == 8 and len(s.recent_tx) == RECENT_TX
    return s


def test_memory_is_bounded_over_400_days_of_100k_events() -> None:
    s = CardState()
    step = 400 * DAY // 100_000
    merchants = [f"merchant-{i}" for i in range(40)]
    countries = ["JP", "US", "FR", "DE", "GB", "IT", "ES", "CN", "KR", "BR"]
    size_1k = 0
    for i in range(100_000):
        card_features(s, Authorization(f"t{i}", "c1", merchants[i * 7 % 40], 10.0 + i % 97, T0 + i * step,
                                       country=countries[i % 10], channel="ecom" if i % 3 else "pos"))
        s.note_tx(f"t{i}")
        if i == 999:
            size_1k = len(s.to_bytes())
    size = len(s.to_bytes())
    assert size == size_1k == len(full_state().to_bytes())  # fixed from the start, whatever the activity
    assert len(s.recent_tx) == RECENT_TX and s.seen_tx("t99999") and not s.seen_tx("t99991")
    # The open alert id, the only part of a card's state that could grow, now lives in its CardStanding
    # (test_only_the_open_alert_id_grows_a_standing in tests/core/test_decision.py): nothing here grows at all.
    assert card_features(s, Authorization("x", "c1", "m", 10.0, s.clock + MIN))["card_count_24h"] == pytest.approx(250.0, abs=2)


def test_a_full_card_state_fits_in_2_kb() -> None:
    assert len(full_state().to_bytes()) < 2048


def test_a_full_card_state_fits_in_2_003_bytes() -> None:
    """The bound that holds, measured: 2,003 bytes (11 header, 1,752 rings with their counts as uint32, 128 merchants,
    64 countries, 32 recent tx_ids, 16 for the channels' last use)."""
    assert len(full_state().to_bytes()) <= 2003


def _as_v1(state: CardState) -> bytes:
    """``state`` in the layout written before the hour ring counted probes and ATM use: rings of doubles only,
    the hour ring with 4 fields, no channel history."""
    from array import array

    def ring(r: object, fields: int) -> bytes:
        head, data, sums, f = r.head, r.data, r.sums, r.fields  # type: ignore[attr-defined]
        old = array("d", [data[i * f + j] for i in range(r.n) for j in range(fields)])  # type: ignore[attr-defined]
        return head.to_bytes(8, "little", signed=True) + old.tobytes() + array("d", sums[:fields]).tobytes()

    head = state.to_bytes()[:11]
    arrays = b"".join(a.tobytes() for a in (state.merchants, state.merchant_seen, state.countries, state.country_seen, state.recent_tx))
    return head + ring(state.minutes, 3) + ring(state.hours, 4) + state.days.to_bytes() + arrays


def test_a_state_written_by_the_previous_release_is_read_with_its_windows() -> None:
    """A rolling upgrade: the tables hold states in the earlier layout. They load with every window they had; the
    probe, ATM and channel history start empty."""
    s, rng = CardState(), random.Random(5)
    for i in range(50):  # what the earlier layout held: no probe-sized amounts, no ATM
        card_features(s, auth(f"h{i}", T0 + i * 17 * MIN, rng.uniform(50, 500), merchant=rng.choice(MERCHANTS),
                              country=rng.choice(COUNTRIES), channel=rng.choice(["pos", "ecom", "moto", None])))
    old = CardState.from_bytes(_as_v1(s))
    nxt = auth("next", s.clock + MIN, 42.0, merchant="m2", channel="pos")
    got, want = card_features(old, nxt), card_features(s, nxt)
    for name in want:
        if "channel" not in name:
            assert got[name] == want[name], name
    assert old.to_bytes()[: len(s.to_bytes()) - 16] == s.to_bytes()[:-16]  # then written in the new layout


# --- eviction ------------------------------------------------------------------------------


def test_evict_idle_forgets_cards_idle_longer_than_the_cutoff() -> None:
    durable: dict[str, bytes] = {}
    store = StateStore(CardState, CardState.from_bytes, durable)
    for card, ts in (("old", T0), ("edge", T0 + DAY), ("fresh", T0 + 10 * DAY)):
        card_features(store.get(card), Authorization(f"t-{card}", card, "m1", 10.0, ts))
        store.mark(card)
    store.flush()
    # A card only on the durable side (written before a restart, never loaded since).
    other = StateStore(CardState, CardState.from_bytes, durable)
    card_features(other.get("restored"), Authorization("t-r", "restored", "m1", 10.0, T0 - DAY))
    other.mark("restored")
    other.flush()
    now = T0 + DAY + CARD_IDLE_MS
    assert store.evict_idle(now, CARD_IDLE_MS) == 2  # old and restored; edge is exactly at the cutoff
    assert set(store.live) == {"edge", "fresh"}
    store.flush()
    assert set(durable) == {"edge", "fresh"}
    # An evicted card starts again from nothing.
    f = card_features(store.get("old"), Authorization("t2", "old", "m1", 10.0, now))
    assert (f["card_count_30d"], f["card_first_at_merchant"], f["card_seconds_since_prev"]) == (1.0, 1.0, MAX_GAP_S)


def test_evicting_a_dirty_card_does_not_write_it_back() -> None:
    durable: dict[str, bytes] = {}
    store = StateStore(CardState, CardState.from_bytes, durable)
    card_features(store.get("c"), Authorization("t", "c", "m1", 10.0, T0))
    store.mark("c")
    store.evict_idle(T0 + CARD_IDLE_MS + 1, CARD_IDLE_MS)
    assert store.flush() == 1
    assert durable == {} and len(store) == 0


# --- amounts in one currency ----------------------------------------------------------------


def jpy_history(s: CardState, days: int = 20) -> float:
    """A card that spends in yen, twice a day at home: returns its mean amount."""
    amounts = [2_000.0 + 500.0 * (i % 5) for i in range(2 * days)]
    for i, a in enumerate(amounts):
        card_features(s, auth(f"h{i}", T0 + i * 12 * HOUR, a))
    return sum(amounts) / len(amounts)


def test_a_foreign_purchase_is_compared_in_yen() -> None:
    s = CardState()
    mean = jpy_history(s)
    usd = money.DEFAULT.rates["USD"]
    assert 140 < usd < 170  # yen per dollar, roughly
    f = card_features(s, Authorization("abroad", "c1", "us-shop", 100.0, T0 + 20 * DAY, currency="USD", country="US"))
    assert f["amount"] == pytest.approx(100 * usd)
    assert f["card_amount_ratio_30d"] == pytest.approx(100 * usd / mean)  # about 15,000 / mean, not 100 / mean
    assert 4 < f["card_amount_ratio_30d"] < 8
    assert f["card_small_count_24h"] == 0.0  # not a probe-sized amount
    assert f["card_amount_sum_30d"] == pytest.approx(mean * 40 + 100 * usd)
    # The same purchase had it been taken as ¥100: a probe.
    s = CardState()
    jpy_history(s)
    f = card_features(s, Authorization("abroad", "c1", "us-shop", 100.0, T0 + 20 * DAY, country="US"))
    assert f["card_small_count_24h"] == 1.0 and f["card_amount_ratio_30d"] < 0.1


def test_a_mixed_currency_stream_matches_the_reference_in_yen() -> None:
    """Every feature of a stream in many currencies equals that of the same stream with its amounts in yen."""
    rng = random.Random(7)
    currencies = ["JPY", "JPY", "JPY", "USD", "EUR", "KRW", "TWD", "THB", "GBP"]
    converted, in_yen = CardState(), CardState()
    for a in random_stream(5, 300, 300_000, out_of_order=True):
        cur = rng.choice(currencies)
        foreign = Authorization(a.tx_id, a.card_id, a.merchant_id, a.amount, a.ts, currency=cur, country=a.country, channel=a.channel)
        rate = money.DEFAULT.rates[cur]
        assert rate == pytest.approx(UNITS_PER_EUR["JPY"] / UNITS_PER_EUR[cur])
        yen = Authorization(a.tx_id, a.card_id, a.merchant_id, a.amount * rate, a.ts, country=a.country, channel=a.channel)
        assert card_features(converted, foreign) == card_features(in_yen, yen), a.tx_id
    assert converted.to_bytes() == in_yen.to_bytes()  # the same state, in the same layout


def test_the_base_currency_scales_amounts_and_keeps_ratios() -> None:
    stream = [Authorization(f"t{i}", "c1", f"m{i % 3}", 1_000.0 + 700.0 * (i % 4), T0 + i * 5 * HOUR) for i in range(30)]
    stream.append(Authorization("x", "c1", "m9", 100.0, T0 + 31 * 5 * HOUR, currency="USD"))
    in_jpy, in_usd = CardState(), CardState()
    dollars = money.Money("USD")
    for a in stream:
        fj = card_features(in_jpy, a)
        fu = card_features(in_usd, a, money=dollars)
    assert fu["amount"] == 100.0 and fj["amount"] == pytest.approx(100.0 * money.DEFAULT.rates["USD"])
    assert fu["card_amount_mean_30d"] == pytest.approx(fj["card_amount_mean_30d"] / money.DEFAULT.rates["USD"])
    for name in ("card_amount_ratio_30d", "card_amount_zscore_30d", "card_spend_vs_30d", "card_small_count_24h"):
        assert fu[name] == pytest.approx(fj[name]), name
    # The state holds amounts in the base currency, in the same layout.
    assert len(in_usd.to_bytes()) == len(in_jpy.to_bytes())


def test_an_unknown_currency_is_used_as_is_and_counted_once() -> None:
    m = money.Money("JPY")
    s = CardState()
    f = card_features(s, Authorization("t1", "c1", "m1", 500.0, T0, currency="XTS"), money=m)
    assert f["amount"] == 500.0 and m.unknown == {"XTS": 1}
    card_features(s, Authorization("t2", "c1", "m1", 500.0, T0 + MIN, currency="JPY"), money=m)
    assert m.unknown_total == 1


# --- the dict the features come in -----------------------------------------------------------


def test_the_features_come_in_the_order_of_card_features_then_late() -> None:
    state = CardState()
    f = card_features(state, auth("t1", T0, 50.0))
    assert list(f) == [*CARD_FEATURES, "late"]
    # Into an empty dict: the same keys in the same order, so every key is written, each once.
    into: dict[str, float] = {}
    assert card_features(CardState(), auth("t1", T0, 50.0), into=into) is into and into == f and list(into) == list(f)


def test_written_into_a_dict_already_keyed_each_key_keeps_its_place() -> None:
    keyed = dict.fromkeys([*CARD_FEATURES, "late", "merchant_count_1d"], -1.0)
    card_features(CardState(), auth("t1", T0, 50.0), into=keyed)
    assert list(keyed) == [*CARD_FEATURES, "late", "merchant_count_1d"]
    assert keyed == {**card_features(CardState(), auth("t1", T0, 50.0)), "merchant_count_1d": -1.0}


@pytest.mark.parametrize("value", [0.0, 1.0, 7.0, 255.0, 256.0, 1e9, 0.5, 2.25, -1.0, -0.0, math.inf, 1e-300])
def test_a_shared_value_is_the_same_double(value: float) -> None:
    out = shared(value)
    assert out == value and math.copysign(1.0, out) == math.copysign(1.0, value)
    whole = value in (0.0, 1.0, 7.0, 255.0) and math.copysign(1.0, value) > 0
    assert (out is shared(float(str(value)))) == whole  # an equal float of its own: the same object only when shared
    assert math.isnan(shared(math.nan))


def test_flags_and_counts_are_shared_objects() -> None:
    state = CardState()
    first, second = (card_features(state, auth(f"t{i}", T0 + i * MIN, 50.0)) for i in range(2))
    assert first["card_first_at_merchant"] == 1.0 and second["card_first_at_merchant"] == 0.0
    assert second["is_atm"] is first["is_atm"] and second["card_count_30d"] is shared(2.0)
