"""What faust may commit of a guarded topic (fraudstream.stream.delivery, faust_patches), on a real faust consumer (not started)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from fraudstream.stream import delivery, faust_patches
from fraudstream.stream.faust_patches import keep_stream_offsets_contiguous

TOPIC = "test-delivery.fraud.authorizations-by-merchant"


@pytest.fixture()
def consumer() -> FaustConsumer:
    keep_stream_offsets_contiguous([TOPIC])
    app = faust.App("test-delivery", broker="kafka://127.0.0.1:9")  # never connected
    consumer = app.consumer
    assert isinstance(consumer, FaustConsumer)  # the concrete one, whose bookkeeping the patches change
    return consumer


def acknowledged(consumer: FaustConsumer, tp: TP, offsets: list[int]) -> None:
    consumer._acked[tp] = list(offsets)
    consumer._acked_index[tp] = set(offsets)


def test_nothing_is_committed_between_a_revocation_and_the_next_seek(consumer: FaustConsumer) -> None:
    # Revoked: faust forgot the committed offset; events fetched before were acknowledged after, while an earlier
    # one (953) was still held for event-time order. Committing their run (964) skipped 953 for the next owner.
    tp = TP(TOPIC, 0)
    acknowledged(consumer, tp, list(range(957, 964)))
    assert consumer._new_offset(tp) is None


def test_a_run_from_the_committed_offset_is_committed_up_to_its_first_hole(consumer: FaustConsumer) -> None:
    tp = TP(TOPIC, 1)
    consumer._committed_offset[tp] = 950
    acknowledged(consumer, tp, [950, 951, 952, *range(954, 964)])
    assert consumer._new_offset(tp) == 953


def test_nothing_is_committed_while_the_committed_offset_itself_is_not_acknowledged(
        consumer: FaustConsumer) -> None:
    tp = TP(TOPIC, 2)
    consumer._committed_offset[tp] = 950
    acknowledged(consumer, tp, list(range(951, 964)))  # faust's own rule would commit 964 here
    assert consumer._new_offset(tp) is None


def test_other_topics_keep_faust_rules(consumer: FaustConsumer) -> None:
    tp = TP("test-delivery-cards-changelog", 0)  # compacted: offsets legitimately jump
    acknowledged(consumer, tp, list(range(957, 964)))
    assert consumer._new_offset(tp) == 964


def test_records_fetched_before_a_seek_and_again_after_it_reach_the_agent_once(
        consumer: FaustConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A restart: records of partition 0 fetched before the seek to its committed offset (458) are left out, and it is
    # sought there again; records fetched from 458 just before that seek were still on their way through faust's
    # getmany, so they are handed on after it, and the same offsets come again, fetched from the seek. faust hands on
    # a record at its last read offset again (offset >= read offset): 473 reached the score stage twice, which answers
    # a copy again, and both scores were committed under exactly once (tests/reliability/test_exactly_once.py).
    tp, seeks = TP(TOPIC, 0), []
    fetched: list[dict[TP, list[ConsumerRecord]]] = []

    async def wait_next_records(timeout: float) -> tuple[dict[TP, list[ConsumerRecord]], None]:
        return fetched.pop(0), None

    async def seek_to_committed() -> dict[TP, int]:
        return {tp: 458}

    async def seek(partition: TP, offset: int) -> None:
        seeks.append(offset)

    monkeypatch.setattr(consumer, "_wait_next_records", wait_next_records)
    monkeypatch.setattr(consumer, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(consumer, "_seek", seek)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    monkeypatch.setattr(consumer, "highwater", lambda tp: 474)
    for shared in (delivery._NEXT, delivery._ASKED):  # set by the seek to the committed offset: undone after the test
        monkeypatch.setitem(shared, (TOPIC, 0), None)

    def records(first: int, end: int) -> dict[TP, list[ConsumerRecord]]:
        return {tp: [ConsumerRecord(TOPIC, 0, o, 0, 0, b"c1", b"{}", None, 2, 2, ()) for o in range(first, end)]}

    async def handed_on() -> list[int]:
        """What faust's `_drain_messages` hands its agents of one fetch: each offset at or past its read offset."""
        got = []
        async for tp_, message in consumer.getmany(timeout=0.0):
            read = consumer._read_offset.get(tp_)
            if read is None or message.offset >= read:
                got.append(message.offset)
                consumer._read_offset[tp_] = message.offset
        return got

    async def restart() -> list[list[int]]:
        fetched.extend([records(458, 462), records(458, 474), records(458, 474)])
        before = await handed_on()  # fetched before the seek to the committed offset: left out
        await consumer.perform_seek()
        return [before, await handed_on(), await handed_on()]

    assert asyncio.run(restart()) == [[], list(range(458, 474)), []]
    assert seeks == [458]


