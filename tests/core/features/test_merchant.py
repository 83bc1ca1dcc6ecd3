"""Merchant features: volume and amounts over 1/7/30 days, fraud rates from labels known so far, CPP share."""

from __future__ import annotations

import random

import pytest

from fraudstream.contracts import Authorization
from fraudstream.core.features import money
from fraudstream.core.features.merchant import MERCHANT_FEATURES, RECENT_CARDS, MerchantState, merchant_features, merchant_label

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
T0 = 1_700_438_400_000  # 2023-11-20T00:00:00Z

#: name -> (bucket width, buckets in the ring, buckets in the window)
WINDOWS = {"1d": (HOUR, 24, 24), "7d": (DAY, 30, 7), "30d": (DAY, 30, 30)}


def auth(tx: str, ts: int, amount: float = 10.0, card: str = "c1", merchant: str = "m1") -> Authorization:
    return Authorization(tx, card, merchant, amount, ts)


# --- by hand -----------------------------------------------------------------------------


def test_counts_and_means_over_1_7_and_30_days() -> None:
    s = MerchantState()
    merchant_features(s, auth("a", T0, 100.0))  # day 0, hour 0
    merchant_features(s, auth("b", T0 + 5 * DAY, 40.0))  # day 5
    merchant_features(s, auth("c", T0 + 9 * DAY + 2 * HOUR, 10.0))  # day 9
    f = merchant_features(s, auth("d", T0 + 9 * DAY + 23 * HOUR, 50.0))
    assert (f["merchant_count_1d"], f["merchant_amount_mean_1d"]) == (2.0, 30.0)  # c, d
    assert (f["merchant_count_7d"], f["merchant_amount_mean_7d"]) == (3.0, 100 / 3)  # days 3..9: b, c, d
    assert (f["merchant_count_30d"], f["merchant_amount_mean_30d"]) == (4.0, 50.0)
    # Window edges are bucket edges: 24 one-hour buckets back from hour 23 of day 9 start at hour 0 of day 9.
    # 24 one-hour buckets as of hour 1 of day 10 reach back to hour 2 of day 9: c is the far edge.
    f = merchant_features(s, auth("e", T0 + 10 * DAY + 1 * HOUR, 10.0))
    assert f["merchant_count_1d"] == 3.0  # c, d, e
    f = merchant_features(s, auth("f", T0 + 10 * DAY + 2 * HOUR, 10.0))
    assert f["merchant_count_1d"] == 3.0  # d, e, f: c's bucket just left
    assert f["merchant_count_30d"] == 6.0


def test_fraud_rate_counts_only_labels_applied_so_far() -> None:
    s = MerchantState()
    first = merchant_features(s, auth("t1", T0, card="c1"))
    assert first["merchant_fraud_rate_1d"] == 0.0  # t1 is fraud, but nobody knows yet
    merchant_label(s, "c1", T0, +1)
    assert first["merchant_fraud_rate_1d"] == 0.0  # what was returned is not rewritten
    f = merchant_features(s, auth("t2", T0 + MIN, card="c2"))
    assert (f["merchant_fraud_rate_1d"], f["merchant_fraud_rate_7d"], f["merchant_fraud_rate_30d"]) == (0.5, 0.5, 0.5)
    assert f["merchant_cpp_share"] == 0.5  # c1 of {c1, c2}


def test_a_contradicting_label_reverts_the_fraud_count() -> None:
    s = MerchantState()
    merchant_features(s, auth("t1", T0, card="c1"))
    merchant_label(s, "c1", T0, +1)
    merchant_label(s, "c1", T0, -1)  # overturned
    f = merchant_features(s, auth("t2", T0 + MIN, card="c2"))
    assert (f["merchant_fraud_rate_1d"], f["merchant_fraud_rate_7d"], f["merchant_fraud_rate_30d"]) == (0.0, 0.0, 0.0)
    assert f["merchant_cpp_share"] == 0.0


def test_a_legitimate_label_changes_nothing() -> None:
    s = MerchantState()
    merchant_features(s, auth("t1", T0, card="c1"))
    before = s.to_bytes()
    merchant_label(s, "c1", T0, 0)
    assert s.to_bytes() == before


