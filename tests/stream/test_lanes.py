"""Lanes without a broker: records handed from the fetch to their stage in batches, acknowledged (so committable)
only once the stage finished their batch, stale and out-of-order ones left out, a full lane holding the fetch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types.tuples import ConsumerMessage

from fraudstream.stream import delivery
from fraudstream.stream.lanes import Lane, acknowledge, lane_batches

TOPIC = "fraud.authorizations"


class Consumer:
    """What a lane calls on faust's consumer: ``ack`` (through each message) and ``seek`` (to read a hole again)."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.seeks: list[tuple[Any, int]] = []

    def ack(self, message: Any) -> bool:
        message.acked = True
        self.acked.append(message.offset)
        return True

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))


def fetched(offset: int, partition: int = 0, generation: int | None = 1) -> ConsumerMessage:
    """A record as the consumer's fetch hands it on: with the one reference it takes (``faust_patches``)."""
    message = ConsumerMessage(TOPIC, partition, offset, 0.0, 0, None, None, b"{}", None,
                                                 generation_id=generation)
    message.incref()
    return message


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
            await lane.put(fetched(offset))
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
        await lane.put(fetched(10))
        await lane.put(fetched(11))
        batches = lane_batches(lane, lambda: consumer, 10, 0.01)
        batch = await batches.__anext__()
        delivery.hold(batch[0])  # the merchant stage keeps it for event-time order
        await lane.put(fetched(12))
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
        await lane.put(fetched(7, partition=1, generation=3))  # fetched before the revocation
        await lane.put(fetched(12))  # 10 and 11 never came: a hole
        await lane.put(fetched(10))
        batches = lane_batches(lane, lambda: consumer, 10, 0.01)
        batch = await batches.__anext__()
        await batches.aclose()
        return [m.offset for m in batch]

    assert asyncio.run(run()) == [10]
    assert [(tp.partition, offset) for tp, offset in consumer.seeks] == [(0, 10)], "read again from the hole"


def test_a_full_lane_holds_the_fetch_until_the_stage_takes_or_a_rebalance_starts() -> None:
    async def run() -> tuple[bool, bool, int]:
        lane = Lane(TOPIC, limit=2)
        await lane.put(fetched(10))
        await lane.put(fetched(11))
        put = asyncio.ensure_future(lane.put(fetched(12)))
        await asyncio.sleep(0.05)
        held = not put.done()
        lane.take(1)
        await asyncio.wait_for(put, 1.0)
        stop = asyncio.Event()
        stop.set()
        await asyncio.wait_for(lane.put(fetched(13), stop), 1.0)  # a rebalance: the fetch must not wait
        return held, put.done(), len(lane)

    assert asyncio.run(run()) == (True, True, 3)


def test_a_revoked_partition_s_records_leave_the_lane() -> None:
    async def run() -> list[tuple[int, int]]:
        lane = Lane(TOPIC, limit=100)
        for partition, offset in [(0, 10), (1, 4), (0, 11), (2, 9)]:
            await lane.put(fetched(offset, partition))
        assert lane.drop([(TOPIC, 1), (TOPIC, 2)]) == 2
        return [(m.partition, m.offset) for m in lane.take(10)]

    assert asyncio.run(run()) == [(0, 10), (0, 11)]
