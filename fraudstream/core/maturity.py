"""Scored authorizations waiting for their maturity.

An authorization that has no fraud label a maturity period (61 days by default) after its ``ts`` is taken as
legitimate and becomes a training example. Until then its snapshot waits, and the scorer needs them back in
event-time order. At 1,000 authorizations a second that is five billion of them: the queue that orders them must
be able to live on disk, so the scorer sees it through this small interface. :class:`MemoryMaturityQueue` keeps it
in memory, for the backtest; the worker's lives in a RocksDB table (``fraudstream.stream.maturity``).

>>> queue = MemoryMaturityQueue()
>>> queue.add(2_000, "t2"); queue.add(1_000, "t1"); queue.add(3_000, "t3")
>>> queue.oldest(), len(queue)
(1000, 3)
>>> queue.pop_due(2_000)
['t1', 't2']
>>> len(queue)
1
"""

from __future__ import annotations

import heapq
from typing import Protocol

__all__ = ["MaturityQueue", "MemoryMaturityQueue"]


class MaturityQueue(Protocol):
    """``(ts, tx_id)`` entries, taken out in ``ts`` order once due."""

    def add(self, ts: int, tx_id: str) -> None: ...

    def pop_due(self, cutoff: int) -> list[str]:
        """Remove and return the ``tx_id`` of every entry with ``ts <= cutoff``, oldest first."""
        ...

    def oldest(self) -> int | None:
        """The ``ts`` of the oldest entry, None when empty."""
        ...

    def clear(self) -> None:
        """Forget what is held in memory (the partitions may have moved); a durable queue keeps its entries."""
        ...

    def __len__(self) -> int: ...


class MemoryMaturityQueue:
    """A heap of ``(ts, tx_id)``: an authorization scored late still comes out in its place."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []

    def add(self, ts: int, tx_id: str) -> None:
        heapq.heappush(self._heap, (ts, tx_id))

    def pop_due(self, cutoff: int) -> list[str]:
        heap, out = self._heap, []
        while heap and heap[0][0] <= cutoff:
            out.append(heapq.heappop(heap)[1])
        return out

    def oldest(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        self._heap.clear()

    def __len__(self) -> int:
        return len(self._heap)
