"""Quality indicators from labels, against scikit-learn and hand counts."""

from __future__ import annotations

import random

import pytest
from sklearn.metrics import average_precision_score

from fraudstream.core.model.quality import QualityWindow


def test_empty_window_has_no_answers() -> None:
    q = QualityWindow()
    assert (q.alert_precision(), q.fraud_recall(), q.average_precision()) == (None, None, None)


def test_against_hand_counts_and_sklearn() -> None:
    rng = random.Random(2)
    q = QualityWindow(size=10_000)
    items = []
    for _ in range(2000):
        fraud = rng.random() < 0.1
        score = min(1.0, max(0.0, rng.gauss(0.6 if fraud else 0.3, 0.15)))
        alerted = score > 0.5
        q.add(score, alerted, fraud)
        items.append((score, alerted, fraud))
    tp = sum(1 for _, a, f in items if a and f)
    assert q.alert_precision() == tp / sum(1 for _, a, _ in items if a)
    assert q.fraud_recall() == tp / sum(1 for _, _, f in items if f)
    # Ties are broken by arrival order, not averaged: continuous scores have none.
    assert q.average_precision() == pytest.approx(average_precision_score([f for *_, f in items], [s for s, *_ in items]))


def test_only_the_most_recent_labels_count() -> None:
    q = QualityWindow(size=2)
    q.add(0.9, True, False)
    q.add(0.8, True, True)
    q.add(0.7, True, True)
    assert q.alert_precision() == 1.0
