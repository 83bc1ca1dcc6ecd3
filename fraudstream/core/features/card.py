"""Per-card state and the card half of the feature vector.

>>> from fraudstream.contracts import Authorization
>>> state = CardState()
>>> f = card_features(state, Authorization("t1", "c1", "m1", 50.0, 1_700_000_000_000))
>>> f["card_count_24h"], f["card_first_at_merchant"]
(1.0, 1.0)
>>> f = card_features(state, Authorization("t2", "c1", "m1", 500.0, 1_700_000_060_000))
>>> f["card_count_1h"], f["card_amount_ratio_30d"], f["card_first_at_merchant"]
(2.0, 10.0, 0.0)

Amounts are compared in one currency (the base, JPY by default): $10 abroad is ¥1,520, not ¥10.

>>> f = card_features(state, Authorization("t3", "c1", "m2", 10.0, 1_700_000_120_000, currency="USD"))
>>> round(f["amount"]), round(f["card_amount_ratio_30d"], 1)
(1520, 5.5)
"""

from __future__ import annotations

import math
import struct
import zlib
from array import array
from typing import Any, Final

from fraudstream.contracts import CARD_NOT_PRESENT, CHANNELS, Authorization
from fraudstream.core.features.money import DEFAULT, Money
from fraudstream.core.features.windows import BucketRing

__all__ = ["CardState", "card_features", "CARD_FEATURES", "calendar_features", "stable_hash", "MAX_GAP_S", "CARD_IDLE_MS"]

# Final: the compiled modules (fraudstream.core.native) use their values, not a lookup of the module's globals.
MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
#: A card unseen for longer than its longest window has nothing left to remember.
CARD_IDLE_MS: Final = 30 * DAY_MS
MAX_GAP_S: Final = 30 * 86_400.0
RECENT_MERCHANTS: Final = 16
RECENT_COUNTRIES: Final = 8
RECENT_TX: Final = 8
NO_TIME: Final = -(2**62)
#: An amount under this share of the card's 30-day mean is small: a probe, when a run of them comes before a large one.
SMALL_SHARE: Final = 0.1

_HEADER = struct.Struct("<qBBB")
_COUNT = (0,)  # a ring's count field, persisted as uint32: enough for the 2 KB bound (each costs a conversion)
#: The hour ring's fields: count, sum, sum of squares, card-not-present, small (probe-sized) and ATM counts.
_HOUR_COUNTS = (0, 3, 4, 5)
#: Channels in a fixed order: each one's last use (minute) is one int32 of the state.
_CHANNELS = tuple(sorted(CHANNELS))
_CHANNEL_INDEX = {c: i for i, c in enumerate(_CHANNELS)}
_NEVER = -(2**31)  # a channel's minute of last use before it was ever used
_crc32 = zlib.crc32
_U32 = struct.Struct("I").pack  # a key as it sits in an array("I"): native order and size

#: The card's features, in the order :func:`card_features` gives them (and ``"late"`` after them).
CARD_FEATURES: Final = (
    "amount", "card_count_1h", "card_amount_sum_1h", "card_amount_mean_1h", "card_amount_std_1h", "card_count_24h",
    "card_amount_sum_24h", "card_amount_mean_24h", "card_amount_std_24h", "card_count_7d", "card_amount_sum_7d",
    "card_amount_mean_7d", "card_amount_std_7d", "card_count_30d", "card_amount_sum_30d", "card_amount_mean_30d",
    "card_amount_std_30d", "card_first_at_merchant", "card_distinct_merchants_24h", "card_distinct_countries_24h",
    "card_amount_ratio_30d", "card_amount_zscore_30d", "card_cnp_share_24h", "card_seconds_since_prev", "is_night",
    "is_weekend", "is_card_not_present", "is_atm", "card_first_country", "card_first_channel",
    "card_distinct_channels_24h", "card_small_count_24h", "card_atm_count_24h", "card_count_vs_30d",
    "card_spend_vs_30d",
)
#: The whole numbers most counts, flags and empty shares are, as shared objects (:func:`shared`).
_WHOLE: Final[list[Any]] = [float(i) for i in range(256)]
_ZERO: Final[Any] = _WHOLE[0]
_ONE: Final[Any] = _WHOLE[1]
#: A dict keyed as :func:`card_features` fills it, copied for each authorization: its keys' places made in one step.
_BLANK: Final = dict.fromkeys((*CARD_FEATURES, "late"), 0.0)


