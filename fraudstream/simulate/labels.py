"""Labels as an issuer receives them: late, partial, and from several sources.

:class:`LabelDelays` turns the simulator's truth into the delayed streams that need no alert: customer reports
(card-level, within days) and chargebacks (per transaction, within weeks). Maturity is not emitted: the pipeline
infers it. :class:`Investigator` plays the analyst team that answers alerts, k cards a day.

>>> from fraudstream.simulate.handbook import HandbookSimulator
>>> txs = HandbookSimulator(n_customers=100, n_terminals=200, n_days=30, seed=2).transactions()
>>> labels = LabelDelays(seed=2).labels(txs)
>>> all(a["ts"] <= b["ts"] for a, b in zip(labels, labels[1:]))
True
>>> sorted({label["source"] for label in labels})
['chargeback', 'customer_report']
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from fraudstream.core.features.card import DAY_MS, HOUR_MS
from fraudstream.simulate.handbook import HandbookSimulator, SimulatedTransactions

__all__ = ["Investigator", "LabelDelays"]



class LabelDelays:
    """How late, and how often, each delayed label source speaks.

    Parameters
    ----------
    report_probability
        Chance that the owner of a compromised card reports it.
    report_delay_hours
        Uniform range of the report's delay after the first fraud of the episode.
    chargeback_probability
        Chance that a fraudulent transaction is charged back.
    chargeback_delay_days
        Uniform range of the chargeback's delay after the transaction.
    episode_gap_days
        ``None``: one report per compromised card, after its first fraud. A number: a fraud more than this long
        after the card's previous fraud starts a new episode, which can be reported again.
    seed
        Same seed and same transactions, same labels.
    """

    def __init__(
        self,
        report_probability: float = 0.8,
        report_delay_hours: tuple[float, float] = (12.0, 96.0),
        chargeback_probability: float = 0.9,
        chargeback_delay_days: tuple[float, float] = (20.0, 60.0),
        episode_gap_days: float | None = None,
        seed: int = 0,
    ) -> None:
        for name, p in (("report_probability", report_probability), ("chargeback_probability", chargeback_probability)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        ranges = (("report_delay_hours", report_delay_hours), ("chargeback_delay_days", chargeback_delay_days))
        for name, (lo, hi) in ranges:
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be a range 0 <= low <= high, got {(lo, hi)}")
        self.report_probability = report_probability
        self.report_delay_hours = report_delay_hours
        self.chargeback_probability = chargeback_probability
        self.chargeback_delay_days = chargeback_delay_days
        self.episode_gap_days = episode_gap_days
        self.seed = seed

    def __repr__(self) -> str:
        return (
            f"LabelDelays(report_probability={self.report_probability}, report_delay_hours={self.report_delay_hours}, "
            f"chargeback_probability={self.chargeback_probability}, "
            f"chargeback_delay_days={self.chargeback_delay_days}, episode_gap_days={self.episode_gap_days}, "
            f"seed={self.seed})"
        )

    def labels(self, data: SimulatedTransactions | HandbookSimulator) -> list[dict[str, Any]]:
        """Customer reports and chargebacks, sorted by ``ts`` (the moment each becomes known)."""
        txs = data.transactions() if isinstance(data, HandbookSimulator) else data
        rng = np.random.default_rng(self.seed)
        fraud_rows = np.flatnonzero(txs.is_fraud)
        out = self._chargebacks(rng, txs, fraud_rows) + self._reports(rng, txs, fraud_rows)
        # Stable: equal ts keep chargebacks (in tx order) ahead of reports, so the order is a function of the seed.
        out.sort(key=lambda label: label["ts"])
        return out

    def _chargebacks(
        self, rng: np.random.Generator, txs: SimulatedTransactions, rows: np.ndarray
    ) -> list[dict[str, Any]]:
        lo, hi = (round(d * DAY_MS) for d in self.chargeback_delay_days)
        charged = rng.random(len(rows)) < self.chargeback_probability
        delay = rng.integers(lo, hi, size=len(rows), endpoint=True)
        rows, delay = rows[charged], delay[charged]
        ts = (txs.ts[rows] + delay).tolist()
        cards = [txs.card_id(c) for c in txs.customer[rows].tolist()]
        return [
            {"tx_id": txs.tx_id(r), "card_id": card, "is_fraud": True, "ts": t, "source": "chargeback"}
            for r, card, t in zip(rows.tolist(), cards, ts, strict=True)
        ]

    def _reports(self, rng: np.random.Generator, txs: SimulatedTransactions, rows: np.ndarray) -> list[dict[str, Any]]:
        # Fraud rows are in time order already; group them by card, keeping that order inside each card.
        rows = rows[np.argsort(txs.customer[rows], kind="stable")]
        card, ts = txs.customer[rows], txs.ts[rows]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = card[1:] != card[:-1]
        if self.episode_gap_days is not None:
            first[1:] |= (ts[1:] - ts[:-1]) > self.episode_gap_days * DAY_MS
        card, since = card[first], ts[first]
        lo, hi = (round(h * HOUR_MS) for h in self.report_delay_hours)
        reported = rng.random(len(card)) < self.report_probability
        delay = rng.integers(lo, hi, size=len(card), endpoint=True)
        card, since, delay = card[reported], since[reported], delay[reported]
        return [
            {"card_id": txs.card_id(c), "is_fraud": True, "since": s, "ts": s + d, "source": "customer_report"}
            for c, s, d in zip(card.tolist(), since.tolist(), delay.tolist(), strict=True)
        ]


class Investigator:
    """The analyst team: answers alerts truthfully, at most ``cards_per_day`` distinct cards per event-time day.

    The delay of each disposition is a hash of (seed, tx_id), so it does not depend on the order alerts arrive in.

    >>> inv = Investigator({"t1": True, "t2": False}, {"t1": "c1", "t2": "c2"}, cards_per_day=1, seed=0)
    >>> [d["is_fraud"] for d in inv.observe_alert({"tx_id": "t1", "card_id": "c1", "ts": 1_600_000_000_000})]
    [True]
    >>> inv.observe_alert({"tx_id": "t2", "card_id": "c2", "ts": 1_600_000_000_000})  # the day's budget is spent
    []
    """

    def __init__(
        self,
        is_fraud: Mapping[str, bool],
        card_of: Mapping[str, str],
        cards_per_day: int = 100,
        delay_hours: tuple[float, float] = (1.0, 6.0),
        seed: int = 0,
        horizon_days: int = 7,
    ) -> None:
        if cards_per_day < 0:
            raise ValueError("cards_per_day must be >= 0")
        if not 0 <= delay_hours[0] <= delay_hours[1]:
            raise ValueError(f"delay_hours must be a range 0 <= low <= high, got {delay_hours}")
        self.is_fraud = is_fraud
        self.card_of = card_of
        self.cards_per_day = cards_per_day
        self.delay_hours = delay_hours
        self.seed = seed
        self.horizon_days = horizon_days
        self.dispositions = 0
        self.over_budget = 0
        self._checked: dict[int, set[str]] = {}

    @classmethod
    def from_transactions(cls, data: SimulatedTransactions | HandbookSimulator, **params: Any) -> Investigator:
        txs = data.transactions() if isinstance(data, HandbookSimulator) else data
        return cls(txs.fraud_lookup(), txs.card_lookup(), **params)

    def checked_cards(self, day: int) -> frozenset[str]:
        """Cards investigated on an event-time day (days since the epoch, UTC)."""
        return frozenset(self._checked.get(day, ()))

    def observe_alert(self, alert: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Zero or one ``analyst`` label for an alert."""
        tx_id, ts = alert.get("tx_id"), alert.get("ts")
        if not isinstance(tx_id, str) or isinstance(ts, bool) or not isinstance(ts, int):
            return []
        truth = self.is_fraud.get(tx_id)
        if truth is None:
            return []
        card_id = self.card_of.get(tx_id) or alert.get("card_id")
        if not isinstance(card_id, str):
            return []
        day = ts // DAY_MS
        checked = self._day(day)
        if checked is None or card_id in checked:
            return []
        if len(checked) >= self.cards_per_day:
            self.over_budget += 1
            return []
        checked.add(card_id)
        self.dispositions += 1
        ts_known = ts + self._delay_ms(tx_id)
        return [{"tx_id": tx_id, "card_id": card_id, "is_fraud": bool(truth), "ts": ts_known, "source": "analyst"}]

    def _day(self, day: int) -> set[str] | None:
        """The day's checked cards; None for a day so old the team no longer looks at it."""
        checked = self._checked.get(day)
        if checked is not None:
            return checked
        newest = max(self._checked, default=day)
        if day <= newest - self.horizon_days:
            return None
        self._checked[day] = checked = set()
        # Forget days past the horizon, so a long run holds a week of card sets, not months.
        for old in [d for d in self._checked if d <= max(newest, day) - self.horizon_days]:
            del self._checked[old]
        return checked

    def _delay_ms(self, tx_id: str) -> int:
        digest = hashlib.blake2b(f"{self.seed}:{tx_id}".encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "big") / 2**64
        lo, hi = self.delay_hours
        return round((lo + u * (hi - lo)) * HOUR_MS)
