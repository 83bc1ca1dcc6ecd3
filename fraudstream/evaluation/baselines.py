"""The Fraud Detection Handbook's batch baselines, rebuilt from its description, on our data.

Features (15, vectorised numpy; :data:`FEATURES` names them in column order):

- ``amount``, a ``weekend`` flag (Saturday or Sunday, UTC) and a ``night`` flag (UTC hour <= 6);
- per card, over the last 1, 7 and 30 days: transaction count and mean amount. The window is
  ``(t - w, t]`` and holds the current transaction and the card's earlier ones, as the Handbook's
  time-based rolling windows do;
- per terminal (``merchant_id``), over 1, 7 and 30 days taken after a 7-day label delay: transaction
  count and fraud rate in ``(t - delay - w, t - delay]`` (rate 0 for an empty window).

Protocol: 7 training days, 7 delay days, 7 test days; with the default test week 2018-08-08..14 the
training week is 2018-07-25..31. Features are computed on all transactions given (so windows reach
back before the training week); the training week is used whole; each test day loses the cards
known compromised by label, and CP@k also drops cards found by an earlier test day's top k (see
:func:`fraudstream.evaluation.metrics.evaluate`). As in the Handbook, only frauds from the training
week on count as known, each one ``delay`` days after it happened: a fraud on day X is known from
day X + delay + 1. Features are standardised with the training week's mean and std.

scikit-learn is an optional extra and is imported only by :func:`baseline_reports`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.evaluation.metrics import DAY_MS, HOUR_MS, DayLike, EvaluationReport, day_index, evaluate

__all__ = [
    "FEATURES",
    "MODELS",
    "PUBLISHED",
    "Protocol",
    "Transactions",
    "baseline_features",
    "baseline_reports",
    "known_by_label",
    "protocol_known_cards",
    "run_baselines",
]

WINDOWS_DAYS = (1, 7, 30)
DELAY_DAYS = 7

FEATURES: tuple[str, ...] = (
    "amount",
    "weekend",
    "night",
    *(f"card_{stat}_{w}d" for w in WINDOWS_DAYS for stat in ("count", "mean_amount")),
    *(f"terminal_{stat}_{w}d" for w in WINDOWS_DAYS for stat in ("count", "fraud_rate")),
)

MODELS = ("logistic_regression", "random_forest", "random")

#: The Handbook's published test-set figures on its simulated data (domain.md).
PUBLISHED: dict[str, dict[str, float]] = {
    "logistic_regression": {"auc": 0.871, "ap": 0.606, "cp100": 0.291},
    "random_forest": {"auc": 0.867, "ap": 0.658, "cp100": 0.287},
    "xgboost": {"auc": 0.862, "ap": 0.639, "cp100": 0.273},
    "xgboost_selected": {"auc": 0.869, "ap": 0.687, "cp100": 0.303},
    "random": {"auc": 0.5, "ap": 0.007, "cp100": 0.017},
}

_COLUMNS = ("tx_id", "card_id", "merchant_id", "amount", "ts", "is_fraud")


@dataclass(frozen=True)
class Transactions:
    """Columns of a transaction log, in time order; cards and terminals as dense int codes.

    ``cards[card[i]]`` is the original card id of row ``i`` (likewise ``terminals``).
    """

    card: NDArray[np.int64]
    terminal: NDArray[np.int64]
    amount: NDArray[np.float64]
    ts: NDArray[np.int64]
    is_fraud: NDArray[np.bool_]
    cards: NDArray[Any]
    terminals: NDArray[Any]

    def __len__(self) -> int:
        return int(self.ts.size)

    @classmethod
    def of(cls, transactions: Any) -> Transactions:
        """From a mapping of columns or a structured array (``card_id``, ``merchant_id``, ``amount``,
        ``ts``, ``is_fraud``; ``tx_id`` is not needed), or a sequence of
        ``(tx_id, card_id, merchant_id, amount, ts_ms, is_fraud)`` tuples or of objects with those
        attributes. Rows out of time order are sorted (stably)."""
        if isinstance(transactions, Transactions):
            return transactions
        cols = _columns(transactions)
        ts = np.asarray(cols["ts"], dtype=np.int64)
        order = None if np.all(ts[1:] >= ts[:-1]) else np.argsort(ts, kind="stable")

        def column(name: str, dtype: Any = None) -> NDArray[Any]:
            values = np.asarray(cols[name], dtype=dtype)
            return values if order is None else values[order]

        cards, card = np.unique(column("card_id"), return_inverse=True)
        terminals, terminal = np.unique(column("merchant_id"), return_inverse=True)
        fraud = column("is_fraud")
        return cls(
            card=card.astype(np.int64).ravel(),
            terminal=terminal.astype(np.int64).ravel(),
            amount=column("amount", np.float64),
            ts=ts if order is None else ts[order],
            is_fraud=fraud.astype(bool) if fraud.dtype != np.bool_ else fraud,
            cards=cards,
            terminals=terminals,
        )


def _columns(transactions: Any) -> Mapping[str, Any]:
    if isinstance(transactions, Mapping):
        return transactions
    if isinstance(transactions, np.ndarray) and transactions.dtype.names:
        return {name: transactions[name] for name in transactions.dtype.names}
    rows: Sequence[Any] = transactions if isinstance(transactions, Sequence) else list(transactions)
    if len(rows) == 0:
        return {name: np.empty(0) for name in _COLUMNS}
    if isinstance(rows[0], tuple | list):
        return dict(zip(_COLUMNS, zip(*rows, strict=True), strict=True))
    return {name: [getattr(row, name) for row in rows] for name in _COLUMNS[1:]}


# --------------------------------------------------------------------------- features


class _Grouped:
    """Rows sorted by (group, time) under one int64 key, so a window edge is one searchsorted."""

    def __init__(self, group: NDArray[np.int64], ts: NDArray[np.int64], widest_ms: int) -> None:
        # ts is already in time order, so a stable sort by group keeps each group's rows in time order.
        self.order = np.argsort(group, kind="stable")
        t0 = int(ts.min())
        # Groups sit `stride` apart: a window reaching back `widest_ms` never reaches the previous group.
        stride = int(ts.max()) - t0 + widest_ms + 1
        if int(group.max()) * stride >= np.iinfo(np.int64).max // 2:
            raise OverflowError("too many groups for this time span")
        self.key = group[self.order] * stride + (ts[self.order] - t0)

    def after(self, back_ms: int) -> NDArray[np.int64]:
        """For each sorted row, the first row of its group later than ``back_ms`` before it."""
        return np.searchsorted(self.key, self.key - back_ms, side="right").astype(np.int64)

    def unsort(self, values: NDArray[Any]) -> NDArray[Any]:
        out = np.empty_like(values)
        out[self.order] = values
        return out


def _prefix(values: NDArray[Any]) -> NDArray[np.float64]:
    return np.concatenate(([0.0], np.cumsum(values, dtype=np.float64)))


def baseline_features(
    transactions: Any, windows_days: Sequence[int] = WINDOWS_DAYS, delay_days: int = DELAY_DAYS
) -> NDArray[np.float64]:
    """The Handbook's baseline features, one row per transaction in time order (see :data:`FEATURES`).

    >>> day = 1_533_686_400_000  # a Wednesday, 00:00 UTC
    >>> rows = [("t1", "c", "m", 10.0, day, 0), ("t2", "c", "m", 30.0, day + 3_600_000, 0)]
    >>> baseline_features(rows)[1, :5].tolist()  # amount, weekend, night, card count 1d, card mean 1d
    [30.0, 0.0, 1.0, 2.0, 20.0]
    """
    tx = Transactions.of(transactions)
    n = len(tx)
    out = np.zeros((n, 3 + 4 * len(windows_days)), dtype=np.float64)
    if n == 0:
        return out
    day = tx.ts // DAY_MS
    out[:, 0] = tx.amount
    out[:, 1] = (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday (weekday 3)
    out[:, 2] = (tx.ts - day * DAY_MS) // HOUR_MS <= 6
    widest = (max(windows_days) + delay_days) * DAY_MS

    cards = _Grouped(tx.card, tx.ts, widest)
    amount_sum = _prefix(tx.amount[cards.order])
    here = np.arange(n)
    for i, w in enumerate(windows_days):
        start = cards.after(w * DAY_MS)
        count = here - start + 1
        out[:, 3 + 2 * i] = cards.unsort(count.astype(np.float64))
        out[:, 4 + 2 * i] = cards.unsort((amount_sum[here + 1] - amount_sum[start]) / count)

    terminals = _Grouped(tx.terminal, tx.ts, widest)
    fraud_sum = _prefix(tx.is_fraud[terminals.order])
    hi = terminals.after(delay_days * DAY_MS)  # labels of the last `delay` days are not known yet
    base = 3 + 2 * len(windows_days)
    for i, w in enumerate(windows_days):
        lo = terminals.after((delay_days + w) * DAY_MS)
        count = (hi - lo).astype(np.float64)
        frauds = fraud_sum[hi] - fraud_sum[lo]
        rate = np.divide(frauds, count, out=np.zeros(n), where=count > 0)
        out[:, base + 2 * i] = terminals.unsort(count)
        out[:, base + 1 + 2 * i] = terminals.unsort(rate)
    return out


# --------------------------------------------------------------------------- protocol


def _ms(day: dt.date) -> int:
    return day_index(day) * DAY_MS


@dataclass(frozen=True)
class Protocol:
    """Train, delay and test periods in UTC days, ending with the given test week.

    >>> p = Protocol.ending("2018-08-08")
    >>> p.train_start.isoformat(), p.test_dates[-1].isoformat()
    ('2018-07-25', '2018-08-14')
    """

    train_start: dt.date
    train_days: int = 7
    delay_days: int = DELAY_DAYS
    test_days: int = 7

    @classmethod
    def ending(
        cls, test_start: DayLike, train_days: int = 7, delay_days: int = DELAY_DAYS, test_days: int = 7
    ) -> Protocol:
        start = dt.date.fromisoformat(test_start) if isinstance(test_start, str) else test_start
        return cls(start - dt.timedelta(days=train_days + delay_days), train_days, delay_days, test_days)

    @property
    def test_start(self) -> dt.date:
        return self.train_start + dt.timedelta(days=self.train_days + self.delay_days)

    @property
    def test_dates(self) -> tuple[dt.date, ...]:
        return tuple(self.test_start + dt.timedelta(days=i) for i in range(self.test_days))

    def train_mask(self, ts: NDArray[np.int64]) -> NDArray[np.bool_]:
        t0 = _ms(self.train_start)
        return (ts >= t0) & (ts < t0 + self.train_days * DAY_MS)

    def test_mask(self, ts: NDArray[np.int64]) -> NDArray[np.bool_]:
        t0 = _ms(self.test_start)
        return (ts >= t0) & (ts < t0 + self.test_days * DAY_MS)


def known_by_label(tx: Transactions, protocol: Protocol) -> dict[int, int]:
    """Card code -> ms its first fraud (from the training week on) became known: ``delay`` days later.

    With :func:`~fraudstream.evaluation.metrics.evaluate`'s rule (known before the day's start), a
    fraud on day X is known from day X + delay + 1, as in the Handbook's test set.
    """
    fraud = np.flatnonzero(tx.is_fraud & (tx.ts >= _ms(protocol.train_start)))
    cards, first = np.unique(tx.card[fraud], return_index=True)  # rows are in time order
    known_at = tx.ts[fraud[first]] + protocol.delay_days * DAY_MS
    return dict(zip(cards.tolist(), known_at.tolist(), strict=True))


def protocol_known_cards(transactions: Any, test_start: DayLike = "2018-08-08") -> dict[Any, int]:
    """Card id -> ms from which the Handbook protocol's test set counts it known compromised (:func:`known_by_label`).

    To score any learner on the same test set as the batch baselines and the published figures: that set keeps the
    cards a learner with faster labels already knows (a fraud counts as known only ``delay`` days after it happened).

    >>> cols = {"card_id": ["a", "b"], "merchant_id": ["m", "m"], "amount": [1.0, 2.0], "is_fraud": [False, True],
    ...         "ts": [_ms(dt.date(2018, 7, 26)), _ms(dt.date(2018, 7, 27))]}
    >>> protocol_known_cards(cols) == {"b": _ms(dt.date(2018, 8, 3))}
    True
    """
    tx = Transactions.of(transactions)
    return {tx.cards[code].item(): at for code, at in known_by_label(tx, Protocol.ending(test_start)).items()}


def baseline_reports(
    transactions: Any,
    test_start: DayLike = "2018-08-08",
    k: int = 100,
    models: Sequence[str] = MODELS,
) -> dict[str, EvaluationReport]:
    """Train each baseline on the training week and evaluate it on the test week."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    unknown = set(models) - set(MODELS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; choose from {MODELS}")
    tx = Transactions.of(transactions)
    protocol = Protocol.ending(test_start)
    train, test = protocol.train_mask(tx.ts), protocol.test_mask(tx.ts)
    if not train.any() or not test.any():
        raise ValueError(f"no transactions in the training or test week of {protocol}")
    x = baseline_features(tx, delay_days=protocol.delay_days)
    scaler = StandardScaler().fit(x[train])
    x_train, x_test = scaler.transform(x[train]), scaler.transform(x[test])
    y_train = tx.is_fraud[train]

    known = known_by_label(tx, protocol)
    reports = {}
    for name in models:
        if name == "random":
            score = np.random.default_rng(0).random(int(test.sum()))
        else:
            model = (
                LogisticRegression(random_state=0)
                if name == "logistic_regression"
                else RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0)
            )
            score = model.fit(x_train, y_train).predict_proba(x_test)[:, 1]
        records = {"card_id": tx.card[test], "ts": tx.ts[test], "score": score, "is_fraud": tx.is_fraud[test]}
        reports[name] = evaluate(records, k=k, fraud_known_at=known, days=protocol.test_dates)
    return reports


def run_baselines(
    transactions: Any,
    test_start: DayLike = "2018-08-08",
    k: int = 100,
    models: Sequence[str] = MODELS,
) -> dict[str, dict[str, float]]:
    """``{model: {"auc", "ap", "cp100"}}`` on the test week; compare with :data:`PUBLISHED`.

    The CP key is ``f"cp{k}"``. Needs scikit-learn.
    """
    return {name: report.as_dict() for name, report in baseline_reports(transactions, test_start, k, models).items()}
