"""Card recall@k, the alert replay, time to detection and amount prevented, on hand-computed cases."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from fraudstream.config import Settings
from fraudstream.evaluation import (
    DAY_MS,
    AmountPrevented,
    alerts_from_scores,
    amount_prevented,
    card_precision_at_k,
    evaluate,
    format_hours,
    time_to_detection,
)

D0 = 1_533_686_400_000  # 2018-08-08T00:00Z
D1, D2 = D0 + DAY_MS, D0 + 2 * DAY_MS
DAY0, DAY1, DAY2 = dt.date(2018, 8, 8), dt.date(2018, 8, 9), dt.date(2018, 8, 10)
H = 3_600_000
# The policy's parameters, fixed here: a change of the defaults must not change these hand-computed cases.
POLICY = Settings(alert_budget_per_day=100, threshold_floor=0.2, threshold_ceiling=0.98, cooldown_ms=H)


# --------------------------------------------------------------------------- card recall@k

RECALL_RECORDS = [
    ("a", D0, 0.9, 1), ("b", D0, 0.8, 0), ("c", D0, 0.7, 1), ("d", D0, 0.1, 1),
    ("c", D1, 0.9, 1), ("d", D1, 0.1, 1), ("e", D1, 0.5, 0),
    ("e", D2, 0.9, 0),  # a day without a compromised card: not in the mean
]


def test_recall_is_the_share_of_new_compromised_cards_in_the_top_k() -> None:
    # Day 0: top 2 are a (fraud) and b; candidates a, c, d: 1 of 3.
    cp = card_precision_at_k(RECALL_RECORDS[:4], k=2)
    assert cp.recall_per_day == {DAY0: pytest.approx(1 / 3)}
    assert cp.recall == pytest.approx(1 / 3)


def test_recall_excludes_cards_known_by_label_and_found_earlier() -> None:
    cp = card_precision_at_k(RECALL_RECORDS, k=2, fraud_known_at={"a": D0 - 1})
    # Day 0 without a (known): top 2 are b and c, candidates c and d: 1 of 2.
    # Day 1 without c (found on day 0): candidates d alone, top 2 are e and d: 1 of 1.
    assert cp.recall_per_day == {DAY0: 0.5, DAY1: 1.0}
    assert cp.recall == 0.75
    assert cp.compromised == {DAY0: 2, DAY1: 1, DAY2: 0}
    # One ranking for both figures: the cards found make precision over k and recall over the candidates.
    for day, found in cp.detected.items():
        assert cp.per_day[day] * cp.k == len(found)
        if cp.compromised[day]:
            assert cp.recall_per_day[day] * cp.compromised[day] == len(found)


def test_recall_is_nan_without_a_compromised_card() -> None:
    cp = card_precision_at_k([("a", D0, 0.9, 0)], k=1)
    assert cp.recall_per_day == {} and math.isnan(cp.recall)


def test_evaluate_reports_recall_per_day_and_overall() -> None:
    report = evaluate(RECALL_RECORDS, k=2, fraud_known_at={"a": D0 - 1})
    assert [r.card_recall for r in report.days][:2] == [0.5, 1.0]
    assert math.isnan(report.days[2].card_recall)
    assert report.card_recall == 0.75


# --------------------------------------------------------------------------- alerts from scores


def test_during_warm_up_only_the_ceiling_alerts_and_blocked_cards_are_not_alerted() -> None:
    cards = ["a", "b", "a", "c", "c"]
    ts = [D0, D0 + 1, D0 + 2, D0 + 3, D0 + 5]
    scores = [0.98, 0.979, 0.99, 0.99, 0.99]
    # c is known compromised at D0 + 5: blocked from then on (that very ts included: labels first), whatever its score.
    flags = alerts_from_scores(cards, ts, scores, fraud_known_at={"c": D0 + 5}, settings=POLICY)
    assert flags.tolist() == [True, False, True, True, False]


def test_flags_come_back_in_input_order() -> None:
    cards, ts, scores = ["a", "b", "c"], [D0 + 2, D0, D0 + 1], [0.1, 0.99, 0.5]
    assert alerts_from_scores(cards, ts, scores, settings=POLICY).tolist() == [False, True, False]


def _busy_days(n_days: int = 4, per_day: int = 3_000, n_cards: int = 1_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ts = np.sort(D0 + rng.integers(0, n_days * DAY_MS, n_days * per_day))
    cards = rng.integers(0, n_cards, ts.size).astype(str)
    return cards, ts, rng.random(ts.size)


def _alerts_a_day(ts: np.ndarray, flags: np.ndarray, day: int) -> int:
    return int((flags & (ts >= D0 + day * DAY_MS) & (ts < D0 + (day + 1) * DAY_MS)).sum())


def test_after_a_day_about_k_alerts_a_day() -> None:
    # k = 150 of 3,000 a day puts the threshold near 0.95, between the floor and the ceiling (above the ceiling,
    # every score over it alerts, budget or not).
    cards, ts, scores = _busy_days()
    flags = alerts_from_scores(cards, ts, scores, k=150, settings=POLICY)
    for day in range(1, 4):  # day 0 warms the threshold up
        assert 110 <= _alerts_a_day(ts, flags, day) <= 190
    # The budget is read from the settings when k is not given.
    assert (alerts_from_scores(cards, ts, scores, settings=replace(POLICY, alert_budget_per_day=150)) == flags).all()


def test_blocked_authorizations_do_not_spend_the_budget() -> None:
    cards, ts, scores = _busy_days()
    known = {str(c): D0 for c in range(500)}  # half the cards blocked from the start
    flags = alerts_from_scores(cards, ts, scores, k=150, fraud_known_at=known, settings=POLICY)
    assert not flags[np.isin(cards, list(known))].any()
    # The threshold is set by the open cards' scores alone, so they still get about k alerts a day (not k / 2).
    for day in range(1, 4):
        assert 110 <= _alerts_a_day(ts, flags, day) <= 190


# --------------------------------------------------------------------------- time to detection


def test_card_detected_two_hours_after_its_first_fraud() -> None:
    # An alert before the first fraud does not count; the one 2 h after it does.
    d = time_to_detection(["a"] * 4, [D0, D0 + H, D0 + 2 * H, D0 + 3 * H], [0, 1, 0, 1], [1, 0, 0, 1])
    assert d.cards == ("a",)
    assert d.hours.tolist() == [2.0]
    assert (d.median_hours, d.detected_share, d.alerted_share) == (2.0, 1.0, 1.0)


def test_a_label_blocks_the_card_at_its_time() -> None:
    cards, ts, fraud = ["b", "b", "b"], [D0, D0 + 4 * H, D0 + 9 * H], [1, 0, 1]
    d = time_to_detection(cards, ts, fraud, [0, 0, 0], fraud_known_at={"b": D0 + 5 * H})
    assert d.hours.tolist() == [5.0] and d.alerted_share == 0.0
    # The earlier of the alert and the label wins.
    d = time_to_detection(cards, ts, fraud, [0, 1, 0], fraud_known_at={"b": D0 + 5 * H})
    assert d.hours.tolist() == [4.0] and d.alerted_share == 1.0


def test_never_detected_cards_are_infinitely_late() -> None:
    cards = ["a", "a", "b", "c", "d"]
    ts = [D0, D0 + H, D0, D0, D0]
    fraud = [1, 0, 1, 1, 0]  # d is never compromised: not counted
    alerted = [0, 1, 0, 0, 1]
    d = time_to_detection(cards, ts, fraud, alerted)
    assert d.cards == ("a", "b", "c")
    assert d.hours.tolist() == [1.0, math.inf, math.inf]
    assert d.median_hours == math.inf and format_hours(d.median_hours) == "never"
    assert d.detected_share == pytest.approx(1 / 3)
    # Two of three found: the median is finite again.
    d = time_to_detection(cards, ts, fraud, alerted, fraud_known_at={"b": D0 + 3 * H})
    assert d.median_hours == 3.0 and format_hours(d.median_hours) == "3.0 h"


def test_a_card_known_before_its_first_fraud_is_not_counted() -> None:
    d = time_to_detection(["a", "b"], [D0 + H, D0 + H], [1, 1], [0, 0], fraud_known_at={"a": D0, "b": D0 + H})
    assert d.cards == ()
    assert math.isnan(d.median_hours) and math.isnan(d.detected_share)


# --------------------------------------------------------------------------- amount prevented


def test_amount_prevented_from_the_first_alert_or_block_on() -> None:
    cards = ["a", "a", "a", "a", "b", "b", "c", "e"]
    ts = [D0, D0 + H, D0 + 2 * H, D0 + 3 * H, D0, D0 + H, D0, D0]
    fraud = [1, 1, 1, 0, 1, 1, 1, 0]
    amount = [100.0, 50.0, 25.0, 1_000.0, 40.0, 60.0, 10.0, 500.0]
    alerted = [0, 1, 0, 0, 0, 0, 0, 1]
    # a: alerted at its second fraud, which is stopped with the next (75; the legitimate 1,000 is not fraud).
    # b: label at exactly its second fraud's ts, known first: 60 stopped. c: never detected. e: no fraud.
    got = amount_prevented(cards, ts, fraud, amount, alerted, fraud_known_at={"b": D0 + H})
    assert got == AmountPrevented(prevented=135.0, total=285.0)
    assert got.share == pytest.approx(135 / 285)


def test_amount_prevented_without_fraud_is_nan() -> None:
    got = amount_prevented(["a"], [D0], [0], [5.0], [1])
    assert got == AmountPrevented(0.0, 0.0) and math.isnan(got.share)


def test_columns_must_agree_in_length() -> None:
    with pytest.raises(ValueError):
        amount_prevented(["a", "b"], [D0, D0], [1, 1], [5.0], [0, 0])
    with pytest.raises(ValueError):
        time_to_detection(["a", "b"], [D0, D0], [1, 1], [0])


# --------------------------------------------------------------------------- evaluate


STREAM: dict[str, list[Any]] = {
    "card_id": ["a", "a", "b", "b", "c", "a", "c"],
    "ts": [D0, D0 + 2 * H, D0, D0 + H, D0 + H, D1, D1],
    "score": [0.3, 0.99, 0.2, 0.1, 0.5, 0.2, 0.4],
    "is_fraud": [1, 1, 0, 0, 1, 1, 1],
    "amount": [10.0, 20.0, 1.0, 1.0, 30.0, 40.0, 50.0],
}


def test_evaluate_without_alerts_keeps_its_former_figures() -> None:
    report = evaluate(STREAM, k=1)
    assert report.detection is None and report.prevented is None
    assert math.isnan(report.median_hours_to_detection) and math.isnan(report.prevented_share)
    assert set(report.as_dict()) == {"auc", "ap", "cp1"}
    assert "time to detection" not in report.format_table()


def test_evaluate_with_alert_flags_and_amounts() -> None:
    flags = [0, 1, 0, 0, 0, 0, 0]
    report = evaluate(STREAM, k=1, alerted=flags)  # amounts from the records' amount column
    # a: first fraud at D0, alerted 2 h later; c: never.
    assert report.detection is not None and report.detection.hours.tolist() == [2.0, math.inf]
    assert report.median_hours_to_detection == math.inf and report.detected_share == 0.5
    assert report.prevented == AmountPrevented(prevented=60.0, total=150.0)
    assert report.prevented_amount == 60.0 and report.prevented_share == 0.4
    figures = report.as_dict(director=True)
    assert figures["card_recall1"] == report.card_recall and figures["prevented_share"] == 0.4
    table = report.format_table().splitlines()
    assert table[-2] == "time to detection, median over 2 compromised cards: never; detected 50.0% (by an alert 50.0%)"
    assert table[-1] == "fraud amount prevented: 40.0% (60.00 of 150.00)"


def test_evaluate_with_the_policy_matches_explicit_flags() -> None:
    flags = alerts_from_scores(STREAM["card_id"], STREAM["ts"], STREAM["score"], k=1, fraud_known_at={"c": D0 + 3 * H}, settings=POLICY)
    assert flags.tolist() == [False, True, False, False, False, False, False]  # warm-up: only 0.99 reaches the ceiling
    by_policy = evaluate(STREAM, k=1, fraud_known_at={"c": D0 + 3 * H}, alerted="policy", settings=POLICY)
    by_flags = evaluate(STREAM, k=1, fraud_known_at={"c": D0 + 3 * H}, alerted=flags)
    assert by_policy.as_dict(director=True) == by_flags.as_dict(director=True)
    assert by_policy.detection is not None and by_policy.detection.hours.tolist() == [2.0, 2.0]  # c: the label, 2 h


def test_evaluate_days_replay_the_policy_over_all_records() -> None:
    # Only day 1 is evaluated: a's frauds there are its first, and nothing alerts on day 1.
    report = evaluate(STREAM, k=1, days=[DAY1], alerted="policy", amount=[1.0] * 7, settings=POLICY)
    assert report.detection is not None and report.detection.cards == ("a", "c")
    assert report.detected_share == 0.0 and report.prevented == AmountPrevented(0.0, 2.0)


def test_evaluate_rejects_bad_alert_inputs() -> None:
    with pytest.raises(ValueError, match="policy"):
        evaluate(STREAM, k=1, alerted="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alert flags"):
        evaluate(STREAM, k=1, alerted=[1, 0])
    with pytest.raises(ValueError, match="amounts"):
        evaluate(STREAM, k=1, alerted=[0] * 7, amount=[1.0])
