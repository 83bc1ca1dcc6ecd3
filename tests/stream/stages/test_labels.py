"""The card-event stage without faust or a broker: labels and reissues validated and re-keyed by card, then
applied where the card's alerts are decided, their outcomes published."""

from __future__ import annotations

from fraudstream.core.scorer import FraudScorer
from fraudstream.core.snapshot import EncodedSnapshots
from fraudstream.stream.stages import CardEventStage, CardTables, LabelOutcomes, ScoreStage

from .fakes import FakeTable, authorization, harness, message


def stages():
    s, metrics, out, dead = harness()
    tables = CardTables(*(FakeTable() for _ in range(6)))
    scorer = FraudScorer(s, snapshots=EncodedSnapshots(tables.snapshots), learn_inline=False)
    outcomes = LabelOutcomes(s, metrics, out)
    score = ScoreStage(s, metrics, out, dead, scorer, tables, outcomes)
    return CardEventStage(s, metrics, out, dead, scorer, tables, outcomes), score, out


def test_labels_and_reissues_are_validated_and_keyed_by_card() -> None:
    events, _score, out = stages()
    s = events.settings
    label = {"card_id": "card-7", "is_fraud": True, "ts": 1_700_000_000_000, "source": "analyst", "tx_id": "tx-1"}
    events.intake([message(s.topic_labels, 0, 1, label, b"card-7"),
                   message(s.topic_labels, 0, 2, {**label, "source": ""}, b"card-7")], "label")
    events.intake([message(s.topic_card_reissues, 1, 1, {"card_id": "card-7", "ts": 1_700_000_100_000}, b"card-7")], "reissue")
    assert [(d["kind"], d["record"]["card_id"], k) for d, k, _p in out.to(s.topic_card_events)] == [
        ("label", "card-7", b"card-7"), ("reissue", "card-7", b"card-7")]
    assert [(d["offset"], d["reason"]) for d, _k, _p in out.to(s.topic_dead_letter)] == [(2, "invalid_value")]
    assert events.metrics.registry.get_sample_value("fraudstream_labels_total", {"source": "invalid", "status": "rejected"}) == 1


def test_a_fraud_label_blocks_the_card_until_its_reissue_and_teaches_the_model() -> None:
    events, score, out = stages()
    s = events.settings
    auth = authorization(0, card="card-7")
    score.batch([message(s.topic_enriched, 1, 0, {"auth": auth, "features": {}, "late": False}, b"card-7")])
    score.send()
    label = {"card_id": "card-7", "is_fraud": True, "ts": auth["ts"] + 60_000, "source": "analyst", "tx_id": auth["tx_id"]}
    events.batch([message(s.topic_card_events, 1, 0, {"kind": "label", "record": label}, b"card-7")])
    standing = score.scorer.standings.get("card-7")
    assert standing.blocks(auth["ts"] + 120_000)
    assert [d["tx_id"] for d, _k, _p in out.to(s.topic_training) if d.get("tx_id")] == [auth["tx_id"]], "learned as fraud"
    assert events.tables.standings.routes == {}, "the batch's routes are done with"
    events.batch([message(s.topic_card_events, 1, 1, {"kind": "reissue", "record": {"card_id": "card-7", "ts": auth["ts"] + 180_000}},
                          b"card-7")])
    assert not standing.blocks(auth["ts"] + 240_000)
    assert events.metrics.registry.get_sample_value("fraudstream_labels_total", {"source": "analyst", "status": "learned"}) == 1
