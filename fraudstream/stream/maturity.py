"""The worker's maturity queue (see ``fraudstream.core.maturity``): its entries derived from the snapshot table.

Each authorization scored has one entry, ``@{ts:013d}:{tx_id}``, from scoring to maturity, in the partition of its
snapshot. Every one of them is in the snapshot table already (a snapshot per authorization scored, with its ts,
written when it is scored and deleted at maturity), so the entries are derived, never written to the broker:

- **live**, each entry is added to its partition's ordered keys when the authorization is scored, and taken out at
  maturity, when the scorer deletes its snapshot (the snapshot's tombstone is the only record maturity writes);
- **at recovery** (a start, a restart after a crash, a rebalance bringing partitions here; memory store or
  RocksDB), the keys of each partition new here are rebuilt from the snapshots the store holds for it, once faust
  has recovered the tables, from the same read of the store as the card index
  (``fraudstream.stream.snapshot_views``); those of partitions gone elsewhere are dropped when the assignment
  changes. Snapshots and entries are written in the same changelog phase (``FraudApp`` ``phases``: the first), so
  a snapshot is on the broker no later than its entry was when the entry was a record of its own.

Where the keys are kept follows the store: with the memory store, a sorted list per partition (one key per
snapshot held); with RocksDB, a local RocksDB database per partition under the state directory
(``maturity-index/``), on the worker's one RocksDB memory bound, never changelogged, wiped at start and rebuilt as
each partition is recovered.

What stays in the changelogged ``maturity`` table:

- ``~learned:{partition}``: how far learning has gone in the partition (``learned_until``, a decimal ``ts``). It
  moves only forward, and is written in a batch that hands entries out for learning, with the batch's other state
  (``Flusher.durable``), so before the batch's training examples are produced: at most one record a batch. It
  cannot be derived (nothing else on the broker says which entries were handed out); a restarted worker reads it
  back: an entry at or before it was handed out, one after it was not, so no authorization is learned twice, and
  whether one was learned as legitimate for now (``MaturityQueue.learned``) is the same before and after a
  restart. A crash after the state is written and before the examples are produced loses those examples (a
  batch's training examples are not produced again);
- an earlier release's keys (a rolling upgrade), read only from the table's store, never written again:
  ``{due:013d}:{tx_id}`` (keyed by due time, two releases back): handed out when due as ``Due.legacy`` (the scorer
  learns it as that release did, and queues it again as entries are now), and its snapshot is left out of the
  derived entries until then; ``@{ts}:{tx_id}`` (the previous release's entries, one record each): derived from
  their snapshots like any other, each deleted from the table (a tombstone) when its entry matures.

A rolling upgrade: ``~learned`` keeps its meaning, so a partition moving from an earlier-release worker to this
one goes on learning where it stood, its entries derived from its snapshots; the earlier release's records are
gone from the ``maturity`` table after one maturity period. While both releases run, a partition that moves back
to an earlier-release worker lacks, in that worker's table, the entries of the authorizations this release scored:
that worker neither learns them for now nor matures their snapshots until a worker of this release holds the
partition again (it then derives them, and hands out those its feedback delay passed meanwhile, as ``~learned``
says).

Due entries are the first keys of each range, read from where the last ones were taken, and memory stays flat
however many authorizations wait (RocksDB).
"""

from __future__ import annotations

import bisect
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fraudstream.core.card_index import IndexEntry
from fraudstream.core.maturity import NOTHING_LEARNED, Due
from fraudstream.stream.snapshot_views import LocalLists, SnapshotView, read_snapshots
from fraudstream.stream.tables import RocksDBMemory, TableMapping

__all__ = ["TableMaturityQueue", "entry_key", "legacy_key", "learned_key"]

log = logging.getLogger("fraudstream.worker")

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


def _between(keys: list[str], start: str, limit: str, first: bool = False) -> list[str]:
    """The keys of a sorted list from ``start`` (included) to ``limit`` (excluded); only the first with ``first``."""
    i = bisect.bisect_left(keys, start)
    j = i + 1 if first else bisect.bisect_left(keys, limit, lo=i)
    return [k for k in keys[i:j] if k < limit]


