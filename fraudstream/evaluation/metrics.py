"""Offline metrics: ROC AUC, average precision, card precision and recall@k, and what a fraud center's director asks.

AUC, AP and CP@k compare rankings; a director asks what they buy: how many of the day's newly compromised cards the
team's k reviews found (card recall@k), how long a compromised card runs before it is stopped (time to detection)
and how much of the fraudulent amount came after that (amount prevented). The last two need alerts, and
:func:`alerts_from_scores` replays any score stream through fraudstream's own :class:`DecisionPolicy`, so the same
alert policy judges every learner.

Pure numpy, O(n log n); 1.75M transactions take well under a second each (the policy replay, a Python loop, a few
seconds).

>>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
>>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
0.8333

Card precision@k works on per-transaction records ``(card_id, ts_ms, score, is_fraud)``:

>>> day = 1_533_686_400_000  # 2018-08-08T00:00Z
>>> records = [("a", day, 0.9, 1), ("b", day + 1, 0.8, 0), ("c", day + 2, 0.1, 1)]
>>> cp = card_precision_at_k(records, k=2)
>>> cp.mean, cp.recall
(0.5, 0.5)
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DAY_MS",
    "AmountPrevented",
    "CardPrecision",
    "DayLike",
    "DailyReport",
    "Detection",
    "EvaluationReport",
    "alerts_from_scores",
    "amount_prevented",
    "average_precision",
    "card_precision_at_k",
    "day_index",
    "evaluate",
    "format_hours",
    "roc_auc",
    "scored_columns",
    "time_to_detection",
]

if TYPE_CHECKING:
    from fraudstream.config import Settings

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_EPOCH = dt.date(1970, 1, 1)

# A card with no known fraud label is known "never"; compared with ``<`` against day starts.
_NEVER = np.iinfo(np.int64).max

DayLike = dt.date | str


# --------------------------------------------------------------------------- threshold-free metrics


def _binary(y_true: ArrayLike) -> NDArray[np.bool_]:
    y = np.asarray(y_true)
    if y.dtype == np.bool_:
        return y.ravel()
    y = y.ravel()
    if y.size and not np.all((y == 0) | (y == 1)):
        raise ValueError("y_true must hold only 0/1 (or booleans)")
    return y.astype(bool)


def _score(y_score: ArrayLike, n: int) -> NDArray[np.float64]:
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if s.size != n:
        raise ValueError(f"y_true has {n} items but y_score has {s.size}")
    if np.isnan(s).any():
        raise ValueError("y_score contains NaN")
    return s


def _tie_groups(y: NDArray[np.bool_], s: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Positives and negatives per group of equal scores, groups in ascending score order."""
    order = np.argsort(s)  # tied items end up in one group whatever their order, so no stable sort needed
    s_sorted = s[order]
    starts = np.concatenate(([0], np.flatnonzero(s_sorted[1:] != s_sorted[:-1]) + 1))
    pos = np.add.reduceat(y[order].astype(np.int64), starts)
    size = np.diff(np.append(starts, s.size))
    return pos, size - pos


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve; tied scores count half (average ranks).

    Returns nan when either class is absent, where sklearn warns and also returns nan.

    >>> roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])
    0.5
    """
    y = _binary(y_true)
    s = _score(y_score, y.size)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    pos, neg = _tie_groups(y, s)
    neg_below = np.cumsum(neg) - neg
    # Mann-Whitney U: each positive beats the negatives below its group and ties with half of its own group.
    u = float(np.sum(pos * (neg_below + 0.5 * neg)))
    return u / (n_pos * n_neg)


def average_precision(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Step-wise average precision, sum over thresholds of (R_n - R_{n-1}) * P_n, as sklearn defines it.

    Tied scores form one threshold. With no positives it returns nan (sklearn returns 0.0 with a
    warning: the value is undefined, and 0.0 would pass for a real score in an average).

    >>> average_precision([1, 0, 1], [0.9, 0.9, 0.1])
    0.5833333333333333
    """
    y = _binary(y_true)
    s = _score(y_score, y.size)
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.nan
    pos, neg = _tie_groups(y, s)
    pos, size = pos[::-1], (pos + neg)[::-1]  # thresholds from the highest score down
    precision = np.cumsum(pos) / np.cumsum(size)
    return float(np.sum(pos * precision) / n_pos)


