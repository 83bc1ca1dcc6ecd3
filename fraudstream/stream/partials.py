"""Every card partition's merchant events (fraud.merchant-partials), applied to this worker's replicas of them.

Each worker reads every partition of the topic, from its beginning, by assignment (no group: every worker needs
every record), and applies each record to its replicas (``MerchantPartials.apply``): what the other partitions'
merchants had as of a minute back, which its authorizations are scored with, and, for a partition assigned here,
the state it is scored with (``fraudstream.stream.stages.partials``). A record that is not one is dead-lettered with
its reason and counted, never applied in part.

It reads with aiokafka, built as faust builds its own consumers (credentials included), in the worker's event loop:
with exactly once, ``read_committed`` must leave out the records of aborted transactions, which the embedded broker
shows once they are aborted, and faust's fetcher is patched to (``faust_patches.read_committed_records``); a
record of a transaction its killed worker never committed, applied here, would count its events twice when the
restarted worker takes them again.

It reads from the beginning, so the topic is kept whole (``topics/fraud.merchant-partials.json``: ``retention.ms``
-1), and a starting worker's read grows with history; checkpoints of the replicas would bound it (not built:
docs/capacity.md, "What is left").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Container, Iterable
from typing import Any

from confluent_kafka import TopicPartition

from fraudstream.contracts import Rejection, decode_merchant_events
from fraudstream.core.features.partials import MerchantPartials
from fraudstream.kafka.offsets import fetched_ends
from fraudstream.stream.stages.base import Message

__all__ = ["PartialsFollower"]

log = logging.getLogger("fraudstream.worker")


class PartialsFollower:
    """Reads fraud.merchant-partials into ``book``'s replicas; ``dead_letter(rejection, message)`` takes bad records.

    ``consumer()``: a new aiokafka consumer of no group (made at :meth:`start`, in the running loop); ``client``: the
    confluent-kafka settings, to find where partitions end; ``scored_here``: the partitions this worker scores, whose
    replicas took their events as it scored them (their records, its own, are stepped over, not decoded again).
    """

    def __init__(self, book: MerchantPartials, topic: str, consumer: Callable[[], Any], client: dict[str, Any],
                 dead_letter: Callable[[Rejection, Any], None], scored_here: Container[int] = ()) -> None:
        self.book = book
        self.scored_here = scored_here
        self.topic = topic
        self.client = client
        self.dead_letter = dead_letter
        self._make_consumer = consumer
        self.consumer: Any = None
        self._starting: asyncio.Lock | None = None
        #: Partition -> the offset of the next record to read.
        self.read: dict[int, int] = {}

    async def start(self) -> None:
        """Every partition assigned, from its beginning (once)."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.consumer is not None:
                return
            from aiokafka.structs import TopicPartition as AioTopicPartition

            consumer = self._make_consumer()
            await consumer.start()
            partitions = [AioTopicPartition(self.topic, p) for p in range(self.book.partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            self.consumer = consumer

    async def poll(self, budget: int = 10_000) -> int:
        """Applies what has come (at most ``budget`` records, without waiting); returns the events new to the replicas."""
        if self.consumer is None:
            return 0
        n = 0
        got = await self.consumer.getmany(timeout_ms=0, max_records=budget)
        for records in got.values():
            for r in records:
                self.read[r.partition] = r.offset + 1
                if r.partition not in self.scored_here:
                    n += self.take(Message(r.topic, r.partition, r.offset, r.key, r.value))
        return n

    def take(self, message: Message) -> int:
        """One record applied to the replicas (returns the events new to them), or dead-lettered."""
        record = decode_merchant_events(message.value)
        if not isinstance(record, Rejection) and record.partition != message.partition:
            record = Rejection("invalid_value", f"a record of partition {record.partition} in partition {message.partition}")
        if isinstance(record, Rejection):
            self.dead_letter(record, message)
            return 0
        try:
            return self.book.apply(record)
        except Exception as exc:  # a bug, or a record no check foresaw: kept as evidence, never the end of the worker
            log.exception("could not apply %s[%d]@%d", message.topic, message.partition, message.offset)
            self.dead_letter(Rejection("processing_error", f"{type(exc).__name__}: {exc}"[:300]), message)
            return 0

    def ends(self, partitions: Iterable[int], timeout: float = 10.0) -> dict[int, int]:
        """Where ``partitions`` of the topic end now (one past their last record; blocking: run it in a thread). What
        the broker lists, or, where the embedded broker lists too little, where a fetch finds the end."""
        from confluent_kafka import Consumer

        c = Consumer({**self.client, "group.id": "fraudstream-partials-ends", "enable.auto.commit": False})
        try:
            reported = {}
            for p in partitions:
                _low, high = c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout, cached=False)
                reported[TopicPartition(self.topic, p)] = max(high, 0)
        finally:
            c.close()
        found = fetched_ends(self.client, {tp: hw for tp, hw in reported.items() if hw > 0}, timeout)
        return {tp.partition: max(hw, found.get(tp, 0)) for tp, hw in reported.items()}

    async def caught_up(self, ends: dict[int, int]) -> bool:
        """Whether every partition of ``ends`` was read up to its end there. By the consumer's position, not the last
        record read: a transaction's marker (exactly once) takes an offset, and so do the records of an aborted one,
        which a ``read_committed`` reader steps over."""
        from aiokafka.structs import TopicPartition as AioTopicPartition

        for p, end in ends.items():
            if self.read.get(p, 0) < end and await self.consumer.position(AioTopicPartition(self.topic, p)) < end:
                return False
        return True

    async def catch_up(self, partitions: Iterable[int], poll_every: float = 0.01) -> None:
        """Until ``partitions`` were read to where they end now: their previous owners' every event applied."""
        await self.start()
        since = time.monotonic()
        ends = await asyncio.get_running_loop().run_in_executor(None, self.ends, list(partitions))
        while True:
            await self.poll()
            if await self.caught_up(ends):
                break
            await asyncio.sleep(poll_every)
        log.info("merchant partials of partitions %s read to their ends %s in %.2fs", sorted(ends), ends,
                 time.monotonic() - since)

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
