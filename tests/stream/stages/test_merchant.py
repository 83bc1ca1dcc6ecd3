"""The merchant stage without faust or a broker: authorizations from every card partition applied in event-time
order once every card partition has passed them, held ones handed back to be acknowledged, copies skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fraudstream.contracts import Authorization
from fraudstream.core.scorer import FraudScorer
from fraudstream.stream import delivery
from fraudstream.stream.stages import MerchantStage, Message

from .fakes import FakeTable, authorization, harness, message


@dataclass
class HeldMessage(Message):
    """A message the stage may hold (``delivery.hold`` takes a reference, as faust's messages count them)."""

    refs: int = field(default=0)

    def incref(self) -> None:
        self.refs += 1


@dataclass
class Event:
    message: HeldMessage


class TaggedTable(FakeTable):
    def tag(self, key: str) -> bytes | None:
        return None


def merchant_stage(partitions: int = 2) -> tuple[MerchantStage, Any]:
    s, metrics, out, dead = harness(partitions)
    table = TaggedTable()
    return MerchantStage(s, metrics, out, dead, FraudScorer(s), table, table), out


def by_merchant(s: Any, offset: int, value: dict[str, Any], partition: int = 0) -> Event:
    m = message(s.topic_by_merchant, partition, offset, value)
    return Event(HeldMessage(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp))


def forwarded(a: dict[str, Any], source: int, offset: int) -> dict[str, Any]:
    """As intake hands an authorization on: the card's features (none here), where it came from."""
    return {"auth": a, "features": {}, "late": False, "duplicate": False, "src": [source, offset], "arr": 1}


def test_authorizations_are_applied_in_event_time_once_every_card_partition_has_passed_them() -> None:
    stage, out = merchant_stage()
    s = stage.settings
    late, early = authorization(5, card="card-a"), authorization(2, card="card-b")  # from card partitions 0 and 1
    released = stage.batch([by_merchant(s, 0, forwarded(late, 0, 50)), by_merchant(s, 1, {"source": 0, "mark": late["ts"]})])
    assert released == [] and out.to(s.topic_enriched) == [], "card partition 1 may still send something older"
    assert stage.metrics.registry.get_sample_value("fraudstream_merchant_held") == 1
    # Card partition 1 sends an older one; then both card partitions have moved past them (strictly: another
    # authorization of the same ts could still come).
    released = stage.batch([by_merchant(s, 2, forwarded(early, 1, 70)), by_merchant(s, 3, {"source": 1, "mark": late["ts"] + 1}),
                            by_merchant(s, 4, {"source": 0, "mark": late["ts"] + 1})])
    assert [e.message.offset for e in released] == [2, 0], "handed back in the order applied, to be acknowledged"
    assert all(e.message.refs == 1 for e in released), "each was held (not committed) until now"
    enriched = out.to(s.topic_enriched)
    assert [(d["auth"]["tx_id"], k) for d, k, _p in enriched] == [("tx-2", b"card-b"), ("tx-5", b"card-a")]
    core = FraudScorer(s)
    expected = [core.enrich_merchant(Authorization(**a), False) for a in (early, late)]
    assert [d["features"] for d, _k, _p in enriched] == expected, "the core's merchant features, in event-time order"
    stage.commit()
    assert stage.progress("m-1") == {"f": [late["ts"], "tx-5"], "s": {"0": 50, "1": 70}}
    assert stage.merchant_table.sent_pending == 1
    for e in released:
        delivery.let_go(e.message)


def test_a_copy_of_what_the_state_includes_is_skipped() -> None:
    stage, out = merchant_stage(partitions=1)
    s = stage.settings
    a = authorization(3)
    stage.batch([by_merchant(s, 0, forwarded(a, 0, 12)), by_merchant(s, 1, {"source": 0, "idle": True})])
    stage.commit()
    # Intake crashed before its cards' state was written: it sends the same authorization again (same source offset).
    stage.batch([by_merchant(s, 2, forwarded(a, 0, 12)), by_merchant(s, 3, {"source": 0, "idle": True})])
    assert [d["auth"]["tx_id"] for d, _k, _p in out.to(s.topic_enriched)] == ["tx-3"], "its output exists already"
