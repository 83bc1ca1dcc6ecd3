"""A plain reference learner: the yardstick for every claim about fraudstream's model.

"Better than random" proves little. "Better than what a competent engineer writes in an afternoon, on the same
stream, with the same labels arriving at the same times" is a claim worth making, and this module is that
afternoon. It is written apart from ``fraudstream.core`` on purpose (no shared features, model or label handling),
so that a bug or a lucky choice there cannot flatter both sides.

- Model: river ``StandardScaler | LogisticRegression`` with its defaults.
- Features (:data:`FEATURES`), per card in event time: amount, log amount, count and log of the sum over 1 h,
  24 h and 7 days (this authorization included), mean amount of the previous 30 days and this amount over it,
  log seconds since the previous authorization, distinct merchants in 24 h, a night flag (00:00-05:59 UTC); per
  merchant, the fraud rate of the last 30 days from the fraud labels known so far, with a prior of 1% weighing as
  much as 10 authorizations.
- Learning: a fraud label learns the features kept from scoring time as fraud; a tx-level label names one
  authorization, a card-level report (``since``) every remembered authorization of the card at or after ``since``.
  An authorization without a fraud label 7 days after its ``ts`` is learned as legitimate when a hash of its
  ``tx_id`` puts it in the 5% sample (never one on a card reported compromised at or before it). Legitimate
  labels are not used: the 7-day rule supplies the legitimate examples.
- Time: labels become known at their ``ts``, before an authorization of the same ``ts`` (as the backtest does).

>>> from fraudstream.contracts import Authorization, Label
>>> t0, day = 1_600_000_000_000, 86_400_000
>>> events = [Authorization(f"t{i}", "c1", "m1", 10.0 + i, t0 + i * day) for i in range(10)]
>>> result = ReferenceLearner().run(events, [Label("c1", True, t0 + day, "chargeback", "t0")])
>>> len(result.score), result.learned_fraud, result.score[0], result.score[1] > 0.5  # label known before t1
(10, 1, 0.5, True)
"""

from __future__ import annotations

import hashlib
import math
import time
from array import array
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from river import linear_model, preprocessing

from fraudstream.contracts import Authorization, Label