# --------------------------------------------------------------------------- records


def day_index(day: DayLike) -> int:
    """Days since 1970-01-01 (UTC) of a date or an ISO ``YYYY-MM-DD`` string.

    >>> day_index("2018-08-08")
    17751
    """
    if isinstance(day, str):
        day = dt.date.fromisoformat(day)
    return (day - _EPOCH).days


def _day_date(index: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=int(index))


def scored_columns(records: Any) -> tuple[NDArray[Any], NDArray[np.int64], NDArray[np.float64], NDArray[np.bool_]]:
    """``(card_id, ts, score, is_fraud)`` columns from any of the accepted record shapes.

    Accepted: a mapping of columns (keys ``card_id``, ``ts``, ``score``, ``is_fraud``), a numpy
    structured array with those fields, or a sequence of ``(card_id, ts_ms, score, is_fraud)`` tuples.
    """
    names = ("card_id", "ts", "score", "is_fraud")
    if isinstance(records, Mapping) or (isinstance(records, np.ndarray) and records.dtype.names):
        card, ts, score, fraud = (np.asarray(records[name]) for name in names)
    else:
        rows: Sequence[Any] = records if isinstance(records, Sequence) else list(records)
        if len(rows) == 0:
            card, ts, score, fraud = (np.empty(0) for _ in names)
        else:
            card, ts, score, fraud = (np.asarray(column) for column in zip(*rows, strict=True))
    n = card.size
    if not (ts.size == score.size == fraud.size == n):
        raise ValueError("record columns differ in length")
    return card, ts.astype(np.int64), _score(score, n), _binary(fraud)


def _factorize(values: NDArray[Any]) -> tuple[NDArray[Any], NDArray[np.int64]]:
    uniques, codes = np.unique(values, return_inverse=True)
    return uniques, codes.astype(np.int64).ravel()


def _known_at_by_code(uniques: NDArray[Any], fraud_known_at: Mapping[Any, int] | None) -> NDArray[np.int64]:
    known_at = np.full(uniques.size, _NEVER, dtype=np.int64)
    if fraud_known_at:
        index = {card: i for i, card in enumerate(uniques.tolist())}
        for card, ts in fraud_known_at.items():
            i = index.get(card)
            if i is not None:
                known_at[i] = min(int(known_at[i]), int(ts))
    return known_at


def _selected_days(day: NDArray[np.int64], days: Iterable[DayLike] | None) -> NDArray[np.bool_]:
    if days is None:
        return np.ones(day.size, dtype=bool)
    wanted = np.array(sorted({day_index(d) for d in days}), dtype=np.int64)
    return np.isin(day, wanted)


# --------------------------------------------------------------------------- card precision@k


@dataclass(frozen=True)
class CardPrecision:
    """Card precision@k per day, in day order, and its mean over those days.

    ``compromised`` counts each day's candidate cards (not yet known) that were compromised that
    day; with fewer than ``k`` of them the day cannot reach 1.0 (see :attr:`ceiling`).
    ``detected`` holds the cards each day's top k found compromised; they are dropped on later days.
    """

    k: int
    per_day: dict[dt.date, float]
    compromised: dict[dt.date, int]
    detected: dict[dt.date, tuple[Any, ...]]

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.per_day.values()))) if self.per_day else math.nan

    @property
    def ceiling(self) -> float:
        """The best mean a perfect ranking could reach on these days."""
        if not self.compromised:
            return math.nan
        return float(np.mean([min(c, self.k) / self.k for c in self.compromised.values()]))

    @property
    def recall_per_day(self) -> dict[dt.date, float]:
        """Card recall@k: the share of each day's candidate compromised cards that the day's top k found.

        From the same ranking as CP@k (``detected`` over ``compromised``); days without such a card are left out.

        >>> d0, d1 = dt.date(2018, 8, 8), dt.date(2018, 8, 9)
        >>> CardPrecision(2, {d0: 0.5, d1: 0.0}, {d0: 4, d1: 0}, {d0: ("a",), d1: ()}).recall_per_day
        {datetime.date(2018, 8, 8): 0.25}
        """
        return {day: len(self.detected[day]) / n for day, n in self.compromised.items() if n}

    @property
    def recall(self) -> float:
        """Mean card recall@k over the days that had a candidate compromised card (nan without one)."""
        values = list(self.recall_per_day.values())
        return float(np.mean(values)) if values else math.nan