def test_a_label_never_moves_the_clock() -> None:
    s = MerchantState()
    merchant_features(s, auth("t1", T0 + DAY, card="c1"))
    clock, hours, days = s.clock, s.hours.head, s.days.head
    merchant_label(s, "c1", T0 + DAY, +1)
    merchant_label(s, "c1", T0 + 5 * DAY, +1)  # a time the merchant has not reached: nowhere to count it
    assert (s.clock, s.hours.head, s.days.head) == (clock, hours, days)
    f = merchant_features(s, auth("t2", T0 + DAY + MIN, card="c2"))
    assert f["merchant_fraud_rate_1d"] == 0.5  # only the first label counted


def test_a_label_counts_in_the_windows_of_the_labelled_authorization() -> None:
    s = MerchantState()
    merchant_features(s, auth("old", T0, card="c1"))
    merchant_features(s, auth("now", T0 + 3 * DAY, card="c2"))
    merchant_label(s, "c1", T0, +1)  # three days back: outside 1d, inside 7d and 30d
    f = merchant_features(s, auth("next", T0 + 3 * DAY + MIN, card="c3"))
    assert f["merchant_fraud_rate_1d"] == 0.0
    assert f["merchant_fraud_rate_7d"] == pytest.approx(1 / 3)
    assert f["merchant_fraud_rate_30d"] == pytest.approx(1 / 3)
    # A label for an authorization older than every ring is dropped, not counted negative later.
    s2 = MerchantState()
    merchant_features(s2, auth("x", T0 + 40 * DAY))
    merchant_label(s2, "c1", T0, +1)
    merchant_label(s2, "c1", T0, -1)
    f = merchant_features(s2, auth("y", T0 + 40 * DAY + MIN))
    assert f["merchant_fraud_rate_30d"] == 0.0


def test_cpp_share_over_the_recent_cards() -> None:
    s = MerchantState()
    for i, card in enumerate(("c1", "c2", "c3", "c4")):
        merchant_features(s, auth(f"t{i}", T0 + i * MIN, card=card))
    merchant_label(s, "c2", T0 + MIN, +1)
    merchant_label(s, "c4", T0 + 3 * MIN, +1)
    f = merchant_features(s, auth("t9", T0 + 10 * MIN, card="c5"))
    assert f["merchant_cpp_share"] == pytest.approx(2 / 5)
    merchant_label(s, "unknown-card", T0, +1)  # counts in the fraud rate, no card to flag
    f = merchant_features(s, auth("t10", T0 + 11 * MIN, card="c5"))
    assert f["merchant_cpp_share"] == pytest.approx(2 / 5)
    assert f["merchant_fraud_rate_1d"] == pytest.approx(3 / 6)
    # Thirty days later those cards are no longer recent.
    f = merchant_features(s, auth("t11", T0 + 31 * DAY, card="c6"))
    assert f["merchant_cpp_share"] == 0.0


def test_recent_cards_are_capped() -> None:
    s = MerchantState()
    for i in range(RECENT_CARDS + 1):
        merchant_features(s, auth(f"t{i}", T0 + i * MIN, card=f"c{i}"))
        if i == 0:
            merchant_label(s, "c0", T0, +1)
    assert len(s.cards) == RECENT_CARDS
    f = merchant_features(s, auth("x", T0 + 100 * MIN, card="c1"))
    assert f["merchant_cpp_share"] == 0.0  # c0, the only compromised one, was the least recently seen


def test_a_late_event_is_scored_and_leaves_state_byte_identical() -> None:
    s = MerchantState()
    merchant_features(s, auth("a", T0, 30.0))
    merchant_features(s, auth("b", T0 + 2 * HOUR, 10.0))
    before = s.to_bytes()
    f = merchant_features(s, auth("late", T0 + 20 * MIN, 50.0, card="c9"))
    assert s.to_bytes() == before
    assert (f["merchant_count_1d"], f["merchant_amount_mean_1d"]) == (2.0, 40.0)  # a and itself; b is later
    assert (f["merchant_count_30d"], f["merchant_amount_mean_30d"]) == (3.0, 30.0)  # the day bucket holds all three


