"""The intake stage without faust or a broker: validation, the card's features on to the merchant's partition,
progress marks for event-time order, and a redelivered authorization skipped once its card's state includes it.
The progress marks and idle announcements say only what changed, and all of it again after a rebalance."""

from __future__ import annotations

import time
from typing import Any

from fraudstream.contracts import Authorization
from fraudstream.core.scorer import FraudScorer
from fraudstream.stream.stages import IntakeStage
from fraudstream.stream.stages.intake import ANNOUNCE_AGAIN_S

from .fakes import FakeConsumer, FakeTable, authorization, harness, message


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
    assert marks == [({"marks": [[2, auths[-1]["ts"]]]}, p) for p in range(3)], "every merchant partition told"
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


def announcements(out: Any, s: Any) -> list[tuple[dict[str, Any], int | None]]:
    """What went to every merchant partition (progress and idle), not the authorizations, and forget it."""
    said = [(d, p) for d, _k, p in out.to(s.topic_by_merchant) if p is not None]
    out.sent.clear()
    return said


def test_a_quiet_period_is_announced_once_not_at_every_tick() -> None:
    stage, out = intake()
    s = stage.settings
    consumer = FakeConsumer(s.topic_authorizations, range(3), highwaters={0: 11, 2: 21})
    stage.batch([message(s.topic_authorizations, 0, 10, authorization(1), b"card-1"),
                 message(s.topic_authorizations, 2, 20, authorization(2, card="card-2"), b"card-2")])
    assert announcements(out, s) == [({"marks": [[0, authorization(1)["ts"]], [2, authorization(2)["ts"]]]}, p)
                                     for p in range(3)], "one record per merchant partition, every card partition in it"
    stage.announce_idle(consumer)
    assert announcements(out, s) == [({"idle": [1]}, p) for p in range(3)], "quiet since the start: idle at once"
    # Ten seconds of ticks (the worker's timer runs every source_idle_s / 2): card partitions 0 and 2 go quiet once.
    for _ in range(int(10 / (s.source_idle_s / 2))):
        stage.source_seen = {p: seen - s.source_idle_s / 2 for p, seen in stage.source_seen.items()}  # time passes
        stage.announce_idle(consumer)
    assert announcements(out, s) == [({"idle": [0, 2]}, p) for p in range(3)], "3 records in 10 s, not some at every tick"
    # A batch that does not move card partition 0 on still says it is busy again (it had been announced idle) ...
    stage.batch([message(s.topic_authorizations, 0, 11, authorization(1, card="card-3"), b"card-3")])
    assert announcements(out, s) == [({"marks": [[0, authorization(1)["ts"]]]}, p) for p in range(3)]
    # ... but not twice: the merchant partitions know.
    stage.batch([message(s.topic_authorizations, 0, 12, authorization(0, card="card-4"), b"card-4")])
    assert announcements(out, s) == []


def test_a_card_partition_is_announced_idle_source_idle_s_after_its_last_authorization() -> None:
    stage, out = intake()
    s = stage.settings
    consumer = FakeConsumer(s.topic_authorizations, range(1, 2), highwaters={1: 6})
    stage.batch([message(s.topic_authorizations, 1, 5, authorization(1), b"card-1")])
    announcements(out, s)
    stage.source_seen[1] = time.monotonic() - s.source_idle_s + 0.2
    stage.announce_idle(consumer)
    assert announcements(out, s) == [], "not quiet for source_idle_s yet"
    stage.source_seen[1] = time.monotonic() - s.source_idle_s
    stage.announce_idle(consumer)
    assert announcements(out, s) == [({"idle": [1]}, p) for p in range(3)]
    consumer.highwaters[1] = 7  # another authorization on its way: behind, not idle (what was said stands)
    stage.announce_idle(consumer)
    assert announcements(out, s) == []


def test_everything_is_announced_again_after_a_rebalance_and_every_so_often() -> None:
    stage, out = intake()
    s = stage.settings
    consumer = FakeConsumer(s.topic_authorizations, range(2), highwaters={0: 11})
    stage.batch([message(s.topic_authorizations, 0, 10, authorization(1), b"card-1")])
    stage.announce_idle(consumer)
    assert [d for d, _p in announcements(out, s)] == [{"marks": [[0, authorization(1)["ts"]]]}] * 3 + [{"idle": [1]}] * 3
    stage.announce_idle(consumer)
    stage.batch([message(s.topic_authorizations, 0, 11, authorization(0, card="card-2"), b"card-2")])
    assert announcements(out, s) == [], "nothing changed"
    # A rebalance: the merchant stages forgot what they were told (the worker calls this when it is assigned).
    stage.announce_again()
    consumer.highwaters[0] = 12
    stage.batch([message(s.topic_authorizations, 0, 12, authorization(0, card="card-3"), b"card-3")])
    stage.announce_idle(consumer)
    assert [d for d, _p in announcements(out, s)] == [{"marks": [[0, authorization(1)["ts"]]]}] * 3 + [{"idle": [1]}] * 3
    # The safety net: ANNOUNCE_AGAIN_S after the last time, all of it again, changed or not.
    stage.announce_idle(consumer)
    assert announcements(out, s) == []
    stage.announced_since -= ANNOUNCE_AGAIN_S
    stage.announce_idle(consumer)
    assert announcements(out, s) == [({"idle": [1]}, p) for p in range(3)]
    stage.source_seen[0] -= s.source_idle_s
    stage.announce_idle(consumer)
    assert announcements(out, s) == [({"idle": [0]}, p) for p in range(3)]