def _db_between(db: Any, start: str, limit: str, first: bool = False) -> list[str]:
    """:func:`_between` over a RocksDB database's keys (rocksdict: bytes, in order)."""
    out: list[str] = []
    stop = limit.encode()
    for k in db.keys(from_key=start.encode()):
        if k >= stop:
            break
        out.append(k.decode())
        if first:
            break
    return out


class _SortedKeys:
    """One partition's entry keys, in order: a sorted list (the memory store).

    >>> keys = _SortedKeys([entry_key(2, "b"), entry_key(1, "a")])
    >>> keys.add(entry_key(3, "c")); keys.remove([entry_key(1, "a"), entry_key(2, "b")])
    >>> keys.range(_ENTRY, _LEARNED), len(keys)
    (['@0000000000003:c'], 1)
    """

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self.keys = sorted(keys)

    def add(self, key: str) -> None:
        bisect.insort(self.keys, key)

    def remove(self, taken: list[str]) -> None:
        """``taken``, consecutive keys as :meth:`range` listed them."""
        i = bisect.bisect_left(self.keys, taken[0])
        del self.keys[i : i + len(taken)]

    def range(self, start: str, limit: str, first: bool = False) -> list[str]:
        return _between(self.keys, start, limit, first)

    def __len__(self) -> int:
        return len(self.keys)

    def destroy(self) -> None:
        self.keys = []


class _LocalKeys:
    """One partition's entry keys in a local RocksDB database (``LocalLists``: no changelog, on the worker's
    RocksDB memory bound)."""

    def __init__(self, path: Path, memory: RocksDBMemory, keys: Iterable[str] = ()) -> None:
        self.local = LocalLists(path, memory)
        self.local.write(dict.fromkeys(keys, b""))

    def add(self, key: str) -> None:
        self.local.db.put(key.encode(), b"")

    def remove(self, taken: list[str]) -> None:
        for key in taken:
            self.local.db.delete(key.encode())

    def range(self, start: str, limit: str, first: bool = False) -> list[str]:
        return _db_between(self.local.db, start, limit, first)

    def __len__(self) -> int:
        return int(self.local.db.property_int_value("rocksdb.estimate-num-keys") or 0)

    def destroy(self) -> None:
        self.local.destroy()


class _Partition:
    """What the queue keeps in memory of one partition: where learning stands, read positions, the late entries."""

    __slots__ = ("learned_until", "late", "matured_from", "legacy_from", "legacy")

    def __init__(self, learned_until: int) -> None:
        self.learned_until = learned_until
        self.late: dict[str, int] = {}  # entry key -> ts: scored at or before learned_until, handed out next time
        self.matured_from = _ENTRY  # every key before it was taken out (the next read starts there)
        self.legacy_from = ""
        self.legacy: list[str] = []  # memory store: an earlier release's ``{due}`` keys in the table, sorted


