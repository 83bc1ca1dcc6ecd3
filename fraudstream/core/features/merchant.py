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
from array import array

from fraudstream.contracts import Authorization
from fraudstream.core.features.card import DAY_MS, HOUR_MS, MINUTE_MS, NO_TIME, stable_hash
from fraudstream.core.features.windows import BucketRing

__all__ = ["MerchantState", "merchant_features", "merchant_label", "MERCHANT_IDLE_MS"]

MERCHANT_IDLE_MS = 30 * DAY_MS
RECENT_CARDS = 64
_HEADER = struct.Struct("<qB")
_COUNT, _SUM, _FRAUD = 0, 1, 2


class MerchantState:
    """Volume, amounts and confirmed fraud at one merchant, plus its recent cards."""

    __slots__ = ("clock", "hours", "days", "cards", "card_seen", "card_compromised")

    def __init__(self) -> None:
        self.clock = NO_TIME
        self.hours = BucketRing(24, HOUR_MS, 3)  # count, amount sum, confirmed frauds
        self.days = BucketRing(30, DAY_MS, 3, spans=(7, 30))
        self.cards = array("q")  # stable hashes of the most recent cards
        self.card_seen = array("q")  # minute last seen
        self.card_compromised = array("b")

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


def _note_card(state: MerchantState, card: int, minute: int) -> None:
    try:
        i = state.cards.index(card)
        state.card_seen[i] = max(state.card_seen[i], minute)
    except ValueError:
        if len(state.cards) < RECENT_CARDS:
            state.cards.append(card)
            state.card_seen.append(minute)
            state.card_compromised.append(0)
        else:
            oldest = min(range(len(state.card_seen)), key=state.card_seen.__getitem__)
            state.cards[oldest], state.card_seen[oldest], state.card_compromised[oldest] = card, minute, 0


def merchant_features(state: MerchantState, auth: Authorization, grace_ms: int = 300_000, readonly: bool = False) -> dict[str, float]:
    """The merchant's features for ``auth``; adds it to the state unless it is late or ``readonly``."""
    ts = auth.ts
    late = readonly or (state.clock != NO_TIME and ts < state.clock - grace_ms)
    minute = ts // MINUTE_MS
    held = (False, False)  # whether the hours and days rings hold this authorization
    if not late:
        # Stored first, then read: a query at the ring's newest bucket costs no loop.
        held = (state.hours.add(ts, (1.0, auth.amount, 0.0)), state.days.add(ts, (1.0, auth.amount, 0.0)))
        _note_card(state, stable_hash(auth.card_id), minute)
        if ts > state.clock:
            state.clock = ts
    out: dict[str, float] = {}
    for name, ring, span, stored in (("1d", state.hours, 24, held[0]), ("7d", state.days, 7, held[1]), ("30d", state.days, 30, held[1])):
        c, s, fraud = ring.totals(ts, span)
        if not stored:  # late, or older than the ring's oldest bucket: counted here, never stored
            c, s = c + 1.0, s + auth.amount
        out["merchant_count_" + name] = c
        out["merchant_amount_mean_" + name] = s / c
        out["merchant_fraud_rate_" + name] = max(fraud, 0.0) / c
    since = minute - 30 * 24 * 60
    recent = [i for i, m in enumerate(state.card_seen) if m > since]
    out["merchant_cpp_share"] = (sum(state.card_compromised[i] for i in recent) / len(recent)) if recent else 0.0
    return out


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