def _card_precision(
    uniques: NDArray[Any],
    card: NDArray[np.int64],
    day: NDArray[np.int64],
    score: NDArray[np.float64],
    fraud: NDArray[np.bool_],
    known_at: NDArray[np.int64],
    k: int,
) -> CardPrecision:
    if k < 1:
        raise ValueError("k must be at least 1")
    per_day: dict[dt.date, float] = {}
    compromised: dict[dt.date, int] = {}
    detected: dict[dt.date, tuple[Any, ...]] = {}
    if card.size == 0:
        return CardPrecision(k, per_day, compromised, detected)

    # One row per (day, card): the card's highest score and whether any of its transactions was fraud.
    order = np.lexsort((card, day))
    g_day, g_card = day[order], card[order]
    starts = np.concatenate(([0], np.flatnonzero((g_day[1:] != g_day[:-1]) | (g_card[1:] != g_card[:-1])) + 1))
    g_day, g_card = g_day[starts], g_card[starts]
    g_score = np.maximum.reduceat(score[order], starts)
    g_fraud = np.maximum.reduceat(fraud[order], starts)

    found = np.zeros(uniques.size, dtype=bool)  # found compromised in an earlier day's top k
    day_starts = np.concatenate(([0], np.flatnonzero(g_day[1:] != g_day[:-1]) + 1, [g_day.size]))
    for lo, hi in itertools.pairwise(day_starts):
        d = int(g_day[lo])
        cards = g_card[lo:hi]
        keep = (known_at[cards] >= d * DAY_MS) & ~found[cards]
        cards, scores, frauds = cards[keep], g_score[lo:hi][keep], g_fraud[lo:hi][keep]
        # Rows are in card order, so a stable sort breaks ties by card id: deterministic and label-blind.
        top = np.argsort(-scores, kind="stable")[:k]
        hits = cards[top][frauds[top]]
        found[hits] = True
        date = _day_date(d)
        per_day[date] = hits.size / k
        compromised[date] = int(frauds.sum())
        detected[date] = tuple(uniques[hits].tolist())
    return CardPrecision(k, per_day, compromised, detected)


def card_precision_at_k(
    records: Any,
    k: int = 100,
    fraud_known_at: Mapping[Any, int] | None = None,
    days: Iterable[DayLike] | None = None,
) -> CardPrecision:
    """Card precision@k (CP@k), one value per UTC day, as domain.md defines it.

    ``records`` are per-transaction ``(card_id, ts_ms, score, is_fraud)`` (see :func:`scored_columns`).
    Days are UTC calendar days of ``ts``, taken in ascending order; with ``days`` given, only those
    days are evaluated and the rest of the records are ignored (also for step 2b). For each day:

    1. Each card gets its highest score that day; it is *compromised that day* when at least one of
       its transactions that day has ``is_fraud``.
    2. Cards already known to be compromised are dropped:

       a. by label: ``fraud_known_at[card]`` is the earliest ms at which a fraud label for the card
          became known; the card is dropped on every day whose start (00:00 UTC) is strictly after it;
       b. by investigation: the card was in an earlier evaluated day's top k and compromised that day.
    3. The remaining cards are ranked by score, highest first; ties are broken by ascending card id,
       so the result is deterministic and does not depend on labels.
    4. CP@k = (compromised cards in the top k) / k. The divisor is k even when fewer than k cards
       remain, as the Handbook does.

    Only days with at least one record are reported; :attr:`CardPrecision.mean` averages them.

    Card recall@k comes from the same ranking: :attr:`CardPrecision.recall_per_day` is each day's compromised cards
    found in the top k over the day's candidate compromised cards (step 2's survivors), and
    :attr:`CardPrecision.recall` their mean over the days with at least one.
    """
    card_ids, ts, score, fraud = scored_columns(records)
    day = ts // DAY_MS
    chosen = _selected_days(day, days)
    uniques, card = _factorize(card_ids[chosen])
    known_at = _known_at_by_code(uniques, fraud_known_at)
    return _card_precision(uniques, card, day[chosen], score[chosen], fraud[chosen], known_at, k)


