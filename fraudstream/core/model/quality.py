"""Model quality from labels, over the most recent labelled authorizations.

Labels are biased (analysts only see alerts) and late (chargebacks take
weeks), so these are indicators for a dashboard, not an evaluation: the
backtest is the evaluation.

>>> q = QualityWindow(size=4)
>>> for score, alerted, fraud in [(0.9, True, True), (0.8, True, False), (0.1, False, True), (0.05, False, False)]:
...     q.add(score, alerted, fraud)
>>> q.alert_precision(), q.fraud_recall(), round(q.average_precision(), 3)
(0.5, 0.5, 0.833)
"""

from __future__ import annotations

from collections import deque

__all__ = ["QualityWindow"]


class QualityWindow:
    def __init__(self, size: int = 5000) -> None:
        self.size = size
        self.items: deque[tuple[float, bool, bool]] = deque(maxlen=size)

    def add(self, score: float, alerted: bool, is_fraud: bool) -> None:
        self.items.append((score, alerted, is_fraud))

    def alert_precision(self) -> float | None:
        alerted = [f for _, a, f in self.items if a]
        return sum(alerted) / len(alerted) if alerted else None

    def fraud_recall(self) -> float | None:
        frauds = [a for _, a, f in self.items if f]
        return sum(frauds) / len(frauds) if frauds else None

    def average_precision(self) -> float | None:
        ranked = sorted(self.items, key=lambda t: -t[0])
        positives = sum(1 for _, _, f in ranked if f)
        if not positives:
            return None
        hits, total = 0, 0.0
        for i, (_, _, f) in enumerate(ranked, 1):
            if f:
                hits += 1
                total += hits / i
        return total / positives
