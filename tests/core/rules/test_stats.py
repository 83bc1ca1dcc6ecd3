"""Per-rule hits, alerts and precision against labels."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.core.rules import Rule, RuleSet, RuleStats

DAY = 86_400_000
MON = 1_700_438_400_000  # 2023-11-20T00:00:00Z, a Monday


def overall(stats: RuleStats, rule_id: str) -> dict[str, object]:
    return stats.snapshot()[rule_id]["overall"]


def test_precision_math_with_a_contradicting_label() -> None:
    stats = RuleStats()
    for tx in ("t1", "t2", "t3", "t4"):
        stats.record_hit("R-1", tx, MON, alerted=True)
    assert overall(stats, "R-1")["precision"] is None  # no labels yet
    assert stats.record_label("t1", True)
    assert stats.record_label("t2", False)
    assert stats.record_label("t3", True)
    assert overall(stats, "R-1") == {"hits": 4, "alerts": 4, "labelled": 3, "confirmed_fraud": 2, "precision": 2 / 3}

    stats.record_label("t2", True)  # contradicts: replaces, does not add
    assert overall(stats, "R-1") == {"hits": 4, "alerts": 4, "labelled": 3, "confirmed_fraud": 3, "precision": 1.0}
    stats.record_label("t1", False)
    stats.record_label("t1", False)  # the same label again changes nothing
    assert overall(stats, "R-1") == {"hits": 4, "alerts": 4, "labelled": 3, "confirmed_fraud": 2, "precision": 2 / 3}
    day = stats.snapshot()["R-1"]["days"]["2023-11-20"]
    assert day == overall(stats, "R-1")


def test_hits_alerts_and_shadow() -> None:
    stats = RuleStats()
    stats.record_hit("R-ACTIVE", "t1", MON, alerted=True)
    stats.record_hit("R-ACTIVE", "t2", MON, alerted=False)  # e.g. suppressed by the alert budget
    stats.record_hit("R-SHADOW", "t1", MON)
    assert overall(stats, "R-ACTIVE")["hits"] == 2 and overall(stats, "R-ACTIVE")["alerts"] == 1
    assert overall(stats, "R-SHADOW")["hits"] == 1 and overall(stats, "R-SHADOW")["alerts"] == 0
    stats.record_label("t1", True)  # one label serves every rule that fired on t1
    assert overall(stats, "R-ACTIVE")["confirmed_fraud"] == 1
    assert overall(stats, "R-SHADOW")["precision"] == 1.0


def test_per_day_buckets_follow_event_time_in_utc() -> None:
    stats = RuleStats()
    stats.record_hit("R-1", "late", MON - 1)  # 23:59:59.999 on Sunday
    stats.record_hit("R-1", "early", MON)
    stats.record_hit("R-1", "next", MON + DAY + 5)
    stats.record_label("early", True)
    days = stats.snapshot()["R-1"]["days"]
    assert list(days) == ["2023-11-19", "2023-11-20", "2023-11-21"]
    assert [d["hits"] for d in days.values()] == [1, 1, 1]
    assert days["2023-11-20"]["precision"] == 1.0 and days["2023-11-19"]["precision"] is None


def test_redelivered_hits_count_once() -> None:
    stats = RuleStats()
    stats.record_hit("R-1", "t1", MON)
    stats.record_hit("R-1", "t1", MON)
    assert overall(stats, "R-1")["hits"] == 1 and overall(stats, "R-1")["alerts"] == 0
    stats.record_hit("R-1", "t1", MON, alerted=True)  # the alert was reported late
    stats.record_hit("R-1", "t1", MON, alerted=True)
    assert overall(stats, "R-1")["hits"] == 1 and overall(stats, "R-1")["alerts"] == 1


def test_memory_is_bounded_by_max_pending() -> None:
    stats = RuleStats(max_pending=2)
    for tx in ("t1", "t2", "t3"):
        stats.record_hit("R-1", tx, MON)
    assert stats.pending == 2
    assert stats.record_label("t1", True) is False  # forgotten: oldest first
    assert stats.record_label("t3", True) is True
    assert overall(stats, "R-1") == {"hits": 3, "alerts": 0, "labelled": 1, "confirmed_fraud": 1, "precision": 1.0}
    stats.record_hit("R-1", "t1", MON)  # t1 is new again: the horizon is documented as a limit
    assert overall(stats, "R-1")["hits"] == 4


def test_labels_without_hits_are_ignored_and_later_hits_see_earlier_labels() -> None:
    stats = RuleStats()
    assert stats.record_label("nobody", True) is False
    stats.record_hit("R-1", "t1", MON)
    stats.record_label("t1", True)
    stats.record_hit("R-2", "t1", MON)  # fired on an already labelled transaction
    assert overall(stats, "R-2") == {"hits": 1, "alerts": 0, "labelled": 1, "confirmed_fraud": 1, "precision": 1.0}


def test_days_older_than_max_days_are_dropped_but_overall_is_kept() -> None:
    stats = RuleStats(max_days=2)
    stats.record_hit("R-1", "d0", MON)
    stats.record_hit("R-1", "d1", MON + DAY)
    assert list(stats.snapshot()["R-1"]["days"]) == ["2023-11-20", "2023-11-21"]
    stats.record_hit("R-1", "d2", MON + 2 * DAY)
    assert list(stats.snapshot()["R-1"]["days"]) == ["2023-11-21", "2023-11-22"]
    stats.record_hit("R-1", "late", MON)  # too old for a day bucket
    stats.record_label("d0", True)  # its day is gone; overall still learns
    snap = stats.snapshot()["R-1"]
    assert list(snap["days"]) == ["2023-11-21", "2023-11-22"]
    assert snap["overall"]["hits"] == 4 and snap["overall"]["confirmed_fraud"] == 1
    assert sum(day["hits"] for day in snap["days"].values()) == 2


def test_record_outcome() -> None:
    rules = RuleSet(
        [
            Rule("R-A", "alert", "amount > 100", "active", "alert"),
            Rule("R-S", "score", "amount > 50", "active", "score", 0.2),
            Rule("R-SH", "shadow", "amount > 10", "shadow", "alert"),
        ]
    )
    stats = RuleStats()
    stats.record_outcome(rules.evaluate({"amount": 500}), "t1", MON, alerted=True)
    stats.record_outcome(rules.evaluate({"amount": 60}), "t2", MON, alerted=True)  # the model alerted
    snap = stats.snapshot()
    assert {rule_id: (s["overall"]["hits"], s["overall"]["alerts"]) for rule_id, s in snap.items()} == {
        "R-A": (1, 1),
        "R-S": (2, 0),
        "R-SH": (2, 0),
    }


def test_snapshot_is_json_able() -> None:
    stats = RuleStats()
    stats.record_hit("R-1", "t1", MON, alerted=True)
    stats.record_label("t1", False)
    assert json.loads(json.dumps(stats.snapshot())) == stats.snapshot()
    assert RuleStats().snapshot() == {}


def test_to_table() -> None:
    stats = RuleStats()
    for i in range(10):
        stats.record_hit("R-HIGH-AMOUNT", f"t{i}", MON + (i % 3) * DAY, alerted=i % 2 == 0)
    stats.record_hit("R-CNP", "t0", MON - 10 * DAY)
    for i in range(4):
        stats.record_label(f"t{i}", i != 1)
    table = stats.to_table(modes={"R-HIGH-AMOUNT": "active", "R-NEVER": "shadow"})
    lines = table.splitlines()
    assert lines[0].split() == [
        "rule", "mode", "hits", "alerts", "labelled", "precision",
        "11-16", "11-17", "11-18", "11-19", "11-20", "11-21", "11-22",
    ]  # fmt: skip
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["R-CNP", "?", "1", "0", "1", "1.000", "0", "0", "0", "0", "0", "0", "0"]
    assert lines[3].split() == ["R-HIGH-AMOUNT", "active", "10", "5", "4", "0.750", "0", "0", "0", "0", "4", "3", "3"]
    assert lines[4].split() == ["R-NEVER", "shadow", "0", "0", "0", "-", "0", "0", "0", "0", "0", "0", "0"]
    assert len({len(line) for line in lines[:2]}) == 1  # aligned
    earlier = stats.to_table(end_day="2023-11-10", days=2).splitlines()
    assert earlier[0].split()[-2:] == ["11-09", "11-10"] and earlier[2].split()[-2:] == ["0", "1"]


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="max_pending"):
        RuleStats(max_pending=0)
    with pytest.raises(ValueError, match="max_days"):
        RuleStats(max_days=0)
    stats = RuleStats(max_pending=10, max_days=3)
    assert stats.max_pending == 10 and stats.max_days == 3


_EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("hit"), st.sampled_from(["R-1", "R-2"]), st.integers(0, 9), st.booleans()),
        st.tuples(st.just("label"), st.integers(0, 9), st.booleans()),
    ),
    max_size=60,
)


@settings(max_examples=200)
@given(_EVENTS)
def test_counts_match_a_simple_model(events: list[tuple[object, ...]]) -> None:
    """With a horizon large enough to remember everything, the counts follow from the final labels."""
    stats = RuleStats(max_pending=1000)
    hits: dict[str, set[int]] = {"R-1": set(), "R-2": set()}
    alerted: dict[str, set[int]] = {"R-1": set(), "R-2": set()}
    labels: dict[int, bool] = {}
    for event in events:
        if event[0] == "hit":
            _, rule_id, tx, alert = event
            stats.record_hit(str(rule_id), f"t{tx}", MON, alerted=bool(alert))
            hits[str(rule_id)].add(int(tx))  # type: ignore[call-overload]
            if alert:
                alerted[str(rule_id)].add(int(tx))  # type: ignore[call-overload]
        else:
            _, tx, is_fraud = event
            known = any(int(tx) in txs for txs in hits.values())  # type: ignore[call-overload]
            assert stats.record_label(f"t{tx}", bool(is_fraud)) is known
            if known:
                labels[int(tx)] = bool(is_fraud)  # type: ignore[call-overload]
    snap = stats.snapshot()
    for rule_id, txs in hits.items():
        if not txs:
            assert rule_id not in snap
            continue
        labelled = [tx for tx in txs if tx in labels]
        fraud = sum(labels[tx] for tx in labelled)
        assert snap[rule_id]["overall"] == {
            "hits": len(txs),
            "alerts": len(alerted[rule_id]),
            "labelled": len(labelled),
            "confirmed_fraud": fraud,
            "precision": fraud / len(labelled) if labelled else None,
        }