# --------------------------------------------------------------------------- alerts, detection, amount prevented


def alerts_from_scores(
    card_id: ArrayLike,
    ts: ArrayLike,
    score: ArrayLike,
    k: int | None = None,
    fraud_known_at: Mapping[Any, int] | None = None,
    settings: Settings | None = None,
) -> NDArray[np.bool_]:
    """Which authorizations fraudstream's alert policy raises, for any learner's scores.

    The scores are replayed in ``ts`` order (ties in input order) through one
    :class:`fraudstream.core.decision.DecisionPolicy`, as a one-partition worker runs it: a budget of ``k`` a day
    (default ``alert_budget_per_day``; the threshold is the score the top ``k`` of the last 24 hours reached), floor,
    ceiling and cool-down from ``settings`` (default: :class:`fraudstream.config.Settings` defaults, not the
    environment), one :class:`CardStanding` per card. A card in
    ``fraud_known_at`` is blocked from that time on (no reissue): its authorizations are not alerts and, as in the
    worker, do not spend the budget. Returns, in input order, True for an ``alert`` or an ``update`` (the
    authorization reached the review topic).

    >>> t0 = 1_533_686_400_000
    >>> alerts_from_scores(["a", "a", "b", "c"], [t0, t0 + 1, t0 + 2, t0 + 3], [1.0, 1.0, 0.5, 1.0],
    ...                    fraud_known_at={"c": t0}).tolist()  # before warm-up only the ceiling alerts
    [True, True, False, False]
    """
    # Imported here: the metrics need only numpy to import.
    from fraudstream.config import Settings
    from fraudstream.core.decision import CardStanding, DecisionPolicy

    cards = np.asarray(card_id).ravel()
    times = np.asarray(ts, dtype=np.int64).ravel()
    scores = _score(score, cards.size)
    if times.size != cards.size:
        raise ValueError("card_id and ts differ in length")
    s = Settings() if settings is None else settings
    policy = DecisionPolicy(s.alert_budget_per_day if k is None else k, s.threshold_floor, s.threshold_ceiling, s.cooldown_ms)
    standings: dict[Any, CardStanding] = {}
    unconfirmed = dict(fraud_known_at or {})  # label times not yet reached: applied when the card's clock passes them
    alerted = np.zeros(cards.size, dtype=bool)
    order = np.argsort(times, kind="stable")
    for i, card, when, value in zip(order.tolist(), cards[order].tolist(), times[order].tolist(), scores[order].tolist(), strict=True):
        standing = standings.get(card)
        if standing is None:
            standing = standings[card] = CardStanding()
        label_at = unconfirmed.get(card)
        if label_at is not None and label_at <= when:  # at equal ts the label is known first, as in the backtest
            standing.confirm_fraud(int(label_at))
            del unconfirmed[card]
        # The tx_id only names the alert, which nothing reads here.
        alerted[i] = policy.decide(standing, "", when, value).action in ("alert", "update")
    return alerted