class Fetcher:
    """What aiokafka hands faust's consumer (``_getmany``), the seeks asked of it, and the partitions' high-water marks."""

    def __init__(self, consumer: FaustConsumer, monkeypatch: pytest.MonkeyPatch, committed: dict[TP, int],
                 highwater: int) -> None:
        self.fetches: list[dict[TP, list[ConsumerRecord]]] = []
        self.seeks: list[tuple[TP, int]] = []
        self.consumer = consumer

        async def getmany(active_partitions: set[TP], timeout: float) -> dict[TP, list[ConsumerRecord]]:
            return self.fetches.pop(0) if self.fetches else {}

        async def seek_to_committed() -> dict[TP, int]:
            return dict(committed)

        async def seek(partition: TP, offset: int) -> None:
            self.seeks.append((partition, offset))

        monkeypatch.setattr(consumer, "_getmany", getmany)
        monkeypatch.setattr(consumer, "seek_to_committed", seek_to_committed)
        monkeypatch.setattr(consumer, "_seek", seek)
        monkeypatch.setattr(consumer, "assignment", lambda: set(committed))
        monkeypatch.setattr(consumer, "highwater", lambda tp: highwater)
        for tp in committed:  # set by the seek to the committed offsets: undone after the test
            for shared in (delivery._NEXT, delivery._ASKED):
                monkeypatch.setitem(shared, (tp.topic, tp.partition), None)
        consumer._set_active_tps(set(committed))  # as faust's on_partitions_assigned does
        consumer.resume_flow()

    @staticmethod
    def records(tp: TP, first: int, end: int) -> list[ConsumerRecord]:
        return [ConsumerRecord(tp.topic, tp.partition, o, 0, 0, b"c1", b"{}", None, 2, 2, ()) for o in range(first, end)]

    async def handed_on(self) -> list[tuple[int, int]]:
        """(partition, offset) of what faust's getmany hands its streams from one fetch."""
        return [(tp.partition, message.offset) async for tp, message in self.consumer.getmany(timeout=0.0)]


