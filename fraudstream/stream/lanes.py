"""Authorizations handed from the consumer's fetch straight to their stage, a batch at a time.

faust hands each message to an agent one at a time: a ``Message`` and an ``Event`` per record, a lock, a flow
control check and a task switch in its conductor, a channel queue, the stream's iteration and the
``take_events`` buffer, then an acknowledgement per event. On this machine that cost ≈ 100 µs of CPU per message,
three times per authorization (intake, merchant, score): more than half of a worker's core (docs/capacity.md,
"Where a worker's CPU goes").

A :class:`Lane` skips all of that for one topic. The consumer's fetch (patched in
``fraudstream.stream.faust_patches``) takes the topic's records out of each fetch before faust sees them, checks
them there for holes and copies as before, and appends them, as :class:`LaneRecord` objects, to the lane: no faust
``Message`` is made of them. The stage's loop takes whole batches from the lane (:func:`lane_batches`), with the same
guarantees as :func:`fraudstream.stream.delivery.batches`: nothing committed before its batch is finished, stale and
out-of-order records left out and read again. faust still decides which partitions this worker reads, and commits
the offsets acknowledged here, a batch at a time (:func:`acknowledge`).

>>> import asyncio
>>> async def demo():
...     lane = Lane("t", limit=10)
...     await lane.put_all([LaneRecord("t", 0, offset, None, None, b"{}", 1.7e9, ("t", 0), 1) for offset in range(3)])
...     await lane.wait(max_=2, within=0.01)
...     return [r.offset for r in lane.take(2)], len(lane)
>>> asyncio.run(demo())
([0, 1], 1)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from typing import Any

from fraudstream.stream.delivery import checked, processing, produced_over
from fraudstream.stream.faust_patches import acknowledge_offsets
from fraudstream.stream.pacing import BatchPacing

__all__ = ["LANES", "Lane", "LaneRecord", "acknowledge", "lane_batches"]

#: The lanes of this process, by topic: the consumer's fetch puts each record of these topics in its lane.
LANES: dict[str, Lane] = {}


class LaneRecord:
    """A fetched record, as the stages read it (what they use of faust's ``Message``), and how its delivery stands.

    ``refcount``: who still holds it. The fetch takes one reference (released when the stage has finished the batch
    that holds it), :func:`fraudstream.stream.delivery.hold` another; the record is acknowledged when none is left.
    ``acked``: acknowledged, or left out (stale, past a hole, in a batch cut short) and so never to be.
    ``timestamp``: seconds, as faust's messages have it. ``generation_id``: the consumer generation it was fetched in.
    """

    __slots__ = ("topic", "partition", "offset", "key", "headers", "value", "timestamp", "tp", "generation_id",
                 "refcount", "acked")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, headers: Any, value: bytes | None,
                 timestamp: float | None, tp: Any, generation_id: int | None) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.headers = headers
        self.value = value
        self.timestamp = timestamp
        self.tp = tp
        self.generation_id = generation_id
        self.refcount = 1  # the fetch's
        self.acked = False

    def incref(self) -> None:
        self.refcount += 1

    def decref(self) -> int:
        self.refcount = max(self.refcount - 1, 0)
        return self.refcount

    def __repr__(self) -> str:
        return f"<LaneRecord {self.topic}[{self.partition}]@{self.offset}>"


class Lane:
    """The fetched, not yet processed records of one topic, in fetch order (each partition's in offset order)."""

    __slots__ = ("topic", "limit", "_messages", "_ready", "_space")

    def __init__(self, topic: str, limit: int) -> None:
        self.topic = topic
        #: The fetch waits while this many records wait here (faust's stream buffer did the same).
        self.limit = limit
        self._messages: deque[LaneRecord] = deque()
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def __len__(self) -> int:
        return len(self._messages)

    async def put_all(self, records: list[LaneRecord], stop: asyncio.Event | None = None) -> None:
        """Append ``records``; while the lane is full, first wait for room (or for ``stop``: a rebalance, in which
        the stage may wait for nothing the fetch will bring)."""
        while len(self._messages) >= self.limit and not (stop is not None and stop.is_set()):
            self._space.clear()
            try:
                await asyncio.wait_for(self._space.wait(), 0.1)
            except TimeoutError:
                pass
        self._messages.extend(records)
        self._ready.set()

    async def wait(self, max_: int, within: float, patience: float | None = None) -> None:
        """Until a record is here (or ``patience`` seconds have passed without one), then until ``max_`` are or
        ``within`` seconds have passed."""
        while not self._messages:
            self._ready.clear()
            if patience is None:
                await self._ready.wait()
                continue
            try:
                await asyncio.wait_for(self._ready.wait(), patience)
            except TimeoutError:
                return
        if len(self._messages) >= max_ or within <= 0:
            return
        deadline = time.monotonic() + within
        while len(self._messages) < max_:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), left)
            except TimeoutError:
                return

    def take(self, max_: int) -> list[LaneRecord]:
        """Up to ``max_`` records, the oldest first."""
        messages = self._messages
        n = min(max_, len(messages))
        taken = [messages.popleft() for _ in range(n)]
        if len(messages) < self.limit:
            self._space.set()
        return taken

    def drop(self, partitions: Iterable[tuple[str, int]]) -> int:
        """Forget the records of ``partitions`` (revoked: their next owner reads them from the committed offset)."""
        gone = set(partitions)
        before = len(self._messages)
        self._messages = deque(m for m in self._messages if (m.topic, m.partition) not in gone)
        self._space.set()
        return before - len(self._messages)


async def lane_batches(lane: Lane, consumer: Any, max_: int, within: float, pacing: BatchPacing | None = None,
                       patience: float | None = None) -> AsyncGenerator[list[LaneRecord], None]:
    """Batches of ``lane``'s messages, as :func:`fraudstream.stream.delivery.batches` gives a stream's events: a
    batch the caller finishes is acknowledged (its offsets may be committed), one it does not is read again; stale
    and out-of-order messages are left out. ``consumer``: faust's consumer, called for it (``app.consumer``).
    ``patience``: with no record for that long, an empty batch (for a stage that also waits on something else)."""
    while True:
        await lane.wait(max_, within, patience)
        if not len(lane):
            yield []
            continue
        taken_at = time.monotonic()
        messages = lane.take(max_)
        kept = await checked(consumer(), messages)
        if kept:
            with processing(lane.topic, kept, release=False):
                yield kept
            # The batch is finished: the reference taken when each was fetched goes, and with it (unless the stage
            # holds it: `delivery.hold`) faust may commit its offset.
            acknowledge(consumer(), kept)
        if pacing is not None:
            pause = pacing.pause_after(len(messages), taken_at, time.monotonic(), produced_over(messages))
            if pause > 0:
                await asyncio.sleep(pause)


def acknowledge(consumer: Any, records: Iterable[LaneRecord]) -> None:
    """Each of ``records`` processed: its reference goes, and those no one holds any longer are acknowledged to
    faust's ``consumer`` (their offsets may be committed), all in one step."""
    done: dict[Any, list[int]] = {}
    for record in records:
        if record.acked:
            continue
        record.refcount -= 1
        if record.refcount <= 0:
            record.refcount = 0
            record.acked = True
            offsets = done.get(record.tp)
            if offsets is None:
                offsets = done[record.tp] = []
            offsets.append(record.offset)
    if done:
        acknowledge_offsets(consumer, done)
