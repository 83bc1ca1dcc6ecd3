"""The console's view of the pipeline, fed message by message as the feed thread does: no broker."""

from __future__ import annotations

from fraudstream.console.view import PipelineView
from fraudstream.contracts import encode

T = 1_700_000_000_000
HOUR = 3_600_000


def scored(tx: str, card: str, ts: int, score: float = 0.1, action: str = "none", rules=(), hits=None, amount: float = 1000.0) -> bytes:
    return encode({"tx_id": tx, "card_id": card, "merchant_id": "m1", "amount": amount, "ts": ts, "score": score,
                   "model_version": "v1", "rule_hits": list(rules if hits is None else hits),
                   "decision": {"action": action, "threshold": 0.8, "alert_id": None, "rules": list(rules)}})


def alert(tx: str, card: str, ts: int, score: float = 0.9, action: str = "alert", alert_id: str | None = None, rules=()) -> bytes:
    return encode({"alert_id": alert_id or f"alert-{tx}", "tx_id": tx, "card_id": card, "merchant_id": "m1", "amount": 5000,
                   "ts": ts, "score": score, "reasons": [f"reason for {tx}"], "rules": list(rules), "action": action})


def label(card: str, ts: int, tx: str | None = None, is_fraud: bool = True, since: int | None = None, source: str = "analyst") -> bytes:
    value = {"card_id": card, "is_fraud": is_fraud, "ts": ts, "source": source}
    if tx is not None:
        value["tx_id"] = tx
    if since is not None:
        value["since"] = since
    return encode(value)


def test_the_queue_is_open_alerts_by_score_then_time_and_updates_fold_into_their_alert() -> None:
    v = PipelineView()
    v.apply("alerts", b"c1", alert("a", "c1", T, score=0.7))
    v.apply("alerts", b"c2", alert("b", "c2", T + 1, score=0.95))
    v.apply("alerts", b"c3", alert("c", "c3", T + 2, score=0.7))
    v.apply("alerts", b"c1", alert("a2", "c1", T + 3, score=0.8, action="update", alert_id="alert-a"))
    assert [a.alert_id for a in v.open_alerts()] == ["alert-b", "alert-a", "alert-c"]
    folded = v.alerts["alert-a"]
    assert folded.tx_ids == ["a", "a2"] and folded.score == 0.8 and folded.updated_ts == T + 3


def test_labels_close_alerts_and_a_card_level_report_blocks_the_card_until_reissued() -> None:
    v = PipelineView()
    for i in range(3):
        v.apply("scores", b"c1", scored(f"t{i}", "c1", T + i * HOUR))
    v.apply("alerts", b"c1", alert("t2", "c1", T + 2 * HOUR))
    v.apply("alerts", b"c2", alert("u1", "c2", T))
    v.apply("labels", b"c2", label("c2", T + HOUR, tx="u1", is_fraud=False))
    assert v.alerts["alert-u1"].status == "legitimate" and not v.card("c2").standing.compromised
    v.apply("labels", b"c1", label("c1", T + 5 * HOUR, since=T + HOUR, source="customer_report"))
    card = v.card("c1")
    assert v.alerts["alert-t2"].status == "card reported"
    assert card.blocked_since == T + 5 * HOUR and v.open_alerts() == []
    v.apply("reissues", b"c1", encode({"card_id": "c1", "ts": T + 6 * HOUR}))
    assert card.blocked_since is None and card.reissued == [T + 6 * HOUR]


def test_a_label_read_before_its_alert_still_closes_it() -> None:
    v = PipelineView()
    v.apply("labels", b"c1", label("c1", T + HOUR, tx="t1"))
    v.apply("alerts", b"c1", alert("t1", "c1", T))
    assert v.alerts["alert-t1"].status == "confirmed fraud" and v.open_alerts() == []