__all__ = ["FEATURES", "ReferenceLearner", "ReferenceResult", "in_legit_sample"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

FEATURES = (
    "amount", "log_amount", "count_1h", "log_sum_1h", "count_24h", "log_sum_24h", "count_7d", "log_sum_7d",
    "mean_amount_30d", "amount_to_mean_30d", "log_seconds_since_previous", "merchants_24h", "is_night",
    "merchant_fraud_rate_30d",
)

# A merchant's rate starts at 1% and weighs as much as 10 authorizations: one early fraud does not make it 100%.
_PRIOR_RATE, _PRIOR_WEIGHT = 0.01, 10.0
_NO_PREVIOUS_S = 30 * 86_400.0  # "long ago" for a card's first authorization


def in_legit_sample(tx_id: str, rate: float) -> bool:
    """Whether ``tx_id`` is in the legitimate sample: a hash, so every run and process picks the same ones.

    >>> in_legit_sample("tx-1", 1.0), in_legit_sample("tx-1", 0.0)
    (True, False)
    """
    digest = hashlib.blake2b(tx_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2.0**64


@dataclass
class ReferenceResult:
    """One entry per authorization in event-time order, as :class:`fraudstream.backtest.BacktestResult`."""

    card_id: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    tx_id: list[str] = field(default_factory=list)
    amount: list[float] = field(default_factory=list)
    seconds: float = 0.0
    learned_fraud: int = 0
    learned_legit: int = 0
    unmatched_labels: int = 0  # fraud labels for an authorization not (or no longer) remembered


class _Merchant:
    """Authorizations and known frauds per day, for the last ``window`` days."""

    __slots__ = ("days", "auths", "frauds")

    def __init__(self) -> None:
        self.days: deque[list[int]] = deque()  # [day, authorizations, frauds], oldest first
        self.auths = self.frauds = 0

    def rate(self, day: int, window: int) -> float:
        while self.days and self.days[0][0] <= day - window:
            _, auths, frauds = self.days.popleft()
            self.auths -= auths
            self.frauds -= frauds
        return (self.frauds + _PRIOR_RATE * _PRIOR_WEIGHT) / (self.auths + _PRIOR_WEIGHT)

    def seen(self, day: int) -> None:
        if not self.days or self.days[-1][0] != day:
            self.days.append([day, 0, 0])
        self.days[-1][1] += 1
        self.auths += 1

    def fraud(self, day: int) -> None:
        for bucket in reversed(self.days):  # a fraud of a day already out of the window is simply not counted
            if bucket[0] == day:
                bucket[2] += 1
                self.frauds += 1
                return


# One remembered authorization: (ts, amount, merchant_id, tx_id, features at scoring time).
_Seen = tuple[int, float, str, str, array]


def _card_features(history: deque[_Seen], ts: int, amount: float) -> list[float]:
    c1 = c24 = c7 = 1  # this authorization included
    s1 = s24 = s7 = amount
    n30, s30 = 0, 0.0
    merchants: set[str] = set()
    for t, a, m, _, _ in reversed(history):  # newest first, so the loop stops at 30 days
        age = ts - t
        if age >= 30 * DAY_MS:
            break
        n30 += 1
        s30 += a
        if age < 7 * DAY_MS:
            c7, s7 = c7 + 1, s7 + a
            if age < DAY_MS:
                c24, s24 = c24 + 1, s24 + a
                merchants.add(m)
                if age < HOUR_MS:
                    c1, s1 = c1 + 1, s1 + a
    mean30 = s30 / n30 if n30 else amount
    gap_s = (ts - history[-1][0]) / 1000 if history else _NO_PREVIOUS_S
    night = 1.0 if (ts // HOUR_MS) % 24 < 6 else 0.0
    return [amount, math.log1p(amount), c1, math.log1p(s1), c24, math.log1p(s24), c7, math.log1p(s7),
            mean30, amount / mean30 if mean30 > 0 else 1.0, math.log1p(min(gap_s, _NO_PREVIOUS_S)), len(merchants), night]


class ReferenceLearner:
    """Scores each authorization, then learns from the labels as they become known (see the module docstring)."""

    def __init__(self, legit_after_days: float = 7.0, legit_sample_rate: float = 0.05, merchant_window_days: int = 30,
                 memory_days: float = 61.0, max_per_card: int = 1000) -> None:
        self.legit_after_ms = int(legit_after_days * DAY_MS)
        self.legit_sample_rate = legit_sample_rate
        self.merchant_window_days = merchant_window_days
        # Features are kept for fraud labels this long (chargebacks take weeks) and for this many per card.
        self.memory_ms = int(memory_days * DAY_MS)
        self.max_per_card = max_per_card
        self.model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
        self.cards: dict[str, deque[_Seen]] = {}
        self.merchants: dict[str, _Merchant] = {}
        self.reported_since: dict[str, int] = {}  # card-level reports: the card is compromised from then on
        self.frauds: set[str] = set()  # tx_ids known fraud: learned once, never matured as legitimate
        self.maturing: deque[tuple[int, str, str, int, array]] = deque()  # (due, card, tx_id, ts, features), sampled only

    def run(self, events: Iterable[Authorization], labels: Iterable[Label]) -> ReferenceResult:
        started = time.perf_counter()
        out = ReferenceResult()
        pending = sorted(labels, key=lambda lb: lb.ts)
        i = 0
        for auth in sorted(events, key=lambda a: (a.ts, a.tx_id)):
            while i < len(pending) and pending[i].ts <= auth.ts:
                self._label(pending[i], out)
                i += 1
            self._mature(auth.ts, out)
            out.card_id.append(auth.card_id)
            out.ts.append(auth.ts)
            out.score.append(self._score(auth))
            out.tx_id.append(auth.tx_id)
            out.amount.append(auth.amount)
        out.seconds = time.perf_counter() - started
        return out

    def _score(self, auth: Authorization) -> float:
        history = self.cards.setdefault(auth.card_id, deque())
        merchant = self.merchants.setdefault(auth.merchant_id, _Merchant())
        day = auth.ts // DAY_MS
        x = array("d", _card_features(history, auth.ts, auth.amount))
        x.append(merchant.rate(day, self.merchant_window_days))
        merchant.seen(day)
        score = float(self.model.predict_proba_one(dict(zip(FEATURES, x, strict=True))).get(True, 0.0))
        history.append((auth.ts, auth.amount, auth.merchant_id, auth.tx_id, x))
        while history and (history[0][0] <= auth.ts - self.memory_ms or len(history) > self.max_per_card):
            history.popleft()
        if in_legit_sample(auth.tx_id, self.legit_sample_rate):
            self.maturing.append((auth.ts + self.legit_after_ms, auth.card_id, auth.tx_id, auth.ts, x))
        return score

    def _mature(self, now: int, out: ReferenceResult) -> None:
        while self.maturing and self.maturing[0][0] <= now:
            _, card_id, tx_id, ts, x = self.maturing.popleft()
            if tx_id not in self.frauds and self.reported_since.get(card_id, ts + 1) > ts:
                self._learn(x, False)
                out.learned_legit += 1

    def _label(self, label: Label, out: ReferenceResult) -> None:
        if not label.is_fraud:
            return
        history = self.cards.get(label.card_id, ())
        if label.tx_id is not None:
            targets = [seen for seen in history if seen[3] == label.tx_id]
            if not targets and label.tx_id not in self.frauds:
                out.unmatched_labels += 1
        else:
            since = label.since if label.since is not None else 0
            self.reported_since[label.card_id] = min(since, self.reported_since.get(label.card_id, since))
            # Only what was seen by now: the card's later authorizations are unknown to this label.
            targets = [seen for seen in history if seen[0] >= since]
        for ts, _, merchant_id, tx_id, x in targets:
            if tx_id not in self.frauds:
                self.frauds.add(tx_id)
                self._learn(x, True)
                self.merchants[merchant_id].fraud(ts // DAY_MS)
                out.learned_fraud += 1

    def _learn(self, x: array, is_fraud: bool) -> None:
        self.model.learn_one(dict(zip(FEATURES, x, strict=True)), is_fraud)