def shared(v: float) -> Any:
    """``v``, as one shared object when it is a whole number from 0 to 255 (``-0.0`` excepted, which stays itself).

    Compiled (``fraudstream.core.native``), every float stored in a dict is a new object, 24 bytes; most feature values
    are counts, flags and empty shares, and every snapshot keeps its features to the maturity period.

    >>> shared(3.0) is shared(6.0 / 2), shared(0.5), shared(-0.0)
    (True, 0.5, -0.0)
    """
    if 0.0 <= v < 256.0:
        i = int(v)
        if float(i) == v and (i or math.copysign(1.0, v) > 0.0):
            return _WHOLE[i]
    return v


def find_key(keys: array[int], packed: bytes) -> int:
    """The index of a key in ``keys``, given as its ``packed`` bytes, or -1.

    A byte search: ``key in keys`` or ``keys.index`` make a Python int of every element on the way.
    """
    raw = keys.tobytes()
    size = keys.itemsize
    pos = raw.find(packed)
    while pos > 0 and pos % size:  # the bytes straddle two elements: not a match
        pos = raw.find(packed, pos + 1)
    return pos // size if pos >= 0 else -1


def stable_hash(text: str) -> int:
    """Same in every process (``hash()`` of a str is salted per process)."""
    return _crc32(text.encode())


