"""Per-merchant state and the merchant half of the feature vector.

Fraud rates count only labels known when the authorization is scored:
a label updates the bucket of the labelled authorization's time when it
arrives, so a replay that reveals labels at their own ``ts`` sees exactly
what live scoring saw.

>>> from fraudstream.contracts import Authorization
>>> state = MerchantState()
>>> f = merchant_features(state, Authorization("t1", "c1", "m1", 40.0, 1_700_000_000_000))
>>> merchant_label(state, "c1", 1_700_000_000_000, +1)
>>> f = merchant_features(state, Authorization("t2", "c2", "m1", 60.0, 1_700_000_060_000))
>>> f["merchant_count_1d"], f["merchant_fraud_rate_1d"], f["merchant_cpp_share"]
(2.0, 0.5, 0.5)
"""

from __future__ import annotations

import struct
import zlib
from array import array
from typing import Final

from fraudstream.contracts import Authorization
from fraudstream.core.features.card import DAY_MS, HOUR_MS, MINUTE_MS, NO_TIME, find_key, shared, stable_hash
from fraudstream.core.features.money import DEFAULT, Money
from fraudstream.core.features.windows import BucketRing

__all__ = ["MerchantState", "merchant_features", "MERCHANT_FEATURES", "merchant_label", "MERCHANT_IDLE_MS"]

MERCHANT_IDLE_MS: Final = 30 * DAY_MS
#: Days for the weight of a confirmed fraud at a merchant to halve in ``merchant_fraud_recency``.
FRAUD_RECENCY_HALF_LIFE_DAYS: Final = 7.0
RECENT_CARDS: Final = 64
_HEADER = struct.Struct("<qB")
_COUNT, _SUM, _FRAUD = 0, 1, 2
_I64 = struct.Struct("q").pack  # a card's hash as it sits in array("q")
_crc32 = zlib.crc32
#: The merchant's features, in the order :func:`merchant_features` gives them.
MERCHANT_FEATURES: Final = (
    "merchant_count_1d", "merchant_amount_mean_1d", "merchant_fraud_rate_1d", "merchant_count_7d", "merchant_amount_mean_7d",
    "merchant_fraud_rate_7d", "merchant_count_30d", "merchant_amount_mean_30d", "merchant_fraud_rate_30d",
    "merchant_cpp_share", "merchant_amount_ratio_30d", "merchant_count_vs_30d", "merchant_fraud_recency",
)
#: A dict keyed as :func:`merchant_features` fills it, copied when it fills a new one (no growing on the way).
_BLANK: Final = dict.fromkeys(MERCHANT_FEATURES, 0.0)


class MerchantState:
    """Volume, amounts and confirmed fraud at one merchant, plus its recent cards."""

    __slots__ = ("clock", "hours", "days", "cards", "card_seen", "card_compromised", "shared")

    def __init__(self, hours: BucketRing | None = None, days: BucketRing | None = None) -> None:
        self.clock = NO_TIME
        # ``hours`` and ``days``: rings of its own, given by `copy` (none made here only to be replaced).
        self.hours = BucketRing(24, HOUR_MS, 3) if hours is None else hours  # count, amount sum, confirmed frauds
        self.days = BucketRing(30, DAY_MS, 3, spans=(7, 30)) if days is None else days
        self.cards: array[int] = array("q")  # stable hashes of the most recent cards
        self.card_seen: array[int] = array("q")  # minute last seen
        self.card_compromised: array[int] = array("b")
        #: Kept as a version of its partition too (`MerchantPartials`): read only from then on; its next change is
        #: made to a copy (`MerchantPartials.writable`). Not persisted.
        self.shared = False

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                _HEADER.pack(self.clock, len(self.cards)),
                self.hours.to_bytes(), self.days.to_bytes(),
                self.cards.tobytes(), self.card_seen.tobytes(), self.card_compromised.tobytes(),
            )
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> MerchantState:
        s = cls()
        s.clock, n = _HEADER.unpack_from(raw)
        view = memoryview(raw)[_HEADER.size :]
        for ring in (s.hours, s.days):
            ring.load_bytes(view)
            view = view[ring.nbytes :]
        s.cards = array("q", bytes(view[: 8 * n]))
        s.card_seen = array("q", bytes(view[8 * n : 16 * n]))
        s.card_compromised = array("b", bytes(view[16 * n : 17 * n]))
        return s

    def copy(self) -> MerchantState:
        """A state of its own, as this one is now (a partition's partial, published while its own goes on)."""
        s = MerchantState(self.hours.copy(), self.days.copy())
        s.clock = self.clock
        s.cards, s.card_seen, s.card_compromised = array("q", self.cards), array("q", self.card_seen), array("b", self.card_compromised)
        return s


