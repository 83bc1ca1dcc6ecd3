"""The worker's maturity queue (see ``fraudstream.core.maturity``), in a changelogged table.

Each partition of the table holds, in key order (RocksDB keeps each partition's keys sorted on disk; the memory
store's are kept in a sorted list per partition, built from the table when its partitions change):

- ``@{ts:013d}:{tx_id}``, an empty value: one entry per scored authorization, in the partition of its snapshot,
  written when it is scored and deleted (a tombstone) at maturity. Nothing in between: the feedback delay passing
  writes no record per authorization, and the snapshot is not rewritten either;
- ``~learned:{partition}``: how far learning has gone in the partition (``learned_until``, a decimal ``ts``). It
  moves only forward, and is written in a batch that hands entries out for learning, with the batch's other state
  (``Flusher.durable``), so before the batch's training examples are produced. A restarted worker reads it back:
  an entry at or before it was handed out, one after it was not, so no authorization is learned twice, and whether
  one was learned as legitimate for now (``MaturityQueue.learned``) is the same before and after a restart. As
  with the tombstones this replaces, a crash after the state is written and before the examples are produced
  loses those examples (a batch's training examples are not produced again);
- ``{due:013d}:{tx_id}``: an entry written by an earlier release, keyed by its due time (the feedback delay, then
  maturity): handed out when due as ``Due.legacy`` (the scorer learns it as that release did, and queues it again
  as ``@`` entries are). A rolling upgrade therefore leaves none of them after one maturity period.

Due entries are the first keys of each range, read from where the last ones were taken (past their tombstones), and
memory stays flat however many authorizations wait.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

from fraudstream.core.maturity import NOTHING_LEARNED, Due
from fraudstream.stream.tables import TableMapping

__all__ = ["TableMaturityQueue", "entry_key", "legacy_key", "learned_key"]

#: Zero-padded to 13 digits (milliseconds until the year 2286), string order is ``ts`` order.
_TS_DIGITS = 13
_ENTRY = "@"  # after every digit: the entries sort after an earlier release's keys, and before ``~learned``
_LEARNED = "~learned:"


def entry_key(ts: int, tx_id: str) -> str:
    return f"{_ENTRY}{max(ts, 0):0{_TS_DIGITS}d}:{tx_id}"


def legacy_key(due: int, tx_id: str) -> str:
    """The key an earlier release wrote: the entry's due time, then its ``tx_id``."""
    return f"{max(due, 0):0{_TS_DIGITS}d}:{tx_id}"


def learned_key(partition: int) -> str:
    return f"{_LEARNED}{partition}"


def _ts(key: str) -> int:
    return int(key[1 : 1 + _TS_DIGITS])


def _tx_id(key: str) -> str:
    return key[key.index(":") + 1 :]


class _Partition:
    """What the queue keeps in memory of one partition: where learning stands, read positions, the late entries."""

    __slots__ = ("learned_until", "late", "matured_from", "legacy_from", "entries", "legacy")

    def __init__(self, learned_until: int) -> None:
        self.learned_until = learned_until
        self.late: dict[str, int] = {}  # entry key -> ts: scored at or before learned_until, handed out next time
        # RocksDB: every key before these was taken out (the next read starts past their tombstones)
        self.matured_from = _ENTRY
        self.legacy_from = ""
        # Memory store: the partition's entry keys and earlier release's keys, sorted
        self.entries: list[str] = []
        self.legacy: list[str] = []