def _detection_times(
    card: NDArray[np.int64],
    ts: NDArray[np.int64],
    fraud: NDArray[np.bool_],
    alerted: NDArray[np.bool_],
    known_at: NDArray[np.int64],
) -> tuple[NDArray[np.bool_], NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """Per card code: counted (compromised, not known before), first fraud, detection time, detected by an alert."""
    n = known_at.size
    first_fraud = np.full(n, _NEVER, dtype=np.int64)
    np.minimum.at(first_fraud, card[fraud], ts[fraud])
    # A card known compromised (by label) when its first fraud came has nothing left to detect: CP@k drops it too.
    counted = (first_fraud != _NEVER) & (known_at > first_fraud)
    hit = alerted & (ts >= first_fraud[card])
    first_alert = np.full(n, _NEVER, dtype=np.int64)
    np.minimum.at(first_alert, card[hit], ts[hit])
    block = np.where(known_at == _NEVER, _NEVER, np.maximum(known_at, first_fraud))
    detected_at = np.minimum(first_alert, block)
    return counted, first_fraud, detected_at, first_alert < block


def _detection_inputs(
    card_id: ArrayLike, ts: ArrayLike, is_fraud: ArrayLike, alerted: ArrayLike, fraud_known_at: Mapping[Any, int] | None
) -> tuple[NDArray[Any], NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_], NDArray[np.bool_], NDArray[np.int64]]:
    uniques, card = _factorize(np.asarray(card_id).ravel())
    times = np.asarray(ts, dtype=np.int64).ravel()
    fraud, flags = _binary(is_fraud), _binary(alerted)
    if not (times.size == fraud.size == flags.size == card.size):
        raise ValueError("columns differ in length")
    return uniques, card, times, fraud, flags, _known_at_by_code(uniques, fraud_known_at)


@dataclass(frozen=True)
class Detection:
    """Time to detection per compromised card: first fraudulent authorization to first alert or block.

    ``hours`` is inf for a card never detected, so that the median shows the misses.
    """

    cards: tuple[Any, ...]  # the compromised cards counted, in card id order
    hours: NDArray[np.float64]
    by_alert: NDArray[np.bool_]  # detected by an alert before any label blocked the card

    @property
    def median_hours(self) -> float:
        """Median over the cards, never-detected ones infinitely late (inf when half or more are missed)."""
        return float(np.median(self.hours)) if self.hours.size else math.nan

    @property
    def detected_share(self) -> float:
        return float(np.isfinite(self.hours).mean()) if self.hours.size else math.nan

    @property
    def alerted_share(self) -> float:
        """Share of the cards whose detection was an alert, not a label."""
        return float(self.by_alert.mean()) if self.by_alert.size else math.nan


def time_to_detection(
    card_id: ArrayLike,
    ts: ArrayLike,
    is_fraud: ArrayLike,
    alerted: ArrayLike,
    fraud_known_at: Mapping[Any, int] | None = None,
) -> Detection:
    """How long each compromised card ran before it was stopped.

    A card is *compromised* when one of its authorizations is fraudulent; F is the first such ``ts``. It is
    *detected* at the earlier of its first alerted authorization at or after F, and its block: a card known
    compromised from a fraud label at T (``fraud_known_at[card]``) has every later authorization blocked, so the
    block is at T (at F if T came first). A card already known at its first fraud (T <= F) is not counted:
    nothing was left to detect. The delay is detection minus F, in hours; inf when neither happened.

    >>> h = 3_600_000
    >>> d = time_to_detection(["a", "a", "a", "b", "b"], [0, 2 * h, 3 * h, 0, h], [1, 1, 0, 1, 0], [0, 1, 1, 0, 0])
    >>> d.hours.tolist(), d.median_hours, d.detected_share
    ([2.0, inf], inf, 0.5)
    """
    uniques, card, times, fraud, flags, known_at = _detection_inputs(card_id, ts, is_fraud, alerted, fraud_known_at)
    counted, first_fraud, detected_at, by_alert = _detection_times(card, times, fraud, flags, known_at)
    return _detection(uniques, counted, first_fraud, detected_at, by_alert)


