"""Lanes without a broker: records handed from the fetch to their stage in batches, acknowledged (so committable)
only once the stage finished their batch, stale and out-of-order ones left out, a full lane holding the fetch."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from faust.types.tuples import TP

from fraudstream.stream import delivery
from fraudstream.stream.lanes import Lane, LaneRecord, acknowledge, lane_batches

TOPIC = "fraud.authorizations"


class Consumer:
    """What a lane touches of faust's consumer: its bookkeeping of acknowledged offsets (as ``Consumer.ack`` keeps
    it, see ``faust_patches.acknowledge_offsets``) and ``seek`` (to read a hole again)."""

    class app:  # noqa: N801 (faust's consumer.app.topics)
        class topics:  # noqa: N801
            @staticmethod
            def acks_enabled_for(topic: str) -> bool:
                return True

    def __init__(self, committed: int | None = None) -> None:
        self._committed_offset: dict[Any, int | None] = defaultdict(lambda: committed)
        self._acked: dict[Any, list[int]] = defaultdict(list)
        self._acked_index: dict[Any, set[int]] = defaultdict(set)
        self._n_acked = 0
        self._waiting_for_ack = None
        self.seeks: list[tuple[Any, int]] = []

    @property
    def acked(self) -> list[int]:
        return [offset for offsets in self._acked.values() for offset in offsets]

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))


def fetched(offset: int, partition: int = 0, generation: int | None = 1) -> LaneRecord:
    """A record as the consumer's fetch hands it on: with the one reference it takes (``faust_patches``)."""
    return LaneRecord(TOPIC, partition, offset, None, None, b"{}", 1.7e9, TP(TOPIC, partition), generation)


@pytest.fixture(autouse=True)
def fresh_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "_NEXT", {(TOPIC, 0): 10})
    monkeypatch.setattr(delivery, "_REVOKED", {})
    monkeypatch.setattr(delivery, "_ASKED", {})


def test_a_finished_batch_is_acknowledged_an_unfinished_one_is_read_again() -> None:
    consumer = Consumer()

    async def run() -> tuple[list[list[int]], list[int]]:
        lane = Lane(TOPIC, limit=100)
        for offset in range(10, 15):
            await lane.put_all([fetched(offset)])
        seen: list[list[int]] = []
        batches = lane_batches(lane, lambda: consumer, 3, 0.01)
        async for batch in batches:
            seen.append([m.offset for m in batch])
            assert consumer.acked == [], "nothing acknowledged while its batch runs"
            break  # the first batch: finished (the next is asked for)
        seen.append([m.offset for m in await batches.__anext__()])
        await batches.aclose()  # the second: not finished (the stage was cancelled, say)
        return seen, consumer.acked

    seen, acked = asyncio.run(run())
    assert seen == [[10, 11, 12], [13, 14]]
    assert acked == [10, 11, 12], "the batch cut short is not acknowledged"
    assert delivery._NEXT[(TOPIC, 0)] == 13, "its offsets are expected again: later ones wait for them"


def test_a_held_message_is_acknowledged_only_when_let_go() -> None:
    consumer = Consumer()

    async def run() -> list[int]:
        lane = Lane(TOPIC, limit=100)
        await lane.put_all([fetched(10)])
        await lane.put_all([fetched(11)])
        batches = lane_batches(lane, lambda: consumer, 10, 0.01)
        batch = await batches.__anext__()
        delivery.hold(batch[0])  # the merchant stage keeps it for event-time order
        await lane.put_all([fetched(12)])
        await batches.__anext__()  # the first batch finished
        assert consumer.acked == [11]
        delivery.let_go(batch[0])
        acknowledge(consumer, [batch[0]])
        await batches.aclose()
        return consumer.acked

    assert asyncio.run(run()) == [11, 10]


def test_stale_and_out_of_order_records_are_left_out() -> None:
    consumer = Consumer()
    delivery._REVOKED[(TOPIC, 1)] = 3  # partition 1 was revoked in generation 3

    async def run() -> list[int]:
        lane = Lane(TOPIC, limit=100)
        await lane.put_all([fetched(7, partition=1, generation=3)])  # fetched before the revocation
        await lane.put_all([fetched(12)])  # 10 and 11 never came: a hole
        await lane.put_all([fetched(10)])
        batches = lane_batches(lane, lambda: consumer, 10, 0.01)
        batch = await batches.__anext__()
        await batches.aclose()
        return [m.offset for m in batch]

    assert asyncio.run(run()) == [10]
    assert [(tp.partition, offset) for tp, offset in consumer.seeks] == [(0, 10)], "read again from the hole"


def test_a_full_lane_holds_the_fetch_until_the_stage_takes_or_a_rebalance_starts() -> None:
    async def run() -> tuple[bool, bool, int]:
        lane = Lane(TOPIC, limit=2)
        await lane.put_all([fetched(10)])
        await lane.put_all([fetched(11)])
        put = asyncio.ensure_future(lane.put_all([fetched(12)]))
        await asyncio.sleep(0.05)
        held = not put.done()
        lane.take(1)
        await asyncio.wait_for(put, 1.0)
        stop = asyncio.Event()
        stop.set()
        await asyncio.wait_for(lane.put_all([fetched(13)], stop), 1.0)  # a rebalance: the fetch must not wait
        return held, put.done(), len(lane)

    assert asyncio.run(run()) == (True, True, 3)


def test_a_revoked_partition_s_records_leave_the_lane() -> None:
    async def run() -> list[tuple[int, int]]:
        lane = Lane(TOPIC, limit=100)
        for partition, offset in [(0, 10), (1, 4), (0, 11), (2, 9)]:
            await lane.put_all([fetched(offset, partition)])
        assert lane.drop([(TOPIC, 1), (TOPIC, 2)]) == 2
        return [(m.partition, m.offset) for m in lane.take(10)]

    assert asyncio.run(run()) == [(0, 10), (0, 11)]


def test_acknowledged_once_each_and_never_below_the_committed_offset() -> None:
    consumer = Consumer(committed=11)
    records = [fetched(offset) for offset in (10, 11, 12)]
    records[2].incref()  # held: acknowledged when let go
    acknowledge(consumer, records)  # their batch finished
    assert (consumer.acked, consumer._n_acked) == ([11], 1), "10 is below the committed offset; 12 is held"
    acknowledge(consumer, records[:2])  # acknowledged already: nothing more
    assert consumer._n_acked == 1
    acknowledge(consumer, records[2:])  # let go
    assert consumer.acked == [11, 12] and [r.acked for r in records] == [True, True, True]
