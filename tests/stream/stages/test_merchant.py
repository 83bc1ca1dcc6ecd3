"""The merchant stage without faust or a broker: authorizations from every card partition applied in event-time
order once every card partition has passed them, held ones handed back to be acknowledged, copies skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fraudstream.contracts import Authorization, decode, encode
from fraudstream.core.scorer import FraudScorer
from fraudstream.stream import delivery
from fraudstream.stream.stages import IntakeStage, MerchantStage, Message
from fraudstream.stream.stages.merchant import Applied

from .fakes import FakeConsumer, FakeTable, authorization, harness, message


@dataclass
class HeldMessage(Message):
    """A message the stage may hold (``delivery.hold`` takes a reference, as faust's messages count them)."""

    refs: int = field(default=0)

    def incref(self) -> None:
        self.refs += 1


class TaggedTable(FakeTable):
    """The merchant table seen through its tags (``TaggedMapping.tag``): what each merchant's state includes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, bytes] = {}

    def tag(self, key: str) -> bytes | None:
        return self.tags.get(key)


def merchant_stage(partitions: int = 2) -> tuple[MerchantStage, Any]:
    s, metrics, out, dead = harness(partitions)
    table = TaggedTable()
    return MerchantStage(s, metrics, out, dead, FraudScorer(s), table, table), out


def by_merchant(s: Any, offset: int, value: dict[str, Any], partition: int = 0) -> HeldMessage:
    m = message(s.topic_by_merchant, partition, offset, value)
    return HeldMessage(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)


def forwarded(a: dict[str, Any], source: int, offset: int) -> dict[str, Any]:
    """As intake hands an authorization on: the card's features (none here), where it came from."""
    return {"auth": a, "features": {}, "late": False, "duplicate": False, "src": [source, offset], "arr": 1}


def test_authorizations_are_applied_in_event_time_once_every_card_partition_has_passed_them() -> None:
    stage, out = merchant_stage()
    s = stage.settings
    late, early = authorization(5, card="card-a"), authorization(2, card="card-b")  # from card partitions 0 and 1
    released = stage.batch([by_merchant(s, 0, forwarded(late, 0, 50)), by_merchant(s, 1, {"marks": [[0, late["ts"]]]})])
    assert released == [] and out.to(s.topic_enriched) == [], "card partition 1 may still send something older"
    assert stage.metrics.registry.get_sample_value("fraudstream_merchant_held") == 1
    # Card partition 1 sends an older one; then both card partitions have moved past them (strictly: another
    # authorization of the same ts could still come).
    released = stage.batch([by_merchant(s, 2, forwarded(early, 1, 70)), by_merchant(s, 3, {"marks": [[1, late["ts"] + 1]]}),
                            by_merchant(s, 4, {"marks": [[0, late["ts"] + 1]]})])
    assert [e.offset for e in released] == [2, 0], "handed back in the order applied, to be acknowledged"
    assert all(e.refs == 1 for e in released), "each was held (not committed) until now"
    enriched = out.to(s.topic_enriched)
    assert [(d["auth"]["tx_id"], k) for d, k, _p in enriched] == [("tx-2", b"card-b"), ("tx-5", b"card-a")]
    core = FraudScorer(s)
    expected = [core.enrich_merchant(Authorization(**a), False) for a in (early, late)]
    assert [d["features"] for d, _k, _p in enriched] == expected, "the core's merchant features, in event-time order"
    stage.commit()
    assert stage.progress("m-1") == Applied((late["ts"], "tx-5"), {0: 50, 1: 70})
    assert stage.merchant_table.sent_pending == 1
    for e in released:
        delivery.let_go(e)


def test_a_copy_of_what_the_state_includes_is_skipped() -> None:
    stage, out = merchant_stage(partitions=1)
    s = stage.settings
    a = authorization(3)
    stage.batch([by_merchant(s, 0, forwarded(a, 0, 12)), by_merchant(s, 1, {"idle": [0]})])
    stage.commit()
    # Intake crashed before its cards' state was written: it sends the same authorization again (same source offset).
    stage.batch([by_merchant(s, 2, forwarded(a, 0, 12)), by_merchant(s, 3, {"idle": [0]})])
    assert [d["auth"]["tx_id"] for d, _k, _p in out.to(s.topic_enriched)] == ["tx-3"], "its output exists already"


def test_a_tag_as_earlier_versions_wrote_it_still_counts_and_is_written_back_alike() -> None:
    """A rolling upgrade: a merchant state whose tag an earlier version wrote; written back as it would write it."""
    stage, out = merchant_stage(partitions=1)
    s = stage.settings
    done, new = authorization(3), authorization(4)
    stage.merchant_durable.tags["m-1"] = encode({"f": [done["ts"], "tx-3"], "s": {"0": 12}})
    stage.batch([by_merchant(s, 0, forwarded(done, 0, 12)), by_merchant(s, 1, forwarded(new, 0, 13)),
                 by_merchant(s, 2, {"idle": [0]})])
    assert [d["auth"]["tx_id"] for d, _k, _p in out.to(s.topic_enriched)] == ["tx-4"], "tx-3 is in the state already"
    assert decode(stage.tag("m-1")) == {"f": [new["ts"], "tx-4"], "s": {"0": 13}}


def test_the_card_features_are_passed_on_as_intake_wrote_them() -> None:
    """Intake writes the card's features last; the merchant stage adds the merchant's without decoding them."""
    stage, out = merchant_stage(partitions=1)
    s = stage.settings
    a = authorization(1)
    card = {"card_count_1h": 1.0, "card_amount_sum_1h": 20.5}
    record = {"auth": a, "late": False, "duplicate": False, "src": [0, 5], "arr": 1, "features": card}
    stage.batch([by_merchant(s, 0, record), by_merchant(s, 1, {"idle": [0]})])
    [(enriched, _key, _partition)] = out.to(s.topic_enriched)
    assert enriched["features"] == {**card, **FraudScorer(s).enrich_merchant(Authorization(**a), False)}


def test_progress_as_earlier_versions_wrote_it_still_counts() -> None:
    # One card partition per record; still in the topic when workers are upgraded.
    stage, out = merchant_stage()
    s = stage.settings
    a = authorization(1)
    released = stage.batch([by_merchant(s, 0, forwarded(a, 0, 5)), by_merchant(s, 1, {"source": 0, "mark": a["ts"] + 1}),
                            by_merchant(s, 2, {"source": 1, "idle": True})])
    assert [e.offset for e in released] == [0]
    assert [d["auth"]["tx_id"] for d, _k, _p in out.to(s.topic_enriched)] == ["tx-1"]


def test_after_a_rebalance_what_was_held_is_released_once_intake_announces_again() -> None:
    """Intake says only what changed, so what a merchant partition heard before its committed offset is gone when it
    forgets its order at a rebalance: intake announces everything again then (`IntakeStage.announce_again`)."""
    s, metrics, out, dead = harness(2)
    cards = TaggedTable()
    intake = IntakeStage(s, metrics, out, dead, FraudScorer(s), cards, cards)
    stage, merchant_out = merchant_stage(2)
    consumer = FakeConsumer(s.topic_authorizations, range(2))
    log: list[HeldMessage] = []  # merchant partition 0 of fraud.authorizations-by-merchant

    def deliver() -> list[HeldMessage]:
        """What intake wrote to merchant partition 0 (every authorization goes there here), to the merchant stage."""
        values = [decode(v) for t, v, _k, p in out.sent if t == s.topic_by_merchant and p in (None, 0)]
        events = [by_merchant(s, len(log) + i, value) for i, value in enumerate(values)]
        out.sent.clear()
        log.extend(events)
        return stage.batch(events)

    intake.announce_idle(consumer)  # nothing yet: both card partitions idle
    a = authorization(1)
    intake.batch([message(s.topic_authorizations, 0, 0, a, b"card-1")])
    consumer.highwaters[0] = 1
    assert deliver() == [] and len(stage.orders[0]) == 1, "held: card partition 0 may send more of its ts"
    # A rebalance: the merchant stage forgets its order; the held authorization is read again from the committed
    # offset (it was not committed), with what came after it, not the idle announcement before it.
    stage.forget()
    intake.announce_again()  # the worker's on_partitions_assigned
    assert stage.batch([by_merchant(s, e.offset, decode(e.value)) for e in log[1:]]) == []
    intake.source_seen[0] -= s.source_idle_s  # card partition 0 goes quiet
    intake.announce_idle(consumer)
    released = deliver()
    assert [e.offset for e in released] == [1], "card partition 1's idleness said again: nothing holds it back"
    assert [d["auth"]["tx_id"] for d, _k, _p in merchant_out.to(s.topic_enriched)] == [a["tx_id"]]