def _detection(
    uniques: NDArray[Any],
    counted: NDArray[np.bool_],
    first_fraud: NDArray[np.int64],
    detected_at: NDArray[np.int64],
    by_alert: NDArray[np.bool_],
) -> Detection:
    delay = (detected_at[counted] - first_fraud[counted]) / HOUR_MS
    hours = np.where(detected_at[counted] == _NEVER, math.inf, delay)
    return Detection(tuple(uniques[counted].tolist()), hours.astype(np.float64), by_alert[counted])


def format_hours(hours: float) -> str:
    """``"never"`` for inf, ``"-"`` for nan, else hours with one decimal.

    >>> format_hours(2.04), format_hours(math.inf), format_hours(math.nan)
    ('2.0 h', 'never', '-')
    """
    if math.isnan(hours):
        return "-"
    return "never" if math.isinf(hours) else f"{hours:.1f} h"


@dataclass(frozen=True)
class AmountPrevented:
    """Fraudulent amount at or after each compromised card's detection, and all of it, on the cards counted."""

    prevented: float
    total: float

    @property
    def share(self) -> float:
        return self.prevented / self.total if self.total > 0 else math.nan


def amount_prevented(
    card_id: ArrayLike,
    ts: ArrayLike,
    is_fraud: ArrayLike,
    amount: ArrayLike,
    alerted: ArrayLike,
    fraud_known_at: Mapping[Any, int] | None = None,
) -> AmountPrevented:
    """The fraudulent amount that detection would have stopped.

    On the compromised cards :func:`time_to_detection` counts, the fraudulent authorizations at or after the
    card's detection (first alert or block; the alerted authorization itself included) would have been declined or
    the card stopped. ``prevented`` sums their amounts, ``total`` the amounts of all those cards' frauds.

    >>> amount_prevented(["a", "a", "a", "b"], [0, 1, 2, 0], [1, 1, 1, 1], [10.0, 20.0, 30.0, 40.0], [0, 1, 0, 0])
    AmountPrevented(prevented=50.0, total=100.0)
    """
    uniques, card, times, fraud, flags, known_at = _detection_inputs(card_id, ts, is_fraud, alerted, fraud_known_at)
    amounts = _amounts(amount, card.size)
    counted, _, detected_at, _ = _detection_times(card, times, fraud, flags, known_at)
    return _prevented(card, times, fraud, amounts, counted, detected_at)


def _amounts(amount: ArrayLike, n: int) -> NDArray[np.float64]:
    a = np.asarray(amount, dtype=np.float64).ravel()
    if a.size != n:
        raise ValueError(f"{n} records but {a.size} amounts")
    return a


def _prevented(
    card: NDArray[np.int64],
    ts: NDArray[np.int64],
    fraud: NDArray[np.bool_],
    amounts: NDArray[np.float64],
    counted: NDArray[np.bool_],
    detected_at: NDArray[np.int64],
) -> AmountPrevented:
    rows = fraud & counted[card]
    stopped = rows & (ts >= detected_at[card])
    return AmountPrevented(prevented=float(amounts[stopped].sum()), total=float(amounts[rows].sum()))


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class DailyReport:
    """One day's figures, on that day's transactions less the cards known compromised by label."""

    day: dt.date
    transactions: int
    frauds: int
    compromised_cards: int  # candidates for CP@k: compromised that day and not yet known
    auc: float
    ap: float
    cp_at_k: float
    card_recall: float = math.nan  # card recall@k; nan on a day without a candidate compromised card