def test_a_readonly_event_is_scored_and_leaves_state_byte_identical() -> None:
    """What the merchant stage does with a redelivery: the features are read, nothing is stored."""
    s = MerchantState()
    merchant_features(s, auth("a", T0, 30.0))
    before = s.to_bytes()
    nxt = auth("b", T0 + MIN, 50.0, card="c9")
    f = merchant_features(s, nxt, readonly=True)
    assert s.to_bytes() == before
    assert f == merchant_features(MerchantState.from_bytes(before), nxt)  # the event counts itself either way
    assert (f["merchant_count_1d"], f["merchant_amount_mean_1d"]) == (2.0, 40.0)


def test_an_event_older_than_the_hour_ring_still_counts_itself() -> None:
    """With a grace period longer than a day, an event within grace can miss the 24-hour ring."""
    s = MerchantState()
    merchant_features(s, auth("a", T0 + 26 * HOUR, 10.0), grace_ms=2 * DAY)
    f = merchant_features(s, auth("b", T0, 30.0), grace_ms=2 * DAY)
    assert (f["merchant_count_1d"], f["merchant_amount_mean_1d"]) == (1.0, 30.0)  # itself, not stored in the hour ring
    assert (f["merchant_count_30d"], f["merchant_amount_mean_30d"]) == (1.0, 30.0)  # stored in day 0; a is in day 1
    f = merchant_features(s, auth("c", T0 + 26 * HOUR + MIN, 20.0), grace_ms=2 * DAY)
    assert (f["merchant_count_1d"], f["merchant_amount_mean_1d"]) == (2.0, 15.0)  # a, c
    assert (f["merchant_count_30d"], f["merchant_amount_mean_30d"]) == (3.0, 20.0)  # a, b, c


def test_round_trip() -> None:
    s = MerchantState()
    rng = random.Random(8)
    for i in range(300):
        merchant_features(s, auth(f"t{i}", T0 + i * 37 * MIN, rng.uniform(1, 300), card=f"c{rng.randrange(80)}"))
        if i % 13 == 0:
            merchant_label(s, f"c{rng.randrange(80)}", T0 + i * 37 * MIN, rng.choice((1, -1)))
    copy = MerchantState.from_bytes(s.to_bytes())
    assert copy.to_bytes() == s.to_bytes()
    assert (copy.clock, list(copy.cards), list(copy.card_seen), list(copy.card_compromised)) == (
        s.clock, list(s.cards), list(s.card_seen), list(s.card_compromised))
    for i, (dt_ms, card) in enumerate(((MIN, "c1"), (-2 * MIN, "c2"), (-DAY, "c3"), (3 * DAY, "new"))):
        nxt = auth(f"n{i}", s.clock + dt_ms, 77.0, card=card)
        assert merchant_features(copy, nxt) == merchant_features(s, nxt)
        merchant_label(copy, card, nxt.ts, +1)
        merchant_label(s, card, nxt.ts, +1)
        assert copy.to_bytes() == s.to_bytes()


# --- against a brute-force reference -------------------------------------------------------


