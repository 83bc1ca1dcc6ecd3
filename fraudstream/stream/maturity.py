"""The worker's maturity queue (see ``fraudstream.core.maturity``), in a changelogged table.

Each entry is a key ``{ts:013d}:{tx_id}`` with an empty value, written to the partition of the authorization's
snapshot, so it moves with its partition and survives a restart with it. RocksDB keeps each partition's keys
sorted on disk: the due entries are the first keys of each partition's database, read with an iterator from where
the last ones were taken (past their tombstones), and memory stays flat however many authorizations wait.

The memory store keeps its keys in a dict, in no order: it gets a heap of the keys, rebuilt from the table when its
partitions change. That store holds every entry in memory anyway.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

from fraudstream.stream.tables import TableMapping

__all__ = ["TableMaturityQueue"]

#: Zero-padded to 13 digits (milliseconds until the year 2286), string order is ``ts`` order.
_TS_DIGITS = 13


def entry_key(ts: int, tx_id: str) -> str:
    return f"{max(ts, 0):0{_TS_DIGITS}d}:{tx_id}"


class TableMaturityQueue:
    """A :class:`~fraudstream.core.maturity.MaturityQueue` in ``table``, for the partitions ``owned()`` returns.

    Writes follow the table's routing (the partition of the authorization being scored); each entry taken out is
    deleted, with a tombstone on the changelog, in its own partition.
    """

    def __init__(self, table: TableMapping, owned: Callable[[], Iterable[int]],
                 home: Callable[[str], int | None] | None = None) -> None:
        self.table = table
        self.owned = owned
        # The partition of an authorization's snapshot: its entries go there, whatever batch adds them (maturity
        # adds one again when the feedback delay has passed), so they move with the snapshot's partition.
        self.home = home
        self._floors: dict[int, bytes] = {}  # RocksDB: per partition, every key before this one was taken out
        self._heap: list[str] | None = None  # memory store: the keys, built on first use after a `clear`

    def add(self, ts: int, tx_id: str) -> None:
        key = entry_key(ts, tx_id)
        home = self.home(tx_id) if self.home is not None else None
        if home is not None:
            self.table.route(key, home)
        self.table[key] = b""
        if self.table.rocksdb() is None:
            if self._heap is not None:
                heapq.heappush(self._heap, key)
            return
        # Scored late, older than entries already taken out: the partition's next read must start before it.
        partition = self.table.partition_of.get(key, self.table.partition)
        floor, k = self._floors.get(partition), key.encode()
        if floor is not None and k < floor:
            self._floors[partition] = k

    def pop_due(self, cutoff: int) -> list[str]:
        if cutoff < 0:
            return []
        bound = entry_key(cutoff + 1, "")  # every key of a ts <= cutoff sorts before it
        taken: list[str] = []
        rocks = self.table.rocksdb()
        if rocks is None:
            heap = self._memory_heap()
            while heap and heap[0] < bound:
                taken.append(heapq.heappop(heap))
        else:
            limit = bound.encode()
            for partition in self.owned():
                db = rocks._dbs.get(partition)
                if db is None:
                    continue
                last = None
                for k in db.keys(from_key=self._floors.get(partition, b"")):
                    if k >= limit:
                        break
                    taken.append(k.decode())
                    last = k
                if last is not None:
                    self._floors[partition] = last + b"\x00"  # the next key after it
            taken.sort()
        for key in taken:
            self.table.pop(key, None)  # its tombstone goes to the key's own partition
        return [key[_TS_DIGITS + 1 :] for key in taken]

    def oldest(self) -> int | None:
        rocks = self.table.rocksdb()
        if rocks is None:
            heap = self._memory_heap()
            return int(heap[0][:_TS_DIGITS]) if heap else None
        found = None
        for partition in self.owned():
            db = rocks._dbs.get(partition)
            if db is None:
                continue
            for k in db.keys(from_key=self._floors.get(partition, b"")):
                ts = int(k[:_TS_DIGITS])
                found = ts if found is None else min(found, ts)
                break
        return found

    def clear(self) -> None:
        self._heap = None
        self._floors.clear()

    def __len__(self) -> int:
        rocks = self.table.rocksdb()
        if rocks is None:
            return len(self._memory_heap())
        # RocksDB's own estimate: counting would read every key.
        total = 0
        for partition in self.owned():
            db = rocks._dbs.get(partition)
            if db is not None:
                total += int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
        return total

    def _memory_heap(self) -> list[str]:
        if self._heap is None:
            owned, where = set(self.owned()), self.table.stored_partition
            # A sorted list is a heap. Keys of partitions this worker is a standby for stay out.
            self._heap = sorted(k for k in self.table if where(k) in owned)
        return self._heap