class TableMaturityQueue:
    """A :class:`~fraudstream.core.maturity.MaturityQueue` in ``table``, for the partitions ``owned()`` returns.

    Writes follow the table's routing (the partition of the authorization being scored); each entry taken out is
    deleted, with a tombstone on the changelog, in its own partition.
    """

    def __init__(self, table: TableMapping, owned: Callable[[], Iterable[int]],
                 home: Callable[[str], int | None] | None = None, *, feedback_ms: int, maturity_ms: int) -> None:
        self.table = table
        self.owned = owned
        # The partition of an authorization's snapshot: its entry goes there, whatever batch adds it (an earlier
        # release's entry is queued again from any batch), so it moves with the snapshot's partition.
        self.home = home
        self.feedback_ms = feedback_ms
        self.maturity_ms = maturity_ms
        self._parts: dict[int, _Partition] = {}
        self._scanned: dict[int, tuple[list[str], list[str]]] | None = None  # memory store: keys by partition

    def add(self, ts: int, tx_id: str) -> None:
        key = entry_key(ts, tx_id)
        partition = self._home(tx_id)
        part = self._part(partition)  # read before the write: whether it is late depends on where learning stands
        self.table.route(key, partition)
        self.table[key] = b""
        if ts <= part.learned_until:
            part.late[key] = ts
        if self.table.rocksdb() is None:
            bisect.insort(part.entries, key)
        if key < part.matured_from:  # scored after its maturity: the next read must start before it
            part.matured_from = key

    def pop_due(self, now: int) -> Due:
        learn: list[str] = []
        matured: list[str] = []
        legacy: list[str] = []
        for partition in self.owned():
            if not self._has_store(partition):
                continue
            part = self._part(partition)
            # Learning: the late entries, and those up to now minus the feedback delay not handed out before.
            until = max(part.learned_until, now - self.feedback_ms)
            taken = list(part.late)
            part.late.clear()
            if until > part.learned_until:
                taken += self._keys(partition, part, entry_key(part.learned_until + 1, ""), entry_key(until + 1, ""))
                part.learned_until = until
            if taken:  # a record only where entries were handed out: none after `until` then, none before unread
                key = learned_key(partition)
                self.table.route(key, partition)
                self.table[key] = str(until).encode()
                learn += taken
            # Maturity: every entry up to now minus the maturity period (handed out for learning above, if not before).
            found = self._keys(partition, part, part.matured_from, entry_key(now - self.maturity_ms + 1, ""))
            self._taken(part, found, legacy=False)
            matured += found
            found = self._keys(partition, part, part.legacy_from, legacy_key(now + 1, ""))
            self._taken(part, found, legacy=True)
            legacy += found
        for key in matured + legacy:
            self.table.pop(key, None)  # its tombstone goes to the key's own partition
        return Due([_tx_id(k) for k in sorted(learn)], [_tx_id(k) for k in sorted(matured)],
                   tuple(_tx_id(k) for k in sorted(legacy)))

    def learned(self, ts: int, tx_id: str) -> bool:
        part = self._part(self._home(tx_id))
        return ts <= part.learned_until and entry_key(ts, tx_id) not in part.late

    def oldest(self) -> int | None:
        due: list[int] = []
        for partition in self.owned():
            if not self._has_store(partition):
                continue
            part = self._part(partition)
            due += [ts + self.feedback_ms for ts in part.late.values()]
            for start, limit, delay in ((entry_key(part.learned_until + 1, ""), _LEARNED, self.feedback_ms),
                                        (part.matured_from, _LEARNED, self.maturity_ms)):
                first = self._keys(partition, part, start, limit, first=True)
                if first:
                    due.append(_ts(first[0]) + delay)
            first = self._keys(partition, part, part.legacy_from, _ENTRY, first=True)
            if first:
                due.append(int(first[0][:_TS_DIGITS]))
        return min(due, default=None)

    def clear(self) -> None:
        self._parts.clear()
        self._scanned = None

    def __len__(self) -> int:
        if self.table.rocksdb() is None and self._parts:
            return sum(len(p.entries) + len(p.legacy) for p in self._parts.values())
        # RocksDB's own estimate (counting would read every key), or the memory store's keys before any is read.
        return self.table.approx_len()

    # --- one partition ----------------------------------------------------------
    def _home(self, tx_id: str) -> int:
        home = self.home(tx_id) if self.home is not None else None
        return self.table.partition if home is None else home

    def _has_store(self, partition: int) -> bool:
        rocks = self.table.rocksdb()
        return rocks is None or partition in rocks._dbs

    def _part(self, partition: int) -> _Partition:
        part = self._parts.get(partition)
        if part is None:
            raw = self.table.get(learned_key(partition))
            part = self._parts[partition] = _Partition(NOTHING_LEARNED if raw is None else int(raw))
            if self.table.rocksdb() is None:
                if self._scanned is None:
                    self._scanned = self._scan_memory()
                part.entries, part.legacy = self._scanned.pop(partition, ([], []))
        return part

    def _scan_memory(self) -> dict[int, tuple[list[str], list[str]]]:
        """The memory store's keys (a dict, in no order), sorted per partition: read once after each `clear`."""
        where = self.table.stored_partition
        out: dict[int, tuple[list[str], list[str]]] = {}
        for key in self.table:
            partition = where(key)
            if partition is None or key.startswith(_LEARNED):
                continue
            entries, legacy = out.setdefault(partition, ([], []))
            (entries if key.startswith(_ENTRY) else legacy).append(key)
        for entries, legacy in out.values():
            entries.sort()
            legacy.sort()
        return out

    def _keys(self, partition: int, part: _Partition, start: str, limit: str, first: bool = False) -> list[str]:
        """The partition's keys from ``start`` (included) to ``limit`` (excluded), in order; the first one only if
        ``first``."""
        out: list[str] = []
        if start >= limit:
            return out
        rocks = self.table.rocksdb()
        if rocks is None:
            keys = part.legacy if start < _ENTRY else part.entries
            for i in range(bisect.bisect_left(keys, start), len(keys)):
                if keys[i] >= limit:
                    break
                out.append(keys[i])
                if first:
                    break
            return out
        db = rocks._dbs.get(partition)
        if db is None:
            return out
        stop = limit.encode()
        for k in db.keys(from_key=start.encode()):
            if k >= stop:
                break
            out.append(k.decode())
            if first:
                break
        return out

    @staticmethod
    def _taken(part: _Partition, keys: list[str], legacy: bool) -> None:
        """``keys``, the first ones of their range, are taken out: read past them from now on."""
        if not keys:
            return
        if legacy:
            part.legacy_from = keys[-1] + "\x00"
            del part.legacy[: len(keys)]
        else:
            part.matured_from = keys[-1] + "\x00"
            del part.entries[: len(keys)]
