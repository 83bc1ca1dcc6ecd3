"""The intake stage without faust or a broker: validation, the card's features on to the merchant's partition,
progress marks for event-time order, and a redelivered authorization skipped once its card's state includes it."""

from __future__ import annotations

from fraudstream.contracts import Authorization
from fraudstream.core.scorer import FraudScorer
from fraudstream.stream.stages import IntakeStage

from .fakes import FakeTable, authorization, harness, message


class TaggedTable(FakeTable):
    """The card table seen through its tags (``TaggedMapping.tag``): the offset each card's state includes."""

    def __init__(self, tags: dict[str, bytes] | None = None) -> None:
        super().__init__()
        self.tags = tags or {}

    def tag(self, key: str) -> bytes | None:
        return self.tags.get(key)


def intake(tags: dict[str, bytes] | None = None, partitions: int = 3):
    s, metrics, out, dead = harness(partitions)
    table = TaggedTable(tags)
    return IntakeStage(s, metrics, out, dead, FraudScorer(s), table, table), out


def test_authorizations_go_to_their_merchant_with_the_card_features_and_progress_marks() -> None:
    stage, out = intake()
    s = stage.settings
    auths = [authorization(i, card="card-1", merchant=f"m-{i}") for i in range(3)]
    stage.batch([message(s.topic_authorizations, 2, 10 + i, a, b"card-1") for i, a in enumerate(auths)])
    forwarded = out.to(s.topic_by_merchant)
    records = [(d, k) for d, k, p in forwarded if p is None]
    core = FraudScorer(s)
    for (d, key), a in zip(records, auths, strict=True):
        assert key == a["merchant_id"].encode()
        assert d["auth"]["tx_id"] == a["tx_id"] and d["src"] == [2, 10 + auths.index(a)]
        assert d["features"] == core.card_stage(Authorization(**a)).features, "the core's card features"
        assert d["arr"] == 1_700_000_000_000, "when it reached fraud.authorizations (its record timestamp)"
    marks = [(d, p) for d, _k, p in forwarded if p is not None]
    assert marks == [({"source": 2, "mark": auths[-1]["ts"]}, p) for p in range(3)], "every merchant partition told"
    assert stage.card_offset("card-1") == 12
    stage.commit()
    assert stage.card_table.sent_pending == 1 and stage.card_table.routes == {}


def test_bad_authorizations_are_dead_lettered_with_their_reason() -> None:
    stage, out = intake()
    s = stage.settings
    stage.batch([message(s.topic_authorizations, 0, 5, b"{oops", b"card-1"),
                 message(s.topic_authorizations, 0, 6, {**authorization(1), "amount": -3.0}, b"card-1"),
                 message(s.topic_authorizations, 0, 7, authorization(2), b"card-1")])
    letters = [(d["offset"], d["reason"]) for d, _k, _p in out.to(s.topic_dead_letter)]
    assert [offset for offset, _reason in letters] == [5, 6] and all(reason for _o, reason in letters)
    assert [d["auth"]["tx_id"] for d, _k, p in out.to(s.topic_by_merchant) if p is None] == ["tx-2"]
    assert stage.metrics.registry.get_sample_value("fraudstream_dead_letters_total",
                                                   {"topic": s.topic_authorizations, "reason": letters[0][1]}) >= 1


def test_a_redelivered_authorization_in_the_card_state_already_is_skipped() -> None:
    # The card's state was written including offset 41 (its output went before): 40 and 41 come again after a crash.
    stage, out = intake(tags={"card-1": b"41"})
    s = stage.settings
    stage.batch([message(s.topic_authorizations, 1, 40 + i, authorization(i), b"card-1") for i in range(3)])
    assert [d["auth"]["tx_id"] for d, _k, p in out.to(s.topic_by_merchant) if p is None] == ["tx-2"]
    assert stage.card_offset("card-1") == 42
    # Its progress still counts: the merchant partitions may release what waited for this card partition.
    assert stage.source_marks == {1: authorization(2)["ts"]}