def _note_card(state: MerchantState, card: int, minute: int) -> None:
    i = find_key(state.cards, _I64(card))
    if i >= 0:
        if minute > state.card_seen[i]:
            state.card_seen[i] = minute
    else:
        if len(state.cards) < RECENT_CARDS:
            state.cards.append(card)
            state.card_seen.append(minute)
            state.card_compromised.append(0)
        else:
            oldest = state.card_seen.index(min(state.card_seen))  # the least recently seen (the first of them)
            state.cards[oldest], state.card_seen[oldest], state.card_compromised[oldest] = card, minute, 0


def merchant_features(
    state: MerchantState, auth: Authorization, grace_ms: int = 300_000, readonly: bool = False, *, money: Money = DEFAULT,
    into: dict[str, float] | None = None, base_amount: float | None = None, others: tuple[MerchantState, ...] = (),
) -> dict[str, float]:
    """The merchant's features for ``auth``; adds it to the state unless it is late or ``readonly``.

    ``others``: what the merchant's other card partitions had contributed a little earlier
    (``fraudstream.core.features.partials``), counted with ``state`` in the order given, never changed.

    >>> a, b = MerchantState(), MerchantState()
    >>> _ = merchant_features(a, Authorization("t1", "c1", "m1", 40.0, 1_700_000_000_000))
    >>> f = merchant_features(b, Authorization("t2", "c2", "m1", 60.0, 1_700_000_060_000), others=(a,))
    >>> f["merchant_count_1d"], f["merchant_amount_mean_1d"], b.days.totals(b.clock)   # b holds its own only
    (2.0, 50.0, [1.0, 60.0, 0.0])

    Amounts are in ``money``'s base currency, as the card's (an unknown currency is used as is, and left for
    :func:`~fraudstream.core.features.card.card_features` to count: once per authorization); ``base_amount``, when
    the caller has it already (the card's ``"amount"`` feature), is not converted again. Returned in a new dict, or
    written into ``into`` (the card's features, when both halves are computed in one place: no dict to merge).
    """
    # Typed, for native arithmetic in the compiled module (see card_features).
    ts: int = auth.ts
    amount: float = auth.amount
    if base_amount is not None:
        amount = base_amount
    elif auth.currency != money.base:  # the common case costs this one comparison
        amount = money.to_base(amount, auth.currency, count=False)
    clock = state.clock
    store = not (readonly or (clock != NO_TIME and ts < clock - grace_ms))
    minute = ts // MINUTE_MS
    # Stored first, then read: a query at the ring's newest bucket costs no loop. When it is not stored
    # (late, read-only, or older than the ring's oldest bucket) it is counted in the totals only. Its
    # count and amount: the fraud field only ever changes with a label.
    values = (1.0, amount)
    c1, s1, f1 = state.hours.window(ts, values, store)
    c7, s7, f7, c30, s30, f30 = state.days.window(ts, values, store)
    for other in others:  # each ring's totals as of ts (summing the rings into one first costs ten times more)
        oc, os, of = other.hours.totals3(ts, 24)
        c1, s1, f1 = c1 + oc, s1 + os, f1 + of
        oc, os, of = other.days.totals3(ts, 7)
        c7, s7, f7 = c7 + oc, s7 + os, f7 + of
        oc, os, of = other.days.totals3(ts, 30)
        c30, s30, f30 = c30 + oc, s30 + os, f30 + of
    if store:
        _note_card(state, _crc32(auth.card_id.encode()), minute)  # stable_hash, inline
        if ts > clock:
            state.clock = ts
    # A byte search for a compromised card: much faster than `1 in compromised`.
    if b"\x01" in state.card_compromised.tobytes() or any(b"\x01" in o.card_compromised.tobytes() for o in others):
        since = minute - 30 * 24 * 60
        recent, fraud = _recent_cards(state, since)
        for other in others:  # cards the other partitions saw: never the same as this one's (a card lives in one)
            other_recent, other_fraud = _recent_cards(other, since)
            recent += other_recent
            fraud += other_fraud
        cpp = fraud / recent if recent else 0.0
    else:
        cpp = 0.0  # no card seen here was confirmed compromised
    # How recent the newest confirmed fraud here is (by when it happened): a terminal still compromised keeps getting
    # fresh ones, one whose compromise ended a fortnight ago only old ones, with the same 30-day rate.
    recency = 0.0
    if f30 > 0.5:
        age = state.days.newest_age(ts, _FRAUD)
        for other in others:
            other_age = other.days.newest_age(ts, _FRAUD)
            if other_age >= 0 and (age < 0 or other_age < age):
                age = other_age
        if age >= 0:
            recency = 0.5 ** (age / FRAUD_RECENCY_HALF_LIFE_DAYS)
    # Counts, rates and shares as shared objects when they are whole numbers, as most are (card.shared).
    out: dict[str, float] = _BLANK.copy() if into is None else into
    out["merchant_count_1d"] = shared(c1)
    out["merchant_amount_mean_1d"] = s1 / c1
    out["merchant_fraud_rate_1d"] = shared((0.0 if 0.0 > f1 else f1) / c1)
    out["merchant_count_7d"] = shared(c7)
    out["merchant_amount_mean_7d"] = s7 / c7
    out["merchant_fraud_rate_7d"] = shared((0.0 if 0.0 > f7 else f7) / c7)
    out["merchant_count_30d"] = shared(c30)
    out["merchant_amount_mean_30d"] = s30 / c30
    out["merchant_fraud_rate_30d"] = shared((0.0 if 0.0 > f30 else f30) / c30)
    out["merchant_cpp_share"] = shared(cpp)
    # Against what came before this authorization (1 with no history).
    out["merchant_amount_ratio_30d"] = amount * (c30 - 1.0) / (s30 - amount) if c30 > 1.0 and s30 > amount else 1.0
    out["merchant_count_vs_30d"] = 30.0 * c1 / c30
    out["merchant_fraud_recency"] = shared(recency)
    return out


def _recent_cards(state: MerchantState, since: int) -> tuple[int, int]:
    """Of the state's recent cards seen after minute ``since``: how many, and how many were confirmed compromised."""
    recent = fraud = 0
    for m, flag in zip(state.card_seen, state.card_compromised, strict=True):
        if m > since:
            recent += 1
            fraud += flag
    return recent, fraud


def merchant_label(state: MerchantState, card_id: str, tx_ts: int, fraud_delta: int) -> None:
    """A label about an authorization at this merchant became known.

    ``fraud_delta`` is +1 for a newly confirmed fraud, -1 when an earlier
    fraud label was contradicted, 0 for a legitimate label (it changes no
    fraud count but is accepted for symmetry).
    """
    if fraud_delta:
        state.hours.add_at(tx_ts, _FRAUD, float(fraud_delta))
        state.days.add_at(tx_ts, _FRAUD, float(fraud_delta))
        try:
            i = state.cards.index(stable_hash(card_id))
        except ValueError:
            return
        state.card_compromised[i] = 1 if fraud_delta > 0 else 0