@dataclass(frozen=True)
class EvaluationReport:
    """Per-day rows and overall AUC, AP, mean CP@k and card recall@k; detection and amount figures when asked.

    ``detection`` needs alerts (``evaluate(alerted=...)``), ``prevented`` alerts and amounts; without them they
    are None and their figures nan.
    """

    k: int
    days: tuple[DailyReport, ...]
    auc: float
    ap: float
    cp_at_k: float
    cp_ceiling: float
    card_recall: float = math.nan
    detection: Detection | None = None
    prevented: AmountPrevented | None = None

    @property
    def median_hours_to_detection(self) -> float:
        return self.detection.median_hours if self.detection else math.nan

    @property
    def detected_share(self) -> float:
        return self.detection.detected_share if self.detection else math.nan

    @property
    def prevented_share(self) -> float:
        return self.prevented.share if self.prevented else math.nan

    @property
    def prevented_amount(self) -> float:
        return self.prevented.prevented if self.prevented else math.nan

    def as_dict(self, director: bool = False) -> dict[str, float]:
        """AUC, AP and CP@k (the keys of the published figures); ``director=True`` adds the other figures."""
        out = {"auc": self.auc, "ap": self.ap, f"cp{self.k}": self.cp_at_k}
        if director:
            out |= {
                f"card_recall{self.k}": self.card_recall,
                "median_hours_to_detection": self.median_hours_to_detection,
                "detected_share": self.detected_share,
                "prevented_share": self.prevented_share,
                "prevented_amount": self.prevented_amount,
            }
        return out

    def format_table(self) -> str:
        """A plain-text table, one line per day and a closing ``all`` line; then detection and amount, if known."""
        cp, cr = f"CP@{self.k}", f"CR@{self.k}"
        head = f"{'day':<10}  {'tx':>9}  {'fraud':>6}  {'cards*':>6}  {'AUC':>6}  {'AP':>6}  {cp:>7}  {cr:>7}"
        lines = [head, "-" * len(head)]
        for r in self.days:
            lines.append(
                f"{r.day.isoformat():<10}  {r.transactions:>9}  {r.frauds:>6}  {r.compromised_cards:>6}  "
                f"{r.auc:>6.3f}  {r.ap:>6.3f}  {r.cp_at_k:>7.3f}  {r.card_recall:>7.3f}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'all':<10}  {sum(r.transactions for r in self.days):>9}  {sum(r.frauds for r in self.days):>6}  "
            f"{sum(r.compromised_cards for r in self.days):>6}  {self.auc:>6.3f}  {self.ap:>6.3f}  {self.cp_at_k:>7.3f}  "
            f"{self.card_recall:>7.3f}"
        )
        lines.append(f"cards*: compromised, not yet known; {cr}: share of them in the top {self.k}; {cp} ceiling {self.cp_ceiling:.3f}")
        if self.detection is not None:
            d = self.detection
            lines.append(
                f"time to detection, median over {len(d.cards)} compromised cards: {format_hours(d.median_hours)}; "
                f"detected {d.detected_share:.1%} (by an alert {d.alerted_share:.1%})"
            )
        if self.prevented is not None:
            p = self.prevented
            lines.append(f"fraud amount prevented: {p.share:.1%} ({p.prevented:,.2f} of {p.total:,.2f})")
        return "\n".join(lines)


def _record_amounts(records: Any, amount: ArrayLike | None, n: int) -> NDArray[np.float64] | None:
    if amount is None and (isinstance(records, Mapping) or (isinstance(records, np.ndarray) and records.dtype.names)):
        if "amount" in (records.keys() if isinstance(records, Mapping) else records.dtype.names):
            amount = records["amount"]
    return None if amount is None else _amounts(amount, n)


