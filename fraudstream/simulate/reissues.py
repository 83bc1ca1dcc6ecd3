"""The issuer replaces a card a while after its fraud is confirmed: the reissues of simulated traffic.

A confirmed fraud blocks the card until it is reissued (:class:`~fraudstream.core.decision.CardStanding`); an issuer
that never reissued would block every later authorization of its customers. :class:`Reissues` schedules a card's
reissue :data:`REISSUE_AFTER_DAYS` after a fraud label on it, in event time, whoever gave the label (a customer
report, a chargeback, the simulated analysts), and hands the reissues back once the event stream has passed them.
The card keeps its ``card_id``: the customer's new card is the same card to the pipeline, as in the backtest.

One reissue covers the labels of one compromise: a fraud label while a reissue is pending adds none; one after the
reissue (a chargeback weeks later blocks the new card again) schedules the next.

>>> r = Reissues(after_days=1.0)
>>> r.label({"card_id": "c", "is_fraud": True, "ts": 0})
>>> r.label({"card_id": "c", "is_fraud": True, "ts": 3_600_000})  # the same compromise: reissued once
>>> r.label({"card_id": "d", "is_fraud": False, "ts": 0})  # legitimate: nothing to replace
>>> r.due(86_400_000), r.due(86_400_001)
([], [{'card_id': 'c', 'ts': 86400000}])
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Mapping
from typing import Any

from fraudstream.core.features.card import DAY_MS

__all__ = ["REISSUE_AFTER_DAYS", "Reissues"]

#: Days between a confirmed fraud and the card's reissue: the simulator's and the backtest's issuer.
REISSUE_AFTER_DAYS = 2.0


class Reissues:
    """Card reissues scheduled by fraud labels, due in event-time order; ``after_days`` None: the issuer never
    reissues. Labels may come from another thread (the simulated analysts) than the one taking what is due."""

    def __init__(self, after_days: float | None = REISSUE_AFTER_DAYS) -> None:
        if after_days is not None and after_days < 0:
            raise ValueError(f"after_days must be >= 0 or None, got {after_days}")
        self.after_ms = None if after_days is None else round(after_days * DAY_MS)
        self._due: list[tuple[int, str]] = []
        self._latest: dict[str, int] = {}  # each card's latest scheduled reissue
        self._lock = threading.Lock()

    def label(self, label: Mapping[str, Any]) -> None:
        """A ``fraud.labels`` record, known at its ``ts``: a fraud schedules the card's reissue unless one is due
        after it already, within the delay."""
        if self.after_ms is None or not label.get("is_fraud"):
            return
        card, ts = label["card_id"], label["ts"]
        with self._lock:
            latest = self._latest.get(card)
            if latest is not None and ts < latest <= ts + self.after_ms:
                return
            self._latest[card] = max(ts + self.after_ms, latest if latest is not None else ts)
            heapq.heappush(self._due, (ts + self.after_ms, card))

    def next_ts(self) -> int | None:
        """When the next reissue is due; None: none is scheduled."""
        with self._lock:
            return self._due[0][0] if self._due else None

    def due(self, before: int | None = None) -> list[dict[str, Any]]:
        """The ``fraud.card-reissues`` records due before ``before`` (all of them: None), in ``ts`` order; each is
        handed out once."""
        out = []
        with self._lock:
            while self._due and (before is None or self._due[0][0] < before):
                ts, card = heapq.heappop(self._due)
                out.append({"card_id": card, "ts": ts})
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._due)