class TableMaturityQueue:
    """A :class:`~fraudstream.core.maturity.MaturityQueue` for the partitions ``owned()`` returns: its entries derived
    from ``snapshots`` (:meth:`rebuild`), where learning stands in ``table``.

    Each entry goes to the partition of its authorization's snapshot (``home``), else to the table's routing (the
    partition of the authorization being scored). Without ``snapshots`` (tests of the queue alone) a partition's
    entries start empty when first used.
    """

    def __init__(self, table: TableMapping, owned: Callable[[], Iterable[int]],
                 home: Callable[[str], int | None] | None = None, *, feedback_ms: int, maturity_ms: int,
                 snapshots: TableMapping | None = None, rocksdb: RocksDBMemory | None = None,
                 directory: Path | None = None) -> None:
        self.table = table
        self.owned = owned
        # The partition of an authorization's snapshot: its entry goes there, whatever batch adds it (an earlier
        # release's entry is queued again from any batch), so it moves with the snapshot's partition.
        self.home = home
        self.feedback_ms = feedback_ms
        self.maturity_ms = maturity_ms
        self.snapshots = snapshots
        self.rocksdb = rocksdb
        self.directory = directory
        if rocksdb is not None:
            assert directory is not None, "local RocksDB entries need a directory"
            shutil.rmtree(directory, ignore_errors=True)  # an earlier run's: rebuilt as partitions are recovered
        self._entries: dict[int, _SortedKeys | _LocalKeys] = {}
        # The previous release's ``@`` records in the table, per partition: deleted when their entry matures.
        self._stored: dict[int, set[str]] = {}
        self._parts: dict[int, _Partition] = {}
        self._scanned: dict[int, list[str]] | None = None  # memory store: ``{due}`` keys by partition

    def add(self, ts: int, tx_id: str) -> None:
        key = entry_key(ts, tx_id)
        partition = self._home(tx_id)
        part = self._part(partition)  # read before the write: whether it is late depends on where learning stands
        self._keys_of(partition).add(key)
        if ts <= part.learned_until:
            part.late[key] = ts
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
            entries = self._keys_of(partition)
            # Learning: the late entries, and those up to now minus the feedback delay not handed out before.
            until = max(part.learned_until, now - self.feedback_ms)
            taken = list(part.late)
            part.late.clear()
            if until > part.learned_until:
                taken += entries.range(entry_key(part.learned_until + 1, ""), entry_key(until + 1, ""))
                part.learned_until = until
            if taken:  # a record only where entries were handed out: none after `until` then, none before unread
                key = learned_key(partition)
                self.table.route(key, partition)
                self.table[key] = str(until).encode()
                learn += taken
            # Maturity: every entry up to now minus the maturity period (handed out for learning above, if not before).
            found = entries.range(part.matured_from, entry_key(now - self.maturity_ms + 1, ""))
            if found:
                part.matured_from = found[-1] + "\x00"
                entries.remove(found)
                matured += found
                stored = self._stored.get(partition)
                if stored:
                    for key in found:
                        if key in stored:
                            stored.discard(key)
                            self.table.pop(key, None)  # its tombstone goes to the key's own partition
            found = self._legacy(partition, part, part.legacy_from, legacy_key(now + 1, ""))
            if found:
                part.legacy_from = found[-1] + "\x00"
                del part.legacy[: len(found)]
                legacy += found
        for key in legacy:
            self.table.pop(key, None)
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
            entries = self._keys_of(partition)
            due += [ts + self.feedback_ms for ts in part.late.values()]
            for start, delay in ((entry_key(part.learned_until + 1, ""), self.feedback_ms),
                                 (part.matured_from, self.maturity_ms)):
                first = entries.range(start, _LEARNED, first=True)
                if first:
                    due.append(_ts(first[0]) + delay)
            first = self._legacy(partition, part, part.legacy_from, _ENTRY, first=True)
            if first:
                due.append(int(first[0][:_TS_DIGITS]))
        return min(due, default=None)

    def clear(self) -> None:
        """Forget where learning stands and the read positions (reread from the table); the entries stay, those of
        partitions gone elsewhere dropped by :meth:`keep_only`."""
        self._parts.clear()
        self._scanned = None

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._entries.values()) + sum(
            len(p.legacy) for p in self._parts.values())

    # --- derived from the snapshots ----------------------------------------------
    def view(self) -> SnapshotView:
        """The entries as a view of the snapshots (``SnapshotViews`` rebuilds it, with the card index)."""
        return SnapshotView("maturity queue", lambda: self._entries, self.keep_only, self.derive)

    def rebuild(self, partitions: set[int]) -> int:
        """The entries of ``partitions`` from the snapshots the store holds for them now (recovered): this view alone.
        The worker rebuilds every view of the snapshots from one read (``SnapshotViews``)."""
        if not partitions or self.snapshots is None:
            return 0
        return self.derive(read_snapshots(self.snapshots, partitions))

    def derive(self, found: dict[int, list[IndexEntry]]) -> int:
        """The entries of each partition of ``found`` (``read_snapshots``: its snapshots' entries), replacing what it
        held, but those an earlier release keyed by their due time in the table. Returns the entries derived."""
        started = time.perf_counter()
        stored, legacy_tx = self._table_entries(set(found))
        derived = 0
        for partition, entries in found.items():
            legacy = legacy_tx.get(partition, ())
            keys = [entry_key(ts, tx_id) for _, ts, tx_id, _ in entries if tx_id not in legacy]
            self._drop(partition)
            self._entries[partition] = self._new_keys(partition, keys)
            self._stored[partition] = stored.get(partition, set())
            self._parts.pop(partition, None)
            derived += len(keys)
        self._scanned = None
        log.info("maturity queue of partitions %s rebuilt from their snapshots: %d entries in %.2fs", sorted(found),
                 derived, time.perf_counter() - started)
        return derived

    def keep_only(self, partitions: set[int]) -> None:
        """Drop the entries of every partition but ``partitions`` (gone elsewhere)."""
        for partition in [p for p in self._entries if p not in partitions]:
            self._drop(partition)

    # --- one partition ----------------------------------------------------------
    def _new_keys(self, partition: int, keys: Iterable[str] = ()) -> _SortedKeys | _LocalKeys:
        if self.rocksdb is None or self.directory is None:
            return _SortedKeys(keys)
        return _LocalKeys(self.directory / f"partition-{partition}", self.rocksdb, keys)

    def _keys_of(self, partition: int) -> _SortedKeys | _LocalKeys:
        entries = self._entries.get(partition)
        if entries is None:
            entries = self._entries[partition] = self._new_keys(partition)
        return entries

    def _drop(self, partition: int) -> None:
        entries = self._entries.pop(partition, None)
        if entries is not None:
            entries.destroy()
        self._stored.pop(partition, None)
        self._parts.pop(partition, None)

    def _home(self, tx_id: str) -> int:
        home = self.home(tx_id) if self.home is not None else None
        return self.table.partition if home is None else home

    def _has_store(self, partition: int) -> bool:
        # Following the assignment: a partition not recovered here yet waits for its entries to be rebuilt.
        return self.snapshots is None or partition in self._entries

    def _part(self, partition: int) -> _Partition:
        part = self._parts.get(partition)
        if part is None:
            raw = self.table.get(learned_key(partition))
            part = self._parts[partition] = _Partition(NOTHING_LEARNED if raw is None else int(raw))
            if self.table.rocksdb() is None:
                if self._scanned is None:
                    self._scanned = self._scan_memory()
                part.legacy = self._scanned.pop(partition, [])
        return part

    def _table_keys(self, partitions: set[int]) -> Iterable[tuple[int, str]]:
        """(partition, key) of the table's keys in ``partitions``, ``~learned`` left out."""
        rocks = self.table.rocksdb()
        if rocks is None:
            where = self.table.stored_partition
            for key in self.table:
                partition = where(key)
                if partition in partitions and not key.startswith(_LEARNED):
                    yield partition, key
            return
        stop = _LEARNED.encode()
        for partition in sorted(partitions):
            db = rocks._dbs.get(partition)
            if db is not None:
                for k in db.keys():
                    if k >= stop:
                        break
                    yield partition, k.decode()

    def _table_entries(self, partitions: set[int]) -> tuple[dict[int, set[str]], dict[int, set[str]]]:
        """The previous release's ``@`` keys in the table, and the tx_ids an earlier one keyed by due time, per
        partition."""
        stored: dict[int, set[str]] = {}
        legacy_tx: dict[int, set[str]] = {}
        for partition, key in self._table_keys(partitions):
            if key.startswith(_ENTRY):
                stored.setdefault(partition, set()).add(key)
            else:
                legacy_tx.setdefault(partition, set()).add(_tx_id(key))
        return stored, legacy_tx

    def _scan_memory(self) -> dict[int, list[str]]:
        """The memory store's ``{due}`` keys (a dict, in no order), sorted per partition: read once after each `clear`."""
        out: dict[int, list[str]] = {}
        for partition, key in self._table_keys(set(self._entries) | set(self.owned())):
            if not key.startswith(_ENTRY):
                out.setdefault(partition, []).append(key)
        for keys in out.values():
            keys.sort()
        return out

    def _legacy(self, partition: int, part: _Partition, start: str, limit: str, first: bool = False) -> list[str]:
        """The partition's ``{due}`` keys in the table from ``start`` (included) to ``limit`` (excluded), in order;
        the first one only if ``first``."""
        if start >= limit:
            return []
        rocks = self.table.rocksdb()
        if rocks is None:
            return _between(part.legacy, start, limit, first)
        db = rocks._dbs.get(partition)
        return [] if db is None else _db_between(db, start, limit, first)
