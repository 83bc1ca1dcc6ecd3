"""ROC AUC and average precision against scikit-learn, ties and degenerate inputs included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.evaluation import average_precision, roc_auc

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("levels", [None, 2, 5, 50])
def test_matches_sklearn_on_random_data(seed: int, levels: int | None) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 2_000))
    y = rng.random(n) < rng.uniform(0.01, 0.5)
    y[:2] = [True, False]  # both classes present
    score = rng.random(n) + 0.3 * y
    if levels is not None:  # few distinct scores: many ties, some mixing both classes
        score = np.floor(score * levels) / levels
    assert roc_auc(y, score) == pytest.approx(sklearn_metrics.roc_auc_score(y, score), abs=1e-12)
    assert average_precision(y, score) == pytest.approx(sklearn_metrics.average_precision_score(y, score), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4)), min_size=2, max_size=40))
def test_matches_sklearn_with_heavy_ties(pairs: list[tuple[bool, int]]) -> None:
    y = np.array([p[0] for p in pairs])
    score = np.array([p[1] for p in pairs], dtype=float)
    if y.all() or not y.any():
        return
    assert roc_auc(y, score) == pytest.approx(sklearn_metrics.roc_auc_score(y, score), abs=1e-12)
    assert average_precision(y, score) == pytest.approx(sklearn_metrics.average_precision_score(y, score), abs=1e-12)


def test_hand_computed_values() -> None:
    # Pairs (pos, neg): (0.35 vs 0.1) win, (0.35 vs 0.4) loss, (0.8 vs both) win: 3/4.
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    # Thresholds 0.8 (P=1, R=.5), 0.4 (P=2/3), 0.35 (P=2/3, R=1): .5*1 + .5*2/3.
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(5 / 6)


def test_ties_between_classes_count_half() -> None:
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc([0, 1, 1], [0.5, 0.5, 0.9]) == 0.75
    # One threshold holding both items: precision 1/2 at recall 1.
    assert average_precision([0, 1], [0.5, 0.5]) == 0.5


def test_perfect_and_reversed_rankings() -> None:
    y = [0, 0, 1, 1]
    assert roc_auc(y, [1, 2, 3, 4]) == 1.0
    assert roc_auc(y, [4, 3, 2, 1]) == 0.0
    assert average_precision(y, [1, 2, 3, 4]) == 1.0


@pytest.mark.parametrize("y", [[], [0, 0, 0], [1, 1, 1]])
def test_auc_is_nan_without_both_classes(y: list[int]) -> None:
    assert math.isnan(roc_auc(y, [0.5] * len(y)))


def test_ap_degenerate_inputs() -> None:
    assert math.isnan(average_precision([], []))
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))  # sklearn says 0.0; undefined is clearer
    assert average_precision([1, 1], [0.1, 0.2]) == 1.0  # as sklearn


def test_accepts_bools_ints_and_integer_scores() -> None:
    assert roc_auc(np.array([False, True]), np.array([0, 1])) == 1.0
    assert average_precision((0, 1), (3, 7)) == 1.0


@pytest.mark.parametrize("metric", [roc_auc, average_precision])
def test_rejects_bad_input(metric) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="0/1"):
        metric([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        metric([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="items"):
        metric([0, 1], [0.1])


def test_large_input_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.random(200_000) < 0.01
    score = np.round(rng.random(y.size) + 0.5 * y, 3)
    assert roc_auc(y, score) == pytest.approx(sklearn_metrics.roc_auc_score(y, score), abs=1e-12)
    assert average_precision(y, score) == pytest.approx(sklearn_metrics.average_precision_score(y, score), abs=1e-12)
