"""Scored authorizations on their way to maturity.

An authorization with no label the feedback delay (2 days by default) after its ``ts`` is learned as legitimate for
now; one with no fraud label at maturity (61 days) is legitimate for good, and its snapshot goes. The scorer needs
them back in event-time order at both points. At 1,000 authorizations a second that is five billion of them: the
queue that orders them must be able to live on disk, so the scorer sees it through this small interface.
:class:`MemoryMaturityQueue` keeps it in memory, for the backtest; the worker's is derived from its snapshot
table, in a local RocksDB database per partition (``fraudstream.stream.maturity``).

Each authorization is one entry, by its ``ts``, from scoring to maturity, read at two points of event time:

- **learning** has gone as far as ``learned_until`` (``now`` minus the feedback delay, and never back): every entry
  up to it was handed out once for learning, so whether an authorization was learned as legitimate for now is
  derived (:meth:`MaturityQueue.learned`), not written in its snapshot again. An authorization scored behind that
  point (late) is handed out at the next :meth:`~MaturityQueue.pop_due`;
- **maturity** (``now`` minus the maturity period): entries are removed, the only write after the first.

>>> queue = MemoryMaturityQueue(feedback_ms=100, maturity_ms=2_000)
>>> queue.add(2_000, "t2"); queue.add(1_000, "t1"); queue.add(3_000, "t3")
>>> queue.oldest(), len(queue)  # the first due time: t1's feedback delay
(1100, 3)
>>> queue.pop_due(2_100)
Due(learn=['t1', 't2'], matured=[], legacy=())
>>> queue.learned(2_000, "t2"), queue.learned(3_000, "t3")
(True, False)
>>> queue.add(1_500, "late")  # scored behind the learning point: handed out next time, in its place
>>> queue.learned(1_500, "late"), queue.pop_due(3_000)
(False, Due(learn=['late'], matured=['t1'], legacy=()))
>>> queue.learned(1_500, "late"), len(queue)
(True, 3)
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from fraudstream.config import Settings
from fraudstream.core.features.card import DAY_MS

__all__ = ["Due", "MaturityQueue", "MemoryMaturityQueue", "NOTHING_LEARNED", "maturity_delays"]

#: ``learned_until`` before anything is learned: every ``ts`` is after it.
NOTHING_LEARNED = -1


def maturity_delays(settings: Settings) -> tuple[int, int]:
    """The feedback delay and the maturity period, in ms: the feedback delay is at most the maturity period.

    >>> maturity_delays(Settings.load(env={}).with_overrides(feedback_delay_days=2.0, maturity_days=61.0))
    (172800000, 5270400000)
    """
    maturity_ms = int(settings.maturity_days * DAY_MS)
    return min(int(settings.feedback_delay_days * DAY_MS), maturity_ms), maturity_ms


class Due(NamedTuple):
    """What :meth:`MaturityQueue.pop_due` hands out, each list oldest first (``ts``, then ``tx_id``)."""

    #: Past the feedback delay, each once: learned as legitimate for now, if unlabelled.
    learn: list[str]
    #: Past maturity, removed from the queue: their snapshots go.
    matured: list[str]
    #: Entries an earlier release queued by their due time (a rolling upgrade; ``fraudstream.stream.maturity``).
    legacy: Sequence[str] = ()


class MaturityQueue(Protocol):
    """One entry per scored authorization, by ``ts``, handed out at its feedback delay and removed at maturity."""

    def add(self, ts: int, tx_id: str) -> None: ...

    def pop_due(self, now: int) -> Due:
        """Every entry whose feedback delay has passed by ``now`` (or that was scored behind where learning stands)
        and was not yet handed out, and every one matured by ``now``, removed."""
        ...

    def learned(self, ts: int, tx_id: str) -> bool:
        """Whether the authorization has been handed out for learning (an entry still held, or none)."""
        ...

    def oldest(self) -> int | None:
        """The first event time at which something is due, None when empty."""
        ...

    def clear(self) -> None:
        """Forget what is held in memory (the partitions may have moved); a durable queue keeps its entries."""
        ...

    def __len__(self) -> int: ...


class MemoryMaturityQueue:
    """Two heaps of ``(ts, tx_id)``: waiting for their feedback delay, then for maturity. An authorization scored late
    still comes out in its place."""

    def __init__(self, feedback_ms: int, maturity_ms: int, learned_until: int = NOTHING_LEARNED) -> None:
        self.feedback_ms = feedback_ms
        self.maturity_ms = maturity_ms
        #: Every entry with a ``ts`` up to here has been handed out for learning, but those in ``_late``.
        self.learned_until = learned_until
        self._waiting: list[tuple[int, str]] = []
        self._learned: list[tuple[int, str]] = []
        self._late: set[str] = set()  # added at or before learned_until: handed out at the next pop_due

    def add(self, ts: int, tx_id: str) -> None:
        heapq.heappush(self._waiting, (ts, tx_id))
        if ts <= self.learned_until:
            self._late.add(tx_id)

    def restore(self, ts: int, tx_id: str) -> None:
        """An entry read back from storage, where ``learned_until`` tells whether it was handed out."""
        heapq.heappush(self._learned if ts <= self.learned_until else self._waiting, (ts, tx_id))

    def pop_due(self, now: int) -> Due:
        self.learned_until = until = max(self.learned_until, now - self.feedback_ms)
        waiting, learned, learn = self._waiting, self._learned, []
        while waiting and waiting[0][0] <= until:
            entry = heapq.heappop(waiting)
            heapq.heappush(learned, entry)
            learn.append(entry[1])
        self._late.clear()
        cutoff, matured = now - self.maturity_ms, []
        while learned and learned[0][0] <= cutoff:  # cutoff <= until: every matured entry was handed out above
            matured.append(heapq.heappop(learned)[1])
        return Due(learn, matured)

    def learned(self, ts: int, tx_id: str) -> bool:
        return ts <= self.learned_until and tx_id not in self._late

    def oldest(self) -> int | None:
        due = [self._waiting[0][0] + self.feedback_ms] if self._waiting else []
        if self._learned:
            due.append(self._learned[0][0] + self.maturity_ms)
        return min(due) if due else None

    def clear(self) -> None:
        self._waiting.clear()
        self._learned.clear()
        self._late.clear()

    def __len__(self) -> int:
        return len(self._waiting) + len(self._learned)