class CardState:
    """What fraudstream remembers of one card's history: bounded, 2,019 bytes when full.

    Written only where the card's authorizations arrive in order (the
    authorizations topic's partition), so features follow the card's own order.
    Alert and block state live apart, in :class:`fraudstream.core.decision.CardStanding`.
    """

    __slots__ = ("clock", "minutes", "hours", "days", "merchants", "merchant_seen", "countries", "country_seen", "recent_tx",
                 "channel_seen")

    def __init__(self) -> None:
        self.clock = NO_TIME  # newest event time seen on this card
        self.minutes = BucketRing(12, 5 * MINUTE_MS, 3, counts=_COUNT)  # count, sum, sum of squares
        self.hours = BucketRing(24, HOUR_MS, 6, counts=_HOUR_COUNTS)  # count, sum, squares, card-not-present, small, ATM
        self.days = BucketRing(30, DAY_MS, 3, spans=(7, 30), counts=_COUNT)  # count (persisted as uint32), sum, squares
        # 32-bit: a stable hash is a crc32 and a minute fits until the year 6053: half the bytes of 64-bit.
        # Collisions are negligible at this scale: two of a card's 16 remembered merchants share a hash with
        # probability about 16 * 15 / 2 / 2**32 (3e-8), and a new tx_id matches one of the 8 remembered with
        # probability 8 / 2**32 (2e-9) per authorization.
        # Typed (array[int]): compiled, an element read is a native int, not an object compared generically.
        self.merchants: array[int] = array("I")  # stable hashes of the most recent merchants
        self.merchant_seen: array[int] = array("i")  # minute of last use, same order
        self.countries: array[int] = array("I")
        self.country_seen: array[int] = array("i")
        # The last few tx_ids (hashed): a redelivered authorization is counted once.
        self.recent_tx: array[int] = array("I")
        self.channel_seen: array[int] = array("i", [_NEVER] * len(_CHANNELS))  # minute of each channel's last use

    # --- persistence --------------------------------------------------------
    def to_bytes(self) -> bytes:
        return b"".join(
            (
                _HEADER.pack(self.clock, len(self.merchants), len(self.countries), len(self.recent_tx)),
                self.minutes.to_bytes(), self.hours.to_bytes(), self.days.to_bytes(),
                self.merchants.tobytes(), self.merchant_seen.tobytes(), self.countries.tobytes(), self.country_seen.tobytes(),
                self.recent_tx.tobytes(), self.channel_seen.tobytes(),
            )
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> CardState:
        s = cls()
        s.clock, nm, nc, nt = _HEADER.unpack_from(raw)
        view = memoryview(raw)[_HEADER.size :]
        if len(raw) == _V1_FIXED + 8 * (nm + nc) + 4 * nt:
            return _from_v1(s, view, nm, nc, nt)
        for ring in (s.minutes, s.hours, s.days):
            ring.load_bytes(view)
            view = view[ring.nbytes :]
        view = _read_arrays(s, view, nm, nc, nt)
        s.channel_seen = _read_array("i", view, len(_CHANNELS))
        return s

    def seen_tx(self, tx_id: str) -> bool:
        return find_key(self.recent_tx, _U32(stable_hash(tx_id))) >= 0  # a byte search: `in` makes an int of each

    def note_tx(self, tx_id: str) -> None:
        self._note_key(stable_hash(tx_id))

    def note_if_new(self, tx_id: str) -> bool:
        """:meth:`seen_tx`, then :meth:`note_tx` when it was not seen, with one hash: whether ``tx_id`` is new.

        >>> s = CardState()
        >>> s.note_if_new("t1"), s.note_if_new("t1"), s.seen_tx("t1")
        (True, False, True)
        """
        key = stable_hash(tx_id)
        if find_key(self.recent_tx, _U32(key)) >= 0:
            return False
        self._note_key(key)
        return True

    def _note_key(self, key: int) -> None:
        if len(self.recent_tx) >= RECENT_TX:
            del self.recent_tx[0]
        self.recent_tx.append(key)


#: The size of a state written before the hour ring counted probes and ATM use (2026-12), less its arrays:
#: header, minute ring of doubles, hour ring of 4 doubles, day ring.
_V1_FIXED = _HEADER.size + (8 + 12 * 3 * 8 + 3 * 8) + (8 + 24 * 4 * 8 + 4 * 8) + CardState().days.nbytes


def _from_v1(s: CardState, view: memoryview, nm: int, nc: int, nt: int) -> CardState:
    """A state in the earlier layout, as tables written by an earlier release hold it: same windows, with no
    probe, ATM or channel history (they fill as the card is used), so a rolling upgrade reads its tables."""
    minutes, hours = BucketRing(12, 5 * MINUTE_MS, 3), BucketRing(24, HOUR_MS, 4)
    for ring in (minutes, hours, s.days):
        ring.load_bytes(view)
        view = view[ring.nbytes :]
    for old, new in ((minutes, s.minutes), (hours, s.hours)):
        new.head = old.head
        for field in range(old.fields):
            new.data[field :: new.fields] = old.data[field :: old.fields]
        for span in range(len(new.spans)):
            new.sums[span * new.fields : span * new.fields + old.fields] = old.sums[span * old.fields : (span + 1) * old.fields]
        new.used = old.used
    _read_arrays(s, view, nm, nc, nt)
    return s


def _read_array(typecode: str, view: memoryview, n: int) -> array[int]:
    """The first ``n`` items of ``view`` (4 bytes each) as an array of ``typecode``."""
    arr = array(typecode)
    arr.frombytes(view[: 4 * n])
    return arr


def _read_arrays(s: CardState, view: memoryview, nm: int, nc: int, nt: int) -> memoryview:
    """The recent merchants, countries and tx_ids, as :meth:`CardState.to_bytes` writes them; what follows them."""
    s.merchants = _read_array("I", view, nm)
    s.merchant_seen = _read_array("i", view[4 * nm :], nm)
    s.countries = _read_array("I", view[8 * nm :], nc)
    s.country_seen = _read_array("i", view[8 * nm + 4 * nc :], nc)
    s.recent_tx = _read_array("I", view[8 * (nm + nc) :], nt)
    return view[8 * (nm + nc) + 4 * nt :]


def _remember(keys: array[int], seen: array[int], key: int, minute: int, cap: int) -> tuple[bool, int]:
    """Note ``key`` as used at ``minute``; return (was it new, distinct within 24 h).

    Keeps at most ``cap`` keys, dropping the least recently used, so a card
    that visits thousands of merchants still costs the same memory.
    """
    # find_key, inline: a byte search for the key
    raw = keys.tobytes()
    needle = _U32(key)
    pos = raw.find(needle)
    while pos > 0 and pos & 3:  # straddling two (4-byte) elements: not a match
        pos = raw.find(needle, pos + 1)
    i = pos >> 2  # -1 stays -1
    if i >= 0:
        last = seen[i]
        new = last < minute - 30 * 24 * 60  # forgotten after 30 days like every window
        if minute > last:
            seen[i] = minute
    else:
        new = True
        if len(keys) < cap:
            i = len(keys)
            keys.append(key)
            seen.append(minute)
        else:
            i = seen.index(min(seen))  # the least recently used (the first of them)
            keys[i] = key
            seen[i] = minute
    return new, _distinct_24h(seen, i, minute)


def _distinct_24h(seen: array[int], own: int, minute: int) -> int:
    """This authorization's key (at index ``own`` of the keys, -1 when absent) and the other keys last used
    in the 24 h up to ``minute`` (keys are unique)."""
    since = minute - 24 * 60
    n = 1
    # A loop over a list: compiled (fraudstream.core.native) it is native, twice as fast as sorting and two binary
    # searches (which compare Python ints); from source, no slower.
    last_used: list[int] = seen.tolist()
    for m in last_used:
        if since < m <= minute:
            n += 1
    if own >= 0 and since < seen[own] <= minute:
        n -= 1  # itself: counted once, above
    return n


def calendar_features(ts: int, tz_offset_h: int = 0) -> tuple[float, float]:
    local = ts + tz_offset_h * HOUR_MS
    hour = (local // HOUR_MS) % 24
    weekday = (local // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    return (1.0 if hour <= 6 else 0.0), (1.0 if weekday >= 5 else 0.0)


def card_features(
    state: CardState, auth: Authorization, grace_ms: int = 300_000, tz_offset_h: int = 0, readonly: bool = False,
    *, money: Money = DEFAULT, into: dict[str, float] | None = None,
) -> dict[str, float]:
    """The card's features for ``auth``; adds ``auth`` to the state unless it is late or ``readonly``.

    Windows include this authorization. Every amount (the ``amount`` feature, windows, ratios) is in ``money``'s
    base currency: ``auth``'s amount converted from its own currency (an unknown one is counted in
    ``money.unknown`` and used as is). Returns the features with one extra key, ``"late"`` (1.0 or 0.0), which the
    caller removes before scoring: in a new dict, or written into ``into`` (a dict already keyed in their order,
    with other keys after them: the scorer's, which then needs no growing as the other features come).
    """
    # Typed: mypyc compiles this module alone (setup.py), so what comes from an uncompiled one (the authorization,
    # money) would be Any to it, and every sum below generic Python arithmetic instead of native.
    ts: int = auth.ts
    amount: float = auth.amount
    if auth.currency != money.base:  # the common case costs this one comparison
        amount = money.to_base(amount, auth.currency)
    clock = state.clock
    late = clock != NO_TIME and ts < clock - grace_ms
    # A late authorization is scored, but never lands in a window it would distort, nor a redelivery
    # (readonly) in one it would count twice: either way it counts itself in its own windows only.
    store = not (readonly or late)
    a2 = amount * amount
    cnp = auth.channel in CARD_NOT_PRESENT
    if clock == NO_TIME:
        gap = MAX_GAP_S
    else:
        gap = (ts - clock) / 1000.0 if ts > clock else 0.0
        if gap > MAX_GAP_S:
            gap = MAX_GAP_S
    minute = ts // MINUTE_MS

    # Windows as of ts, this authorization counted once (stored first when it is stored, then read:
    # a query at the ring's newest bucket costs no loop). Days first: whether this amount is probe-sized
    # depends on the card's 30-day normal before it.
    values = (1.0, amount, a2)
    c7, s7, q7, c30, s30, q30 = state.days.window(ts, values, store)
    # This amount against the card's 30-day normal, from what came before it.
    c = c30 - 1.0
    if c > 0:  # the _stats arithmetic, inline
        mean = (s30 - amount) / c
        v = (q30 - a2) / c - mean * mean
        std = math.sqrt(v) if v > 1e-12 else 0.0
    else:
        mean = std = 0.0
    if c > 0 and mean > 0:
        ratio = amount / mean
        # The floor keeps a card with identical amounts from dividing by zero; `or` covers subnormal amounts.
        zscore = (amount - mean) / (max(std, 0.1 * mean) or 1.0)
    else:
        ratio, zscore = 1.0, 0.0
    small = 1.0 if ratio < SMALL_SHARE else 0.0
    atm = 1.0 if auth.channel == "atm" else 0.0
    c1, s1, q1 = state.minutes.window(ts, values, store)
    if cnp or small or atm:
        c24, s24, q24, cnp24, small24, atm24 = state.hours.window(ts, (1.0, amount, a2, 1.0 if cnp else 0.0, small, atm), store)
    else:  # (the other fields get nothing: adding 0.0 would change no sum)
        c24, s24, q24, cnp24, small24, atm24 = state.hours.window(ts, values, store)
    # Mean and standard deviation per window (every count is at least 1: this authorization).
    m1 = s1 / c1
    v = q1 / c1 - m1 * m1
    d1 = math.sqrt(v) if v > 1e-12 else 0.0
    m24 = s24 / c24
    v = q24 / c24 - m24 * m24
    d24 = math.sqrt(v) if v > 1e-12 else 0.0
    m7 = s7 / c7
    v = q7 / c7 - m7 * m7
    d7 = math.sqrt(v) if v > 1e-12 else 0.0
    m30 = s30 / c30
    v = q30 / c30 - m30 * m30
    d30 = math.sqrt(v) if v > 1e-12 else 0.0

    # The first use of a channel in 30 days, and how many channels in 24 hours (this one included).
    seen = state.channel_seen
    ch = _CHANNEL_INDEX.get(auth.channel or "pos", 0)
    first_channel = 1.0 if seen[ch] < minute - 30 * 24 * 60 else 0.0
    channels = 1
    for j, m in enumerate(seen):
        if j != ch and minute - 1440 < m <= minute:
            channels += 1
    if store and seen[ch] < minute:
        seen[ch] = minute

    # This authorization's merchant and country count even when the card used them again later.
    merchant = _crc32(auth.merchant_id.encode())
    if store:
        new, merchants = _remember(state.merchants, state.merchant_seen, merchant, minute, RECENT_MERCHANTS)
    else:
        own = find_key(state.merchants, _U32(merchant))
        new = own < 0
        merchants = _distinct_24h(state.merchant_seen, own, minute)
    first_country = False
    if auth.country:
        country = _crc32(auth.country.encode())
        if store:
            first_country, countries = _remember(state.countries, state.country_seen, country, minute, RECENT_COUNTRIES)
        else:
            own = find_key(state.countries, _U32(country))
            first_country = own < 0 or state.country_seen[own] < minute - 30 * 24 * 60
            countries = _distinct_24h(state.country_seen, own, minute)
        # A card's very first authorization is new everywhere: that says nothing of a new country.
        first_country = first_country and clock != NO_TIME
    else:
        countries = 0
        for m in state.country_seen:
            if minute - 1440 < m <= minute:
                countries += 1
        if countries < 1:
            countries = 1
    if store and ts > clock:
        state.clock = ts

    local = ts + tz_offset_h * HOUR_MS
    # Counts, flags and shares as shared objects when they are whole numbers (`shared`), as most are.
    out: dict[str, float] = _BLANK.copy() if into is None else into
    out["amount"] = amount
    out["card_count_1h"] = shared(c1)
    out["card_amount_sum_1h"] = s1
    out["card_amount_mean_1h"] = m1
    out["card_amount_std_1h"] = shared(d1)
    out["card_count_24h"] = shared(c24)
    out["card_amount_sum_24h"] = s24
    out["card_amount_mean_24h"] = m24
    out["card_amount_std_24h"] = shared(d24)
    out["card_count_7d"] = shared(c7)
    out["card_amount_sum_7d"] = s7
    out["card_amount_mean_7d"] = m7
    out["card_amount_std_7d"] = shared(d7)
    out["card_count_30d"] = shared(c30)
    out["card_amount_sum_30d"] = s30
    out["card_amount_mean_30d"] = m30
    out["card_amount_std_30d"] = shared(d30)
    out["card_first_at_merchant"] = _ONE if new else _ZERO
    out["card_distinct_merchants_24h"] = shared(float(merchants))
    out["card_distinct_countries_24h"] = shared(float(countries))
    out["card_amount_ratio_30d"] = ratio
    out["card_amount_zscore_30d"] = zscore
    out["card_cnp_share_24h"] = shared(cnp24 / c24)
    out["card_seconds_since_prev"] = gap
    # The calendar_features arithmetic, inline.
    out["is_night"] = _ONE if (local // HOUR_MS) % 24 <= 6 else _ZERO
    out["is_weekend"] = _ONE if (local // DAY_MS + 3) % 7 >= 5 else _ZERO
    out["is_card_not_present"] = _ONE if cnp else _ZERO
    out["is_atm"] = _ONE if atm else _ZERO
    out["card_first_country"] = _ONE if first_country else _ZERO
    out["card_first_channel"] = _ONE if first_channel and clock != NO_TIME else _ZERO
    out["card_distinct_channels_24h"] = shared(float(channels))
    out["card_small_count_24h"] = shared(small24)
    out["card_atm_count_24h"] = shared(atm24)
    # Today against the card's own 30-day pace: 1 when today is a usual day, up to 30 for a burst.
    out["card_count_vs_30d"] = 30.0 * c24 / c30
    out["card_spend_vs_30d"] = 30.0 * s24 / s30
    out["late"] = _ONE if late else _ZERO
    return out
