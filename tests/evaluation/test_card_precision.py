"""Card precision@k and the daily report on hand-built cases."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from fraudstream.evaluation import DAY_MS, card_precision_at_k, evaluate

D0 = 1_533_686_400_000  # 2018-08-08T00:00Z
D1 = D0 + DAY_MS
DAY0, DAY1 = dt.date(2018, 8, 8), dt.date(2018, 8, 9)


def test_fraction_of_top_k_cards_compromised() -> None:
    records = [("a", D0, 0.9, 1), ("b", D0 + 1, 0.8, 0), ("c", D0 + 2, 0.7, 1), ("d", D0 + 3, 0.1, 1)]
    cp = card_precision_at_k(records, k=2)
    assert cp.per_day == {DAY0: 0.5}
    assert cp.detected == {DAY0: ("a",)}
    assert cp.compromised == {DAY0: 3}
    assert cp.mean == 0.5


def test_card_takes_its_highest_score_and_any_fraud_that_day() -> None:
    # "a" scores low on its fraudulent transaction but high on another: the card is still a hit.
    records = [("a", D0, 0.95, 0), ("a", D0 + 5, 0.05, 1), ("b", D0 + 1, 0.9, 1), ("c", D0 + 2, 0.5, 1)]
    assert card_precision_at_k(records, k=2).per_day == {DAY0: 1.0}


def test_divides_by_k_when_fewer_cards_than_k() -> None:
    records = [("a", D0, 0.9, 1), ("b", D0, 0.1, 1)]
    cp = card_precision_at_k(records, k=5)
    assert cp.per_day == {DAY0: 0.4}
    assert cp.ceiling == 0.4


def test_label_known_before_day_start_drops_the_card() -> None:
    records = [("a", D0, 0.9, 1), ("b", D0, 0.8, 0), ("c", D0, 0.7, 1)]
    assert card_precision_at_k(records, k=1, fraud_known_at={"a": D0 - 1}).per_day == {DAY0: 0.0}  # "b" now tops
    assert card_precision_at_k(records, k=2, fraud_known_at={"a": D0 - 1}).per_day == {DAY0: 0.5}


def test_label_known_at_or_after_day_start_counts_from_the_next_day() -> None:
    records = [("a", D0, 0.9, 1), ("b", D0, 0.1, 0), ("a", D1, 0.9, 1), ("b", D1, 0.1, 0)]
    # Known exactly at 00:00 is not "before" that day; known during day 0 drops the card on day 1.
    for known_at in (D0, D0 + 1, D1 - 1):
        cp = card_precision_at_k(records, k=1, fraud_known_at={"a": known_at, "zz": 0})
        assert cp.per_day[DAY0] == 1.0
    # Day 1 loses "a" both ways here (label and top-k); see the test below for label-only.
    assert card_precision_at_k(records, k=1, fraud_known_at={"a": D1 - 1}).per_day[DAY1] == 0.0


def test_label_drop_alone_on_a_later_day() -> None:
    # "a" is outside the top 1 on day 0, so only its label can drop it on day 1.
    records = [("b", D0, 0.9, 0), ("a", D0, 0.1, 1), ("a", D1, 0.9, 1), ("b", D1, 0.1, 0)]
    assert card_precision_at_k(records, k=1).per_day == {DAY0: 0.0, DAY1: 1.0}
    assert card_precision_at_k(records, k=1, fraud_known_at={"a": D0 + 10}).per_day == {DAY0: 0.0, DAY1: 0.0}


def test_cards_found_in_an_earlier_top_k_are_dropped() -> None:
    records = [
        ("a", D0, 0.9, 1),  # found on day 0
        ("b", D0, 0.8, 0),  # in day 0's top k but not compromised: stays a candidate
        ("c", D0, 0.1, 1),  # compromised but missed on day 0: stays a candidate
        ("a", D1, 0.9, 1),
        ("b", D1, 0.8, 1),
        ("c", D1, 0.7, 1),
    ]
    cp = card_precision_at_k(records, k=2)
    assert cp.per_day == {DAY0: 0.5, DAY1: 1.0}  # day 1 ranks b, c
    assert cp.detected == {DAY0: ("a",), DAY1: ("b", "c")}
    assert cp.compromised == {DAY0: 2, DAY1: 2}
    assert cp.mean == 0.75


def test_ties_are_broken_by_card_id() -> None:
    records = [("b", D0, 0.5, 1), ("a", D0, 0.5, 0), ("c", D0, 0.5, 1)]
    assert card_precision_at_k(records, k=1).per_day == {DAY0: 0.0}  # "a" wins the tie
    assert card_precision_at_k(records, k=2).per_day == {DAY0: 0.5}
    ints = [(2, D0, 0.5, 1), (10, D0, 0.5, 0)]
    assert card_precision_at_k(ints, k=1).per_day == {DAY0: 1.0}  # numeric order, 2 < 10


def test_days_are_utc_calendar_days() -> None:
    records = [("a", D1 - 1, 0.9, 1), ("a", D1, 0.9, 0)]
    cp = card_precision_at_k(records, k=1)
    assert cp.per_day == {DAY0: 1.0, DAY1: 0.0}


def test_days_argument_restricts_and_ignores_other_days() -> None:
    records = [("a", D0, 0.9, 1), ("a", D1, 0.9, 1)]
    # Without day 0 in the evaluation, "a" was never found, so day 1 counts it.
    assert card_precision_at_k(records, k=1, days=["2018-08-09"]).per_day == {DAY1: 1.0}
    assert card_precision_at_k(records, k=1, days=[DAY0, DAY1]).per_day == {DAY0: 1.0, DAY1: 0.0}
    assert card_precision_at_k(records, k=1, days=["2018-08-20"]).per_day == {}


def test_column_mapping_gives_the_same_result() -> None:
    rng = np.random.default_rng(0)
    n = 500
    cols = {
        "card_id": rng.integers(0, 40, n),
        "ts": D0 + rng.integers(0, 5 * DAY_MS, n),
        "score": rng.integers(0, 10, n) / 10,
        "is_fraud": rng.random(n) < 0.2,
    }
    known = {3: D0 + DAY_MS, 7: D0}
    rows = list(zip(*(cols[c].tolist() for c in ("card_id", "ts", "score", "is_fraud")), strict=True))
    a = card_precision_at_k(cols, k=5, fraud_known_at=known)
    b = card_precision_at_k(rows, k=5, fraud_known_at=known)
    assert a == b
    assert len(a.per_day) == 5


def test_empty_records_and_bad_k() -> None:
    assert math.isnan(card_precision_at_k([], k=3).mean)
    with pytest.raises(ValueError, match="k must"):
        card_precision_at_k([("a", D0, 0.5, 1)], k=0)


# --------------------------------------------------------------------------- evaluate


def test_evaluate_drops_label_known_cards_from_auc_and_ap_only_per_day() -> None:
    records = [
        ("a", D0, 0.1, 1),  # known by label on day 0: its low-scored fraud must not count
        ("b", D0, 0.9, 1),
        ("c", D0, 0.2, 0),
        ("b", D1, 0.9, 1),  # found by day 0's top 1: dropped from CP@k on day 1, kept for AUC/AP
        ("c", D1, 0.2, 0),
        ("a", D1, 0.95, 0),
    ]
    report = evaluate(records, k=1, fraud_known_at={"a": D0 - 1})
    day0, day1 = report.days
    assert (day0.day, day0.transactions, day0.frauds, day0.auc, day0.ap, day0.cp_at_k) == (DAY0, 2, 1, 1.0, 1.0, 1.0)
    assert (day1.day, day1.transactions, day1.frauds, day1.auc, day1.cp_at_k) == (DAY1, 2, 1, 1.0, 0.0)
    assert (report.auc, report.ap, report.cp_at_k) == (1.0, 1.0, 0.5)
    assert report.as_dict() == {"auc": 1.0, "ap": 1.0, "cp1": 0.5}


def test_evaluate_keeps_a_day_whose_cards_are_all_known() -> None:
    records = [("a", D0, 0.1, 1), ("b", D0, 0.9, 0), ("a", D1, 0.5, 1)]
    report = evaluate(records, k=1, fraud_known_at={"a": D0 + 1})
    assert [r.day for r in report.days] == [DAY0, DAY1]
    assert report.days[1].transactions == 0
    assert math.isnan(report.days[1].auc) and report.days[1].cp_at_k == 0.0


def test_evaluate_days_and_table() -> None:
    records = [("a", D0, 0.9, 1), ("b", D0, 0.2, 0), ("a", D1, 0.9, 1), ("b", D1, 0.2, 0)]
    report = evaluate(records, k=2, days=["2018-08-09"])
    assert [r.day for r in report.days] == [DAY1]
    table = report.format_table()
    assert "2018-08-09" in table and "2018-08-08" not in table
    assert table.splitlines()[0].split() == ["day", "tx", "fraud", "cards*", "AUC", "AP", "CP@2", "CR@2"]
    assert table.splitlines()[-2].split() == ["all", "2", "1", "1", "1.000", "1.000", "0.500", "1.000"]
    assert report.cp_ceiling == 0.5


def test_evaluate_empty_records() -> None:
    report = evaluate([], k=10)
    assert report.days == ()
    assert math.isnan(report.auc) and math.isnan(report.ap) and math.isnan(report.cp_at_k)
    assert report.format_table().splitlines()[-2].split()[:2] == ["all", "0"]