def test_rule_stats_per_day_with_shadow_hits_and_labelled_precision() -> None:
    v = PipelineView()
    v.apply("rules", b"R-A", encode({"id": "R-A", "description": "big", "condition": "amount > 100", "mode": "active", "action": "alert"}))
    v.apply("rules", b"R-S", encode({"id": "R-S", "description": "shadow", "condition": "amount > 50", "mode": "shadow", "action": "alert"}))
    v.apply("scores", b"c1", scored("t1", "c1", T, action="alert", rules=["R-A"], hits=["R-A", "R-S"]))
    v.apply("scores", b"c2", scored("t2", "c2", T + 86_400_000, hits=["R-S"]))
    v.apply("labels", b"c1", label("c1", T + HOUR, tx="t1", is_fraud=True))
    v.apply("labels", b"c2", label("c2", T + 86_400_000 + HOUR, tx="t2", is_fraud=False))
    snap = v.rule_stats.snapshot()
    assert snap["R-A"]["overall"] == {"hits": 1, "alerts": 1, "labelled": 1, "confirmed_fraud": 1, "precision": 1.0}
    assert snap["R-S"]["overall"]["alerts"] == 0 and snap["R-S"]["overall"]["precision"] == 0.5
    assert sorted(snap["R-S"]["days"]) == ["2023-11-14", "2023-11-15"]
    assert v.rule_modes() == {"R-A": "active", "R-S": "shadow"}
    v.apply("rules", b"R-S", None)  # deleted
    assert v.rule_modes() == {"R-A": "active"}


def test_bad_messages_are_counted_never_raised_and_memory_is_bounded() -> None:
    v = PipelineView(recent=3, max_cards=2, max_alerts=2)
    for raw in (b"not json", b"[]", encode({"tx_id": "t"})):
        v.apply("scores", b"c1", raw)
    v.apply("alerts", b"c1", None)
    v.apply("rules", b"R-X", encode({"id": "R-X", "condition": "amount >", "mode": "active", "action": "alert", "description": ""}))
    v.apply("labels", b"wrong-key", label("c1", T, tx="t1"))
    assert v.unreadable == {"scores": 3, "alerts": 1, "labels": 1} and "R-X" in v.invalid_rules
    for i in range(5):
        v.apply("scores", f"c{i}".encode(), scored(f"t{i}", f"c{i}", T + i))
        v.apply("alerts", f"c{i}".encode(), alert(f"t{i}", f"c{i}", T + i))
    for i in range(5):
        v.apply("scores", b"c4", scored(f"x{i}", "c4", T + 10 + i))
    assert list(v.cards) == ["c3", "c4"] and len(v.card("c4").authorizations) == 3
    assert list(v.alerts) == ["alert-t3", "alert-t4"]


def test_the_feed_summary_says_what_was_read_and_what_was_not() -> None:
    from fraudstream.console.pages import feed_summary

    v = PipelineView()
    v.apply("scores", b"c1", scored("t1", "c1", T))
    v.apply("alerts", b"c1", b"{not json")
    text = feed_summary(v)
    assert "1 scores" in text and "Unreadable, skipped: 1 alerts (the last: " in text


def test_what_the_view_knows_of_a_card_for_the_operator_tools_check() -> None:
    from fraudstream.knowledge import unknown_to_pipeline

    v = PipelineView(recent=2)
    for i in range(3):
        v.apply("scores", b"c1", scored(f"t{i}", "c1", T + i * HOUR), partition=1)
    v.apply("scores", b"c2", scored("u0", "c2", T + 9 * HOUR), partition=0)
    v.apply("alerts", b"c2", alert("u0", "c2", T + 9 * HOUR))
    known = v.knowledge("c1", "t2")
    assert known.card_ts == [T + HOUR, T + 2 * HOUR] and not known.complete  # the latest two: the view is bounded
    assert known.tx_card == "c1" and known.scored == 4 and unknown_to_pipeline(known, "fraud.scores") is None
    assert known.stamp(T + 100 * HOUR) == T + 2 * HOUR, "the card's partition's event time, not the newest anywhere"
    assert v.knowledge("c1", "u0").tx_card == "c2"  # an alert's transaction of another card: the mix-up is caught
    assert "belongs to card c2" in (unknown_to_pipeline(v.knowledge("c1", "u0"), "fraud.scores") or "")
    assert unknown_to_pipeline(v.knowledge("c9"), "fraud.scores") is not None  # never seen (or forgotten)