class ReferenceMerchant:
    def __init__(self, grace_ms: int) -> None:
        self.grace_ms = grace_ms
        self.events: list[tuple[int, float]] = []
        self.labels: dict[str, list[tuple[int, int]]] = {name: [] for name in WINDOWS}  # per ring: (tx_ts, delta)
        self.flags: dict[str, int] = {}
        self.seen: dict[str, int] = {}

    def head(self, width: int) -> int | None:
        return max((ts // width for ts, _ in self.events), default=None)

    def label(self, card: str, tx_ts: int, delta: int) -> None:
        for name, (width, ring, _) in WINDOWS.items():
            head = self.head(width)
            if delta and head is not None and head - ring < tx_ts // width <= head:
                self.labels[name].append((tx_ts, delta))
        if delta and card in self.seen:
            self.flags[card] = 1 if delta > 0 else 0

    def features(self, a: Authorization) -> dict[str, float]:
        clock = max((ts for ts, _ in self.events), default=None)
        if clock is None or a.ts >= clock - self.grace_ms:
            self.events.append((a.ts, a.amount))
            self.seen[a.card_id] = max(self.seen.get(a.card_id, a.ts // MIN), a.ts // MIN)
            self.flags.setdefault(a.card_id, 0)
            stored = True
        else:
            stored = False
        out = {}
        for name, (width, ring, span) in WINDOWS.items():
            b, head = a.ts // width, self.head(width)

            def inside(ts: int, b: int = b, head: int | None = head, ring: int = ring, span: int = span, width: int = width) -> bool:
                return b - span < ts // width <= b and (head is None or ts // width > head - ring)

            amounts = [amt for ts, amt in self.events if inside(ts)] + ([] if stored else [a.amount])
            fraud = sum(d for ts, d in self.labels[name] if inside(ts))
            out["merchant_count_" + name] = float(len(amounts))
            out["merchant_amount_mean_" + name] = sum(amounts) / len(amounts)
            out["merchant_fraud_rate_" + name] = max(fraud, 0) / len(amounts)
            if name == "30d":
                before = [amt for ts, amt in self.events if inside(ts)]
                if stored:
                    before.remove(a.amount)  # what came before this authorization
                mean = sum(before) / len(before) if before else 0.0
                out["merchant_amount_ratio_30d"] = a.amount / mean if before and mean > 0 else 1.0
                # The newest day (at or before this one) with a confirmed fraud, while the window holds any.
                per_day: dict[int, int] = {}
                for ts, d in self.labels[name]:
                    if inside(ts):
                        per_day[ts // width] = per_day.get(ts // width, 0) + d
                newest = max((day for day, n in per_day.items() if n > 0), default=None)
                out["merchant_fraud_recency"] = 0.5 ** ((b - newest) / 7) if fraud > 0 and newest is not None else 0.0
        out["merchant_count_vs_30d"] = 30 * out["merchant_count_1d"] / out["merchant_count_30d"]
        since = a.ts // MIN - 30 * 1440
        recent = [c for c, m in self.seen.items() if m > since]
        out["merchant_cpp_share"] = sum(self.flags[c] for c in recent) / len(recent) if recent else 0.0
        return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_stream_matches_reference(seed: int) -> None:
    rng = random.Random(seed)
    grace = 300_000
    s, ref = MerchantState(), ReferenceMerchant(grace)
    clock = T0
    history: list[Authorization] = []
    with_fraud = cpp = recent_fraud = 0
    for i in range(300):
        r = rng.random()
        if r < 0.15:
            ts = clock - rng.randint(0, grace)
        elif r < 0.2:
            ts = clock - grace - rng.randint(1, 2 * DAY)
        else:
            clock += rng.choice((0, rng.randint(1, 30 * MIN), rng.randint(1, 6 * HOUR), rng.randint(1, 3 * DAY)))
            ts = clock
        a = auth(f"t{i}", ts, round(rng.uniform(1, 500), 2), card=f"c{rng.randrange(30)}")
        got = merchant_features(s, a, grace)
        want = ref.features(a)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9), a.tx_id
        with_fraud += got["merchant_fraud_rate_7d"] > 0
        cpp += got["merchant_cpp_share"] > 0
        recent_fraud += 0 < got["merchant_fraud_recency"] < 1
        history.append(a)
        if rng.random() < 0.2:  # a label arrives about some earlier authorization
            old = rng.choice(history)
            delta = rng.choice((1, 1, 0, -1))
            merchant_label(s, old.card_id, old.ts, delta)
            ref.label(old.card_id, old.ts, delta)
    assert with_fraud > 30 and cpp > 30 and recent_fraud > 10  # the labels did reach the features


# --- amounts in one currency ----------------------------------------------------------------


def test_merchant_means_mix_currencies_in_the_base_currency() -> None:
    usd = money.DEFAULT.rates["USD"]
    s = MerchantState()
    merchant_features(s, auth("a", T0, 3_000.0))
    merchant_features(s, Authorization("b", "c2", "m1", 20.0, T0 + HOUR, currency="USD"))
    f = merchant_features(s, Authorization("c", "c3", "m1", 4_000.0, T0 + 2 * HOUR, currency="KRW"))
    krw = 4_000.0 * money.DEFAULT.rates["KRW"]
    assert 300 < krw < 600  # ₩4,000 is a few hundred yen
    for w in WINDOWS:
        assert f[f"merchant_amount_mean_{w}"] == pytest.approx((3_000.0 + 20.0 * usd + krw) / 3)
    assert f["merchant_amount_ratio_30d"] == pytest.approx(krw / ((3_000.0 + 20.0 * usd) / 2))
    # Another base: means scale by the rate, ratios stay.
    dollars, s2 = money.Money("USD"), MerchantState()
    merchant_features(s2, auth("a", T0, 3_000.0), money=dollars)
    merchant_features(s2, Authorization("b", "c2", "m1", 20.0, T0 + HOUR, currency="USD"), money=dollars)
    g = merchant_features(s2, Authorization("c", "c3", "m1", 4_000.0, T0 + 2 * HOUR, currency="KRW"), money=dollars)
    assert g["merchant_amount_mean_30d"] == pytest.approx(f["merchant_amount_mean_30d"] / usd)
    assert g["merchant_amount_ratio_30d"] == pytest.approx(f["merchant_amount_ratio_30d"])


def test_a_mixed_currency_stream_matches_the_same_stream_in_yen() -> None:
    rng = random.Random(3)
    converted, in_yen = MerchantState(), MerchantState()
    for i in range(300):
        cur = rng.choice(["JPY", "JPY", "USD", "EUR", "CNY", "HKD", "SGD"])
        ts, amount, card = T0 + i * 23 * MIN, round(rng.uniform(1, 500), 2), f"c{rng.randrange(40)}"
        got = merchant_features(converted, Authorization(f"t{i}", card, "m1", amount, ts, currency=cur))
        want = merchant_features(in_yen, Authorization(f"t{i}", card, "m1", amount * money.DEFAULT.rates[cur], ts))
        assert got == want, i
    assert converted.to_bytes() == in_yen.to_bytes()


def test_an_unknown_currency_is_used_as_is_and_left_for_the_card_to_count() -> None:
    m = money.Money("JPY")
    s = MerchantState()
    merchant_features(s, auth("a", T0, 100.0), money=m)
    f = merchant_features(s, Authorization("b", "c2", "m1", 300.0, T0 + MIN, currency="XTS"), money=m)
    assert f["merchant_amount_mean_1d"] == 200.0 and m.unknown == {}  # counted once, by the card features


def test_fraud_recency_halves_every_week_and_ends_with_the_window() -> None:
    s = MerchantState()
    merchant_features(s, auth("t0", T0, 10.0, card="c0"))
    merchant_label(s, "c0", T0, +1)
    recency = [merchant_features(s, auth(f"t{d}", T0 + d * DAY, 10.0))["merchant_fraud_recency"] for d in (0, 7, 14, 29, 30)]
    assert recency == pytest.approx([1.0, 0.5, 0.25, 0.5 ** (29 / 7), 0.0])


def test_fraud_recency_is_the_newest_fraud_and_forgets_a_contradicted_one() -> None:
    s = MerchantState()
    for d, card in ((0, "old"), (10, "new")):
        merchant_features(s, auth(f"t{d}", T0 + d * DAY, 10.0, card=card))
    merchant_label(s, "old", T0, +1)
    merchant_label(s, "new", T0 + 10 * DAY, +1)
    assert merchant_features(s, auth("a", T0 + 12 * DAY, 10.0), readonly=True)["merchant_fraud_recency"] == pytest.approx(0.5 ** (2 / 7))
    merchant_label(s, "new", T0 + 10 * DAY, -1)  # the newer fraud was a mistake: the older one counts
    assert merchant_features(s, auth("b", T0 + 12 * DAY, 10.0), readonly=True)["merchant_fraud_recency"] == pytest.approx(0.5 ** (12 / 7))


def test_the_features_come_in_the_order_of_merchant_features() -> None:
    f = merchant_features(MerchantState(), auth("t1", T0))
    assert list(f) == list(MERCHANT_FEATURES)
    into: dict[str, float] = {"amount": 10.0}
    assert merchant_features(MerchantState(), auth("t1", T0), into=into) is into
    assert list(into) == ["amount", *MERCHANT_FEATURES] and into == {"amount": 10.0, **f}


def test_a_base_amount_given_is_not_converted_again() -> None:
    usd = Authorization("t1", "c1", "m1", 10.0, T0, currency="USD")
    converted = merchant_features(MerchantState(), usd)
    given = merchant_features(MerchantState(), usd, base_amount=money.DEFAULT.to_base(10.0, "USD", count=False))
    assert given == converted
    assert merchant_features(MerchantState(), usd, base_amount=10.0) == merchant_features(MerchantState(), auth("t1", T0))
