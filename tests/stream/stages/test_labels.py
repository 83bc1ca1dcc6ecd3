"""The card-event stage without faust or a broker: labels and reissues validated and re-keyed by card, then
applied where the card's alerts are decided, their outcomes published."""

from __future__ import annotations

from fraudstream.stream.stages import CardEventStage

from .fakes import T0, authorization, message, one_pass


def stages():
    score, out = one_pass(2)
    s, metrics, dead = score.settings, score.metrics, score.dead_letters
    return CardEventStage(s, metrics, out, dead, score.scorer, score.tables, score.outcomes), score, out


def test_labels_and_reissues_are_validated_and_keyed_by_card() -> None:
    events, _score, out = stages()
    s = events.settings
    label = {"card_id": "card-5", "is_fraud": True, "ts": 1_700_000_000_000, "source": "analyst", "tx_id": "tx-1"}
    events.intake([message(s.topic_labels, 0, 1, label, b"card-5"),
                   message(s.topic_labels, 0, 2, {**label, "source": ""}, b"card-5")], "label")
    events.intake([message(s.topic_card_reissues, 1, 1, {"card_id": "card-5", "ts": 1_700_000_100_000}, b"card-5")], "reissue")
    assert [(d["kind"], d["record"]["card_id"], k) for d, k, _p in out.to(s.topic_card_events)] == [
        ("label", "card-5", b"card-5"), ("reissue", "card-5", b"card-5")]
    assert [(d["offset"], d["reason"]) for d, _k, _p in out.to(s.topic_dead_letter)] == [(2, "invalid_value")]
    assert events.metrics.registry.get_sample_value("fraudstream_labels_total", {"source": "invalid", "status": "rejected"}) == 1


def test_a_fraud_label_blocks_the_card_until_its_reissue_teaches_the_model_and_counts_at_its_merchant() -> None:
    events, score, out = stages()
    s = events.settings
    assert score.book.card_partition("card-5") == 1
    auth = authorization(0, card="card-5")
    for p in (0, 1):
        score.merchants.quiet(p)
    score.batch([message(s.topic_authorizations, 1, 0, auth, b"card-5")])
    score.send()
    label = {"card_id": "card-5", "is_fraud": True, "ts": auth["ts"] + 60_000, "source": "analyst", "tx_id": auth["tx_id"]}
    events.batch([message(s.topic_card_events, 1, 5, {"kind": "label", "record": label}, b"card-5")])
    standing = score.scorer.standings.get("card-5")
    assert standing.blocks(auth["ts"] + 120_000)
    assert [d["tx_id"] for d, _k, _p in out.to(s.topic_training) if d.get("tx_id")] == [auth["tx_id"]], "learned as fraud"
    assert events.tables.standings.routes == {}, "the batch's routes are done with"
    # The merchant's news: in the card partition's state, and published with the batch, after the authorization's.
    events_out = [(d["events"], p) for d, _k, p in out.to(s.topic_merchant_partials) if d["events"]]
    assert events_out == [([["a", 0, "m-1", "card-5", 20.0, T0]], 1), ([["l", 5, "m-1", "card-5", T0, 1]], 1)]
    assert score.book.replica(1, "m-1").to_bytes() != type(score.book.replica(0, "m-1"))().to_bytes()
    events.batch([message(s.topic_card_events, 1, 5, {"kind": "label", "record": label}, b"card-5")])  # read again
    assert [d for d, _k, _p in out.to(s.topic_merchant_partials) if d["events"]][2:] == [], "counted once"
    events.batch([message(s.topic_card_events, 1, 6, {"kind": "reissue", "record": {"card_id": "card-5", "ts": auth["ts"] + 180_000}},
                          b"card-5")])
    assert not standing.blocks(auth["ts"] + 240_000)
    assert events.metrics.registry.get_sample_value("fraudstream_labels_total", {"source": "analyst", "status": "learned"}) == 1
