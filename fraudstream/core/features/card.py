"""Per-card state and the card half of the feature vector.

>>> from fraudstream.contracts import Authorization
>>> state = CardState()
>>> f = card_features(state, Authorization("t1", "c1", "m1", 50.0, 1_700_000_000_000))
>>> f["card_count_24h"], f["card_first_at_merchant"]
(1.0, 1.0)
>>> f = card_features(state, Authorization("t2", "c1", "m1", 500.0, 1_700_000_060_000))
>>> f["card_count_1h"], f["card_amount_ratio_30d"], f["card_first_at_merchant"]
(2.0, 10.0, 0.0)
"""

from __future__ import annotations

import math
import struct
import zlib
from array import array

from fraudstream.contracts import CARD_NOT_PRESENT, Authorization
from fraudstream.core.features.windows import BucketRing

__all__ = ["CardState", "card_features", "calendar_features", "stable_hash", "MAX_GAP_S", "CARD_IDLE_MS"]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: A card unseen for longer than its longest window has nothing left to remember.
CARD_IDLE_MS = 30 * DAY_MS
MAX_GAP_S = 30 * 86_400.0
RECENT_MERCHANTS = 16
RECENT_COUNTRIES = 8
RECENT_TX = 8
NO_TIME = -(2**62)

_HEADER = struct.Struct("<qBBB")


def stable_hash(text: str) -> int:
    """Same in every process (``hash()`` of a str is salted per process)."""
    return zlib.crc32(text.encode())


