"""What faust may commit of a guarded topic (fraudstream.stream.delivery, faust_patches), on a real faust consumer (not started)."""

from __future__ import annotations

import faust
import pytest
from faust.types import TP

from fraudstream.stream import delivery
from fraudstream.stream.faust_patches import keep_stream_offsets_contiguous

TOPIC = "test-delivery.fraud.authorizations-by-merchant"


@pytest.fixture()
def consumer() -> faust.types.ConsumerT:
    keep_stream_offsets_contiguous([TOPIC])
    app = faust.App("test-delivery", broker="kafka://127.0.0.1:9")  # never connected
    return app.consumer


def acknowledged(consumer: faust.types.ConsumerT, tp: TP, offsets: list[int]) -> None:
    consumer._acked[tp] = list(offsets)
    consumer._acked_index[tp] = set(offsets)


def test_nothing_is_committed_between_a_revocation_and_the_next_seek(consumer: faust.types.ConsumerT) -> None:
    # Revoked: faust forgot the committed offset; events fetched before were acknowledged after, while an earlier
    # one (953) was still held for event-time order. Committing their run (964) skipped 953 for the next owner.
    tp = TP(TOPIC, 0)
    acknowledged(consumer, tp, list(range(957, 964)))
    assert consumer._new_offset(tp) is None


def test_a_run_from_the_committed_offset_is_committed_up_to_its_first_hole(consumer: faust.types.ConsumerT) -> None:
    tp = TP(TOPIC, 1)
    consumer._committed_offset[tp] = 950
    acknowledged(consumer, tp, [950, 951, 952, *range(954, 964)])
    assert consumer._new_offset(tp) == 953


def test_nothing_is_committed_while_the_committed_offset_itself_is_not_acknowledged(
        consumer: faust.types.ConsumerT) -> None:
    tp = TP(TOPIC, 2)
    consumer._committed_offset[tp] = 950
    acknowledged(consumer, tp, list(range(951, 964)))  # faust's own rule would commit 964 here
    assert consumer._new_offset(tp) is None


def test_other_topics_keep_faust_rules(consumer: faust.types.ConsumerT) -> None:
    tp = TP("test-delivery-cards-changelog", 0)  # compacted: offsets legitimately jump
    acknowledged(consumer, tp, list(range(957, 964)))
    assert consumer._new_offset(tp) == 964


class Event:
    """The part of a faust event that `fresh` reads."""

    def __init__(self, message: faust.types.Message) -> None:
        self.message = message


def event(partition: int, offset: int, generation: int | None) -> Event:
    return Event(faust.types.Message(TOPIC, partition, offset, 0.0, 0, None, None, b"{}", None,
                                     generation_id=generation))


def test_events_fetched_before_their_partition_was_revoked_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # Generation 3's assignment of partition 0 was revoked; partition 1 was last revoked in generation 1.
    monkeypatch.setattr(delivery, "_REVOKED", {(TOPIC, 0): 3, (TOPIC, 1): 1})
    stale = [event(0, 957, 3), event(0, 958, 2), event(1, 40, 1)]
    kept = [event(0, 900, 4), event(1, 41, 3), event(2, 7, 0), event(0, 901, None)]
    assert delivery.fresh([*stale, *kept]) == kept
    # faust acknowledges every event of a batch at its end: the stale ones must not count (nor be committed)
    assert all(e.message.acked for e in stale) and not any(e.message.acked for e in kept)