def evaluate(
    records: Any,
    k: int = 100,
    fraud_known_at: Mapping[Any, int] | None = None,
    days: Iterable[DayLike] | None = None,
    *,
    alerted: ArrayLike | Literal["policy"] | None = None,
    amount: ArrayLike | None = None,
    settings: Settings | None = None,
) -> EvaluationReport:
    """AUC, AP, CP@k and card recall@k per UTC day and overall; time to detection and amount prevented.

    Like the Handbook's test set, each day first loses the transactions of cards known compromised
    by label before that day (``fraud_known_at[card] <`` day start). AUC and AP, per day and overall,
    are computed on what remains: the overall figures pool the remaining transactions of all
    evaluated days. Cards found by an earlier day's top k are dropped from CP@k only (step 2b of
    :func:`card_precision_at_k`), again as the Handbook does. Overall CP@k is the mean of the days;
    card recall@k comes from the same ranking (:attr:`CardPrecision.recall`).

    ``alerted``, one flag per record, or ``"policy"`` to compute them with :func:`alerts_from_scores` (budget
    ``k``, the rest from ``settings``; replayed over all records, ``days`` or not, so the threshold has its history),
    adds :func:`time_to_detection`; with ``amount`` per record too (or an ``amount`` column in ``records``),
    :func:`amount_prevented`. Both on the evaluated days' records, blocks from ``fraud_known_at``.

    >>> day = 1_533_686_400_000
    >>> records = [("a", day, 0.9, 1), ("b", day + 1, 0.8, 0), ("a", day + DAY_MS, 0.7, 1), ("b", day + DAY_MS, 0.2, 0)]
    >>> report = evaluate(records, k=1, alerted=[0, 0, 1, 0], amount=[5.0, 1.0, 7.0, 1.0])
    >>> [r.cp_at_k for r in report.days], report.auc, report.card_recall
    ([1.0, 0.0], 0.75, 1.0)
    >>> report.median_hours_to_detection, report.prevented
    (24.0, AmountPrevented(prevented=7.0, total=12.0))
    """
    card_ids, ts, score, fraud = scored_columns(records)
    amounts = _record_amounts(records, amount, card_ids.size)
    flags: NDArray[np.bool_] | None = None
    if isinstance(alerted, str):
        if alerted != "policy":
            raise ValueError(f"alerted must be flags or 'policy', got {alerted!r}")
        flags = alerts_from_scores(card_ids, ts, score, k=k, fraud_known_at=fraud_known_at, settings=settings)
    elif alerted is not None:
        flags = _binary(alerted)
        if flags.size != card_ids.size:
            raise ValueError(f"{card_ids.size} records but {flags.size} alert flags")
    day = ts // DAY_MS
    chosen = _selected_days(day, days)
    uniques, card = _factorize(card_ids[chosen])
    day, ts, score, fraud = day[chosen], ts[chosen], score[chosen], fraud[chosen]
    known_at = _known_at_by_code(uniques, fraud_known_at)

    cp = _card_precision(uniques, card, day, score, fraud, known_at, k)
    recall = cp.recall_per_day

    # A day whose cards are all known keeps its row (CP@k 0, AUC/AP nan), as in card_precision_at_k.
    unknown = known_at[card] >= day * DAY_MS
    order = np.argsort(day, kind="stable")
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(day[order])) + 1, [day.size])) if day.size else np.zeros(1)
    rows = []
    for lo, hi in itertools.pairwise(bounds.astype(np.int64)):
        idx = order[lo:hi]
        date = _day_date(int(day[idx[0]]))
        idx = idx[unknown[idx]]
        rows.append(
            DailyReport(
                day=date,
                transactions=int(idx.size),
                frauds=int(fraud[idx].sum()),
                compromised_cards=cp.compromised[date],
                auc=roc_auc(fraud[idx], score[idx]),
                ap=average_precision(fraud[idx], score[idx]),
                cp_at_k=cp.per_day[date],
                card_recall=recall.get(date, math.nan),
            )
        )

    detection = prevented = None
    if flags is not None:
        flags = flags[chosen]
        counted, first_fraud, detected_at, by_alert = _detection_times(card, ts, fraud, flags, known_at)
        detection = _detection(uniques, counted, first_fraud, detected_at, by_alert)
        if amounts is not None:
            prevented = _prevented(card, ts, fraud, amounts[chosen], counted, detected_at)
    return EvaluationReport(
        k=k,
        days=tuple(rows),
        auc=roc_auc(fraud[unknown], score[unknown]),
        ap=average_precision(fraud[unknown], score[unknown]),
        cp_at_k=cp.mean,
        cp_ceiling=cp.ceiling,
        card_recall=cp.recall,
        detection=detection,
        prevented=prevented,
    )