def test_records_of_a_paused_partition_that_a_fetch_hands_on_are_read_again(
        consumer: FaustConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    # faust's recovery pauses the changelogs it has read before it resumes the streams: a fetch still waiting then
    # asked aiokafka for the records of an empty set of partitions, which it takes for all of them, and handed on
    # partition 0's 500..525 too, though paused. faust dropped them, the consumer's position past them: 26
    # authorizations never scored, and every other partition held for them (tests/reliability/test_rebalance.py).
    tp0, tp1 = TP(TOPIC, 0), TP(TOPIC, 1)
    fetcher = Fetcher(consumer, monkeypatch, {tp0: 500, tp1: 100}, highwater=526)

    async def rebalance_ends() -> list[list[tuple[int, int]]]:
        await consumer.perform_seek()
        consumer.pause_partitions({tp0})
        fetcher.fetches.append({tp0: fetcher.records(tp0, 500, 526), tp1: fetcher.records(tp1, 100, 102)})
        paused = await fetcher.handed_on()
        consumer.resume_partitions({tp0})
        fetcher.fetches.append({tp0: fetcher.records(tp0, 500, 503)})
        return [paused, await fetcher.handed_on()]

    paused, resumed = asyncio.run(rebalance_ends())
    assert paused == [(1, 100), (1, 101)]
    assert fetcher.seeks == [(tp0, 500)]  # read again from its first record not handed on
    assert resumed == [(0, 500), (0, 501), (0, 502)]


def test_a_partition_whose_records_were_handed_on_while_it_was_sought_is_sought_again(
        consumer: FaustConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    # After a rebalance: reading started from the committed offset 287 (the seek while flow was off), and records
    # 287..293 were fetched. They were handed on while the seek at the end of recovery ran, moving the consumer's
    # position past it; its agent then expected 287 again and nothing read it: partition 1 stalled at 294.
    tp = TP(TOPIC, 1)
    fetcher = Fetcher(consumer, monkeypatch, {tp: 287}, highwater=728)
    seek_to_committed = consumer.seek_to_committed

    async def while_seeking() -> Mapping[TP, int]:
        fetcher.fetches.append({tp: fetcher.records(tp, 287, 294)})
        assert await fetcher.handed_on() == [(1, o) for o in range(287, 294)]
        return await seek_to_committed()

    async def recovery_ends() -> None:
        await consumer.perform_seek()  # the first: nothing fetched yet
        monkeypatch.setattr(consumer, "seek_to_committed", while_seeking)
        await consumer.perform_seek()

    asyncio.run(recovery_ends())
    assert fetcher.seeks == [(tp, 287)] and delivery._NEXT[(TOPIC, 1)] == 287


def test_an_offset_on_the_broker_that_never_comes_is_read_again(
        consumer: FaustConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    # However a fetch of it was lost: partition 0's agent waits for 500, the broker has up to 525, and no fetch brings
    # it. Nothing later would say so (no later offset comes either); after HEAD_WAIT_S it is read again. Partition
    # 1 (paused: its records are not wanted now) and a partition read to its end are left as they are.
    monkeypatch.setattr(faust_patches, "HEAD_WAIT_S", 0.0)
    tp0, tp1, tp2 = TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2)
    fetcher = Fetcher(consumer, monkeypatch, {tp0: 500, tp1: 100, tp2: 526}, highwater=526)

    async def fetches_bring_nothing() -> list[tuple[TP, int]]:
        await consumer.perform_seek()
        consumer.pause_partitions({tp1})
        for _ in range(2):  # the first notes since when 500 waits, the second finds it waited too long
            await fetcher.handed_on()
            await asyncio.sleep(0.01)
        return fetcher.seeks

    assert asyncio.run(fetches_bring_nothing()) == [(tp0, 500)]


def message(partition: int, offset: int, generation: int | None) -> faust.types.Message:
    return faust.types.Message(TOPIC, partition, offset, 0.0, 0, None, None, b"{}", None, generation_id=generation)


class Event:
    """The part of a faust event that `batches` reads."""

    def __init__(self, message: faust.types.Message) -> None:
        self.message = message


def event(partition: int, offset: int, generation: int | None) -> Event:
    return Event(message(partition, offset, generation))


def test_messages_fetched_before_their_partition_was_revoked_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # Generation 3's assignment of partition 0 was revoked; partition 1 was last revoked in generation 1.
    monkeypatch.setattr(delivery, "_REVOKED", {(TOPIC, 0): 3, (TOPIC, 1): 1})
    stale = [message(0, 957, 3), message(0, 958, 2), message(1, 40, 1)]
    kept = [message(0, 900, 4), message(1, 41, 3), message(2, 7, 0), message(0, 901, None)]
    assert delivery.fresh([*stale, *kept]) == kept
    # faust acknowledges every event of a batch at its end: the stale ones must not count (nor be committed)
    assert all(m.acked for m in stale) and not any(m.acked for m in kept)


class Consumer:
    """Where `batches` asks for a partition to be read again: faust's consumer's ``seek``."""

    def __init__(self) -> None:
        self.seeks: list[tuple[TP, int]] = []

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


class Stream:
    """The part of a faust stream that `batches` reads: ``take_events`` yields the batches given, and the app's consumer."""

    def __init__(self, *batches: list[Event]) -> None:
        self.given = batches
        self.app = type("App", (), {"consumer": Consumer()})()

    async def take_events(self, max_: int, within: float) -> AsyncIterator[list[Event]]:
        for batch in self.given:
            yield batch


def offsets(partition: int, *numbers: int) -> list[Event]:
    return [event(partition, n, None) for n in numbers]


async def handed(stream: Stream) -> list[list[int]]:
    return [[e.message.offset for e in batch] async for batch in delivery.batches(stream, 100, 0.1)]


@pytest.fixture()
def reading_from_748(monkeypatch: pytest.MonkeyPatch) -> None:
    # Partition 0 was just sought to its committed offset, 748 (the consumer's patched perform_seek sets this).
    monkeypatch.setattr(delivery, "_NEXT", {(TOPIC, 0): 748})
    monkeypatch.setattr(delivery, "_ASKED", {})
    monkeypatch.setattr(delivery, "_GONE", {})


@pytest.mark.usefixtures("reading_from_748")
def test_an_offset_dropped_on_the_way_to_the_agent_holds_back_its_partition_until_read_again() -> None:
    # faust's stream skipped 748 (flow control off at a rebalance) and handed on 749 and 750. Had the intake taken
    # them, 748, read again later, came after a later authorization of its card and was skipped as a redelivery:
    # committed, never sent on (tests/reliability/test_crash.py). Now the agent gets 748 first, and 749 again.
    late, other = offsets(0, 749, 750), offsets(1, 30, 31)
    stream = Stream([*late, *other], offsets(0, 751), offsets(0, 748, 749, 750, 751))
    assert asyncio.run(handed(stream)) == [[30, 31], [748, 749, 750, 751]]
    assert stream.app.consumer.seeks == [(TP(TOPIC, 0), 748)]  # once: 751 was fetched before the seek took effect
    # faust acknowledges every event of a batch at its end: those left out must not count, so are not committed
    assert all(e.message.acked for e in late)


@pytest.mark.usefixtures("reading_from_748")
def test_offsets_read_again_reach_the_agent_the_stages_recognise_them() -> None:
    stream = Stream(offsets(0, 748, 749, 750), offsets(0, 749, 750, 751))  # a seek back after 750
    assert asyncio.run(handed(stream)) == [[748, 749, 750], [749, 750, 751]]
    assert stream.app.consumer.seeks == []


@pytest.mark.usefixtures("reading_from_748")
def test_a_batch_the_agent_did_not_finish_is_waited_for_again() -> None:
    async def agent(stream: Stream) -> list[list[int]]:
        got = []
        async for batch in delivery.batches(stream, 100, 0.1):
            got.append([e.message.offset for e in batch])
            if len(got) == 2:
                raise RuntimeError("the agent crashed")  # its batch is neither committed nor taken as done
        return got

    unfinished = offsets(0, 750, 751)
    stream = Stream(offsets(0, 748, 749), unfinished)
    with pytest.raises(RuntimeError):
        asyncio.run(agent(stream))
    assert all(e.message.acked for e in unfinished)
    assert delivery._NEXT[(TOPIC, 0)] == 750
    stream = Stream(offsets(0, 752))  # the restarted agent: 750 comes first
    assert asyncio.run(handed(stream)) == [] and stream.app.consumer.seeks == [(TP(TOPIC, 0), 750)]


@pytest.mark.usefixtures("reading_from_748")
def test_offsets_gone_from_the_broker_are_not_waited_for() -> None:
    delivery._GONE[(TOPIC, 0)] = (748, 900)  # retention: the consumer's getmany stepped over them
    assert asyncio.run(handed(Stream(offsets(0, 900, 901)))) == [[900, 901]]


class Pacing:
    """Tells `batches` to pause 0.2 s after every batch, and remembers what it was told."""

    def __init__(self) -> None:
        self.told: list[tuple[int, float | None]] = []

    def pause_after(self, size: int, taken_at: float, now: float, produced_over_s: float | None = None) -> float:
        self.told.append((size, produced_over_s))
        return 0.2


@pytest.mark.usefixtures("reading_from_748")
def test_the_agent_pauses_after_each_batch_it_finished_as_its_pacing_says(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(delivery.asyncio, "sleep", sleep)
    pacing = Pacing()

    async def agent(stream: Stream) -> list[list[int]]:
        got = []
        async for batch in delivery.batches(stream, 100, 0.1, pacing):  # type: ignore[arg-type]
            got.append([e.message.offset for e in batch])
            if len(got) == 2:
                raise RuntimeError("the agent crashed")  # no pause after a batch it did not finish
        return got

    first = offsets(0, 748, 749, 750)
    for e, produced_at in zip(first, (100.0, 100.25, 100.5), strict=True):
        e.message.timestamp = produced_at
    with pytest.raises(RuntimeError):
        asyncio.run(agent(Stream(first, offsets(0, 751))))
    # told the batch's size and how long its authorizations took to be produced: 3 at 4/s, 0.75 s
    assert pacing.told == [(3, 0.75)] and slept == [0.2]