class CardState:
    """What fraudstream remembers of one card's history: bounded, about 2.1 KB.

    Written only where the card's authorizations arrive in order (the
    authorizations topic's partition), so features follow the card's own order.
    Alert and block state live apart, in :class:`fraudstream.core.decision.CardStanding`.
    """

    __slots__ = ("clock", "minutes", "hours", "days", "merchants", "merchant_seen", "countries", "country_seen", "recent_tx")

    def __init__(self) -> None:
        self.clock = NO_TIME  # newest event time seen on this card
        self.minutes = BucketRing(12, 5 * MINUTE_MS, 3)  # count, sum, sum of squares
        self.hours = BucketRing(24, HOUR_MS, 4)  # count, sum, sum of squares, card-not-present count
        self.days = BucketRing(30, DAY_MS, 3, spans=(7, 30))
        # 32-bit: a stable hash is a crc32 and a minute fits until the year 6053: half the bytes of 64-bit.
        self.merchants = array("I")  # stable hashes of the most recent merchants
        self.merchant_seen = array("i")  # minute of last use, same order
        self.countries = array("I")
        self.country_seen = array("i")
        # The last few tx_ids (hashed): a redelivered authorization is counted once.
        self.recent_tx = array("I")

    # --- persistence --------------------------------------------------------
    def to_bytes(self) -> bytes:
        return b"".join(
            (
                _HEADER.pack(self.clock, len(self.merchants), len(self.countries), len(self.recent_tx)),
                self.minutes.to_bytes(), self.hours.to_bytes(), self.days.to_bytes(),
                self.merchants.tobytes(), self.merchant_seen.tobytes(), self.countries.tobytes(), self.country_seen.tobytes(),
                self.recent_tx.tobytes(),
            )
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> CardState:
        s = cls()
        s.clock, nm, nc, nt = _HEADER.unpack_from(raw)
        view = memoryview(raw)[_HEADER.size :]
        for ring in (s.minutes, s.hours, s.days):
            ring.load_bytes(view)
            view = view[ring.nbytes :]
        for name, n in (("merchants", nm), ("merchant_seen", nm), ("countries", nc), ("country_seen", nc), ("recent_tx", nt)):
            arr = array(getattr(s, name).typecode)
            arr.frombytes(view[: arr.itemsize * n])
            setattr(s, name, arr)
            view = view[arr.itemsize * n :]
        return s

    def seen_tx(self, tx_id: str) -> bool:
        return stable_hash(tx_id) in self.recent_tx

    def note_tx(self, tx_id: str) -> None:
        if len(self.recent_tx) >= RECENT_TX:
            del self.recent_tx[0]
        self.recent_tx.append(stable_hash(tx_id))


def _remember(keys: array, seen: array, key: int, minute: int, cap: int) -> tuple[bool, int]:
    """Note ``key`` as used at ``minute``; return (was it new, distinct within 24 h).

    Keeps at most ``cap`` keys, dropping the least recently used, so a card
    that visits thousands of merchants still costs the same memory.
    """
    try:
        i = keys.index(key)
        new = seen[i] < minute - 30 * 24 * 60  # forgotten after 30 days like every window
        seen[i] = max(seen[i], minute)
    except ValueError:
        new = True
        if len(keys) < cap:
            keys.append(key)
            seen.append(minute)
        else:
            oldest = min(range(len(seen)), key=seen.__getitem__)
            keys[oldest] = key
            seen[oldest] = minute
    return new, _distinct_24h(keys, seen, key, minute)


def _distinct_24h(keys: array, seen: array, key: int, minute: int) -> int:
    """``key`` (this authorization's) and the other keys last used in the 24 h up to ``minute``."""
    since = minute - 24 * 60
    return 1 + sum(1 for k, m in zip(keys, seen, strict=True) if k != key and since < m <= minute)


def _stats(count: float, total: float, squares: float) -> tuple[float, float]:
    if count <= 0:
        return 0.0, 0.0
    mean = total / count
    var = squares / count - mean * mean
    return mean, math.sqrt(var) if var > 1e-12 else 0.0


def calendar_features(ts: int, tz_offset_h: int = 0) -> tuple[float, float]:
    local = ts + tz_offset_h * HOUR_MS
    hour = (local // HOUR_MS) % 24
    weekday = (local // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    return (1.0 if hour <= 6 else 0.0), (1.0 if weekday >= 5 else 0.0)


def _window_features(state: CardState, ts: int, out: dict[str, float], extra: tuple[float, float, float],
                     held: tuple[bool, bool, bool] = (False, False, False)) -> None:
    """Window features as of ``ts``; ``extra`` (1, amount, amount²) counts this event in each ring
    (minutes, hours, days) whose ``held`` flag is False: a late event, or one older than the ring's oldest bucket."""
    rings = (("1h", state.minutes, 12, held[0]), ("24h", state.hours, 24, held[1]), ("7d", state.days, 7, held[2]), ("30d", state.days, 30, held[2]))
    for name, ring, span, stored in rings:
        t = ring.totals(ts, span)
        c, s, q = t[0], t[1], t[2]
        if not stored:
            c, s, q = c + extra[0], s + extra[1], q + extra[2]
        mean, std = _stats(c, s, q)
        out["card_count_" + name] = c
        out["card_amount_sum_" + name] = s
        out["card_amount_mean_" + name] = mean
        out["card_amount_std_" + name] = std


def _normal(out: dict[str, float], amount: float, squares_30d: float) -> None:
    """This amount against the card's 30-day normal, from what came before it."""
    c = out["card_count_30d"] - 1.0
    mean, std = _stats(c, out["card_amount_sum_30d"] - amount, squares_30d - amount * amount)
    if c > 0 and mean > 0:
        out["card_amount_ratio_30d"] = amount / mean
        # The floor keeps a card with identical amounts from dividing by zero; `or` covers subnormal amounts.
        out["card_amount_zscore_30d"] = (amount - mean) / (max(std, 0.1 * mean) or 1.0)
    else:
        out["card_amount_ratio_30d"] = 1.0
        out["card_amount_zscore_30d"] = 0.0


def card_features(
    state: CardState, auth: Authorization, grace_ms: int = 300_000, tz_offset_h: int = 0, readonly: bool = False
) -> dict[str, float]:
    """The card's features for ``auth``; adds ``auth`` to the state unless it is late or ``readonly``.

    Windows include this authorization. Returns the features with one extra
    key, ``"late"`` (1.0 or 0.0), which the caller removes before scoring.
    """
    ts, amount = auth.ts, auth.amount
    late = state.clock != NO_TIME and ts < state.clock - grace_ms
    readonly = readonly or late
    a2 = amount * amount
    cnp = 1.0 if auth.channel in CARD_NOT_PRESENT else 0.0
    gap = MAX_GAP_S if state.clock == NO_TIME else min(max(ts - state.clock, 0) / 1000.0, MAX_GAP_S)
    minute = ts // MINUTE_MS
    out: dict[str, float] = {"amount": amount}
    held = (False, False, False)
    if readonly:
        # Scored, but never lands in a window it would distort (late) or count twice (a redelivery).
        _window_features(state, ts, out, (1.0, amount, a2))
        merchant = stable_hash(auth.merchant_id)
        out["card_first_at_merchant"] = 0.0 if merchant in state.merchants else 1.0
        # This authorization's merchant and country count even when the card used them again later.
        out["card_distinct_merchants_24h"] = float(_distinct_24h(state.merchants, state.merchant_seen, merchant, minute))
        if auth.country:
            countries = _distinct_24h(state.countries, state.country_seen, stable_hash(auth.country), minute)
        else:
            countries = sum(1 for m in state.country_seen if minute - 1440 < m <= minute)
        out["card_distinct_countries_24h"] = float(max(countries, 1))
    else:
        # Stored first, then read: a query at the ring's newest bucket costs no loop.
        held = (state.minutes.add(ts, (1.0, amount, a2)), state.hours.add(ts, (1.0, amount, a2, cnp)), state.days.add(ts, (1.0, amount, a2)))
        _window_features(state, ts, out, (1.0, amount, a2), held)
        new, distinct = _remember(state.merchants, state.merchant_seen, stable_hash(auth.merchant_id), minute, RECENT_MERCHANTS)
        out["card_first_at_merchant"] = 1.0 if new else 0.0
        out["card_distinct_merchants_24h"] = float(distinct)
        if auth.country:
            _, countries = _remember(state.countries, state.country_seen, stable_hash(auth.country), minute, RECENT_COUNTRIES)
        else:
            countries = sum(1 for m in state.country_seen if minute - 1440 < m <= minute)
        out["card_distinct_countries_24h"] = float(max(countries, 1))
        if ts > state.clock:
            state.clock = ts
    cnp_24h = state.hours.totals(ts)[3] + (0.0 if held[1] else cnp)
    _normal(out, amount, state.days.totals(ts, 30)[2] + (0.0 if held[2] else a2))
    out["card_cnp_share_24h"] = cnp_24h / out["card_count_24h"]
    out["card_seconds_since_prev"] = gap
    out["is_night"], out["is_weekend"] = calendar_features(ts, tz_offset_h)
    out["late"] = 1.0 if late else 0.0
    return out
