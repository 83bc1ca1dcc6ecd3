"""Authorizations handed from the consumer's fetch straight to their stage, a batch at a time.

faust hands each message to an agent one at a time: a ``Message`` and an ``Event`` per record, a lock, a flow
control check and a task switch in its conductor, a channel queue, the stream's iteration and the
``take_events`` buffer, then an acknowledgement per event. On this machine that cost ≈ 100 µs of CPU per message,
three times per authorization (intake, merchant, score): more than half of a worker's core (docs/capacity.md,
"Where a worker's CPU goes").

A :class:`Lane` skips all of that for one topic. The consumer's fetch (patched in
``fraudstream.stream.faust_patches``) appends each record of the topic, checked there for holes and copies as
before, to the lane, and the stage's loop takes whole batches from it (:func:`lane_batches`), with the same
guarantees as :func:`fraudstream.stream.delivery.batches`: nothing committed before its batch is finished, stale and
out-of-order records left out and read again. faust still decides which partitions this worker reads, and commits
the offsets acknowledged here.

>>> import asyncio
>>> class Message:
...     def __init__(self, offset):
...         self.topic, self.partition, self.offset, self.generation_id, self.acked = "t", 0, offset, None, False
>>> async def demo():
...     lane = Lane("t", limit=10)
...     for offset in range(3):
...         await lane.put(Message(offset))
...     await lane.wait(max_=2, within=0.01)
...     return [m.offset for m in lane.take(2)], len(lane)
>>> asyncio.run(demo())
([0, 1], 1)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from typing import Any

from fraudstream.stream.delivery import _checked, _processing, _produced_over
from fraudstream.stream.pacing import BatchPacing

__all__ = ["LANES", "Lane", "acknowledge", "lane_batches"]

#: The lanes of this process, by topic: the consumer's fetch puts each record of these topics in its lane.
LANES: dict[str, Lane] = {}


class Lane:
    """The fetched, not yet processed records of one topic, in fetch order (each partition's in offset order)."""

    __slots__ = ("topic", "limit", "_messages", "_ready", "_space")

    def __init__(self, topic: str, limit: int) -> None:
        self.topic = topic
        #: The fetch waits while this many records wait here (faust's stream buffer did the same).
        self.limit = limit
        self._messages: deque[Any] = deque()
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def __len__(self) -> int:
        return len(self._messages)

    async def put(self, message: Any, stop: asyncio.Event | None = None) -> None:
        """Append ``message``; while the lane is full, first wait for room (or for ``stop``: a rebalance, in which
        the stage may wait for nothing the fetch will bring)."""
        while len(self._messages) >= self.limit and not (stop is not None and stop.is_set()):
            self._space.clear()
            try:
                await asyncio.wait_for(self._space.wait(), 0.1)
            except TimeoutError:
                pass
        self._messages.append(message)
        self._ready.set()

    async def wait(self, max_: int, within: float) -> None:
        """Until a record is here, then until ``max_`` are or ``within`` seconds have passed."""
        while not self._messages:
            self._ready.clear()
            await self._ready.wait()
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

    def take(self, max_: int) -> list[Any]:
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


async def lane_batches(lane: Lane, consumer: Any, max_: int, within: float,
                       pacing: BatchPacing | None = None) -> AsyncGenerator[list[Any], None]:
    """Batches of ``lane``'s messages, as :func:`fraudstream.stream.delivery.batches` gives a stream's events: a
    batch the caller finishes is acknowledged (its offsets may be committed), one it does not is read again; stale
    and out-of-order messages are left out. ``consumer``: faust's consumer, called for it (``app.consumer``)."""
    while True:
        await lane.wait(max_, within)
        taken_at = time.monotonic()
        messages = lane.take(max_)
        kept = await _checked(consumer(), messages)
        if kept:
            with _processing(lane.topic, kept, release=False):
                yield kept
            # The batch is finished: the reference taken when each was fetched goes, and with it (unless the stage
            # holds it: `delivery.hold`) faust may commit its offset.
            acknowledge(consumer(), kept)
        if pacing is not None:
            pause = pacing.pause_after(len(messages), taken_at, time.monotonic(), _produced_over(messages))
            if pause > 0:
                await asyncio.sleep(pause)


def acknowledge(consumer: Any, messages: Iterable[Any]) -> None:
    """Each of ``messages`` processed: once no one holds it any longer, faust may commit its offset."""
    for message in messages:
        message.ack(consumer)
