"""Event-time order at a merchant partition.

Authorizations reach a merchant's partition from every card partition, and
how those streams interleave depends on timing and on the partition count.
Merchant features would follow that interleaving. To make them a function of
the events alone, the merchant stage holds each authorization back until
every card partition (a *source*) has moved past its ``ts``, then applies the
held ones in ``(ts, tx_id)`` order: the order of the backtest.

Each source announces its progress (the newest ``ts`` it has handed on) after
every batch, and announces when it is idle, so that a quiet partition does
not hold the others back. An authorization older than what was already
released is *out of order*: the caller handles it at once, as it arrives.

>>> order = EventTimeOrder(sources=2)
>>> order.offer(1_000, "t2", "b"), order.offer(900, "t1", "a")
(True, True)
>>> order.advance(0, 1_000); order.release()
[]
>>> order.advance(1, 1_200); order.release()
['a']
>>> order.go_idle(0); order.release()
['b']
>>> order.offer(950, "t0", "late")
False
"""

from __future__ import annotations

import heapq
from typing import Any

__all__ = ["EventTimeOrder"]

_NEVER = -(2**63)


class EventTimeOrder:
    """Holds items until every non-idle source has passed their ``ts``, then releases them in ``(ts, key)`` order.

    ``sources`` is the number of upstream partitions; each must be heard from
    (a progress mark or an idle announcement) before anything is released.
    """

    __slots__ = ("sources", "marks", "idle", "watermark", "_held", "_items")

    def __init__(self, sources: int) -> None:
        self.sources = sources
        self.marks: dict[int, int] = {}  # source -> newest ts it has handed on
        self.idle: set[int] = set()
        self.watermark = _NEVER  # everything older has been released
        self._held: list[tuple[int, str, Any]] = []
        self._items: dict[tuple[int, Any], Any] = {}

    def __len__(self) -> int:
        return len(self._held)

    def advance(self, source: int, ts: int) -> None:
        """``source`` has handed on everything up to ``ts``; it is not idle."""
        if ts > self.marks.get(source, _NEVER):
            self.marks[source] = ts
        self.idle.discard(source)

    def go_idle(self, source: int) -> None:
        """``source`` has nothing more for now: stop waiting for it until it hands on something again."""
        self.marks.setdefault(source, _NEVER)
        self.idle.add(source)

    def offer(self, ts: int, key: Any, item: Any) -> bool:
        """Hold ``item``; False if it is out of order (older than what was released), or already held."""
        if ts < self.watermark or (ts, key) in self._items:
            return False
        self._items[(ts, key)] = item
        heapq.heappush(self._held, (ts, key, item))
        return True

    def held(self, ts: int, key: Any) -> Any:
        """The item held under ``(ts, key)``, or None."""
        return self._items.get((ts, key))

    def release(self) -> list[Any]:
        """The held items every source has moved past, in ``(ts, key)`` order."""
        if len(self.marks) < self.sources:
            return []  # a source never heard from could still send anything
        active = [m for s, m in self.marks.items() if s not in self.idle]
        if active:
            bound = min(active)  # strictly older than every active source's newest: nothing older can follow
        elif self._held:
            bound = max(ts for ts, _, _ in self._held) + 1  # all idle: release everything held
        else:
            return []
        if bound > self.watermark:
            self.watermark = bound
        out = []
        held, items = self._held, self._items
        while held and held[0][0] < self.watermark:
            ts, key, item = heapq.heappop(held)
            del items[(ts, key)]
            out.append(item)
        return out
