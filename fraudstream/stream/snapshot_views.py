"""The views derived from the snapshot table, and their rebuild: one scan of the recovered snapshots feeds them all.

Two things the worker keeps are derived from the snapshots (one per authorization scored, until it matures) instead
of being written to the broker: the card index (each card's recent ``(ts, tx_id)``: ``fraudstream.stream.card_index``)
and the maturity queue's entries (``fraudstream.stream.maturity``). Each is a :class:`SnapshotView`, kept per
partition of the snapshot table, in this worker only. :class:`SnapshotViews` keeps them in step with the partitions
faust assigns the worker:

- a partition no longer assigned is dropped from every view at once (another worker may write it meanwhile);
- once faust has recovered the tables (``Table.on_recover``: after every table's recovery, before the agents
  resume), the partitions new to this worker are rebuilt from the snapshots the store holds for them now: the
  store is read **once**, each snapshot decoded once (:func:`read_snapshots`), and every view derives its
  partitions from those entries. A view rebuilds only the partitions it does not hold: those that stayed here
  through a rebalance keep what the worker wrote (recovery applies to them only those same writes again).

The store is read rather than the changelog records recovery applies: RocksDB keeps its local data across
restarts and recovery replays only the changelog's tail, so the records applied are not all the snapshots a
partition holds, while the store itself is.

With RocksDB tables a view keeps each partition in a local RocksDB database (:class:`LocalLists`: under its own
directory of the state directory, on the worker's one RocksDB memory bound, never changelogged, wiped at start).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudstream.core.card_index import IndexEntry, index_entry
from fraudstream.stream.tables import RocksDBMemory, TableMapping

__all__ = ["LocalLists", "SnapshotView", "SnapshotViews", "read_snapshots"]

log = logging.getLogger("fraudstream.worker")


def read_snapshots(snapshots: TableMapping, partitions: set[int]) -> dict[int, list[IndexEntry]]:
    """What the views are derived from: the :func:`~fraudstream.core.card_index.index_entry` of every snapshot the
    store holds for ``partitions`` now (an empty list for a partition without any), each snapshot read and decoded
    once. An unreadable snapshot is left out, and counted in a warning."""
    found: dict[int, list[IndexEntry]] = {p: [] for p in partitions}
    unreadable = 0
    for partition, raw in snapshots.values_of(partitions):
        try:
            found[partition].append(index_entry(raw))
        except (ValueError, KeyError, TypeError):
            unreadable += 1
    if unreadable:
        log.warning("snapshots: %d unreadable, left out of the views derived from them", unreadable)
    return found


@dataclass(frozen=True)
class SnapshotView:
    """One view derived from the snapshots, as :class:`SnapshotViews` drives it.

    ``held()``: the partitions it holds; ``keep_only(partitions)``: drop every other; ``derive(found)``: replace
    each partition of ``found`` (:func:`read_snapshots`) with what its entries derive, returning the entries held.
    """

    name: str
    held: Callable[[], Iterable[int]]
    keep_only: Callable[[set[int]], None]
    derive: Callable[[dict[int, list[IndexEntry]]], int]


class SnapshotViews:
    """The views derived from ``snapshots``, kept in step with the worker's partitions (:meth:`follow`).

    >>> class Snapshots:  # stands for the snapshot table: what ``TableMapping.values_of`` hands out
    ...     def values_of(self, partitions):
    ...         stored = [(0, b'{"a":{"tx_id":"t1","card_id":"c1","ts":5}}'), (1, b'{"a":{"tx_id":"t2","card_id":"c2","ts":6}}')]
    ...         return [(p, raw) for p, raw in stored if p in partitions]
    >>> held = {"cards": {}, "due": {1: ["kept"]}}
    >>> def view(name):
    ...     return SnapshotView(name, lambda: held[name], lambda keep: None, lambda found: held[name].update(found) or 0)
    >>> SnapshotViews(Snapshots(), [view("cards"), view("due")]).recovered({0, 1})  # one read, each decoded once
    2
    >>> held["cards"], held["due"]  # "due" held partition 1 already: only 0 is derived for it
    ({0: [('c1', 5, 't1', None)], 1: [('c2', 6, 't2', None)]}, {1: ['kept'], 0: [('c1', 5, 't1', None)]})
    """

    def __init__(self, snapshots: TableMapping, views: Iterable[SnapshotView]) -> None:
        self.snapshots = snapshots
        self.views = tuple(views)

    def keep_only(self, partitions: set[int]) -> None:
        """Every view drops the partitions not in ``partitions``."""
        for view in self.views:
            view.keep_only(partitions)

    def recovered(self, partitions: set[int]) -> int:
        """``partitions`` are this worker's, their snapshots recovered: the views drop every other partition, and
        rebuild those of ``partitions`` each does not hold, from one read of the store. Returns the snapshots read."""
        self.keep_only(partitions)
        new = [(view, partitions - set(view.held())) for view in self.views]
        wanted = set().union(*(mine for _, mine in new))
        if not wanted:
            return 0
        started = time.perf_counter()
        found = read_snapshots(self.snapshots, wanted)
        read = sum(len(entries) for entries in found.values())
        log.info("snapshots of partitions %s read for their views: %d in %.2fs", sorted(wanted), read,
                 time.perf_counter() - started)
        for view, mine in new:
            if mine:
                view.derive({p: found[p] for p in mine})
        return read

    def follow(self, app: Any) -> None:
        """Keep the views in step with the partitions faust assigns ``app``: a partition no longer assigned is dropped
        at once; those newly assigned are rebuilt once faust has recovered the tables (:meth:`recovered`)."""
        topic = self.snapshots.changelog_topic

        def actives() -> set[int]:
            return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # faust's stubs want (sender, *args, signal=)
        async def on_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
            # Gone now, even if it comes back before recovery completes: another worker may have written it meanwhile.
            self.keep_only(actives())

        async def on_recovered() -> None:
            self.recovered(actives())

        self.snapshots.table.on_recover(on_recovered)


class LocalLists(MutableMapping[str, bytes]):
    """One partition of a view in a local RocksDB database at ``path`` (created empty), on the worker's shared RocksDB
    memory bound: what faust's RocksDB tables use, without a changelog."""

    def __init__(self, path: Path, memory: RocksDBMemory) -> None:
        from faust.stores.rocksdb import RocksDBOptions

        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = RocksDBOptions(**memory.table_options(), use_rocksdict=True).open(path)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.db.get(key.encode())
        return default if value is None else value

    def __getitem__(self, key: str) -> bytes:
        value: bytes | None = self.db.get(key.encode())
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: bytes) -> None:
        self.db.put(key.encode(), value)

    def __delitem__(self, key: str) -> None:
        k = key.encode()
        if self.db.get(k) is None:
            raise KeyError(key)
        self.db.delete(k)

    def __iter__(self) -> Iterator[str]:
        for k in self.db.keys():
            yield k.decode()

    def __len__(self) -> int:
        return sum(1 for _ in self.db.keys())

    def write(self, lists: dict[str, bytes]) -> None:
        """Many lists in one write."""
        import rocksdict

        batch = rocksdict.WriteBatch(raw_mode=True)
        for card, raw in lists.items():
            batch.put(card.encode(), raw)
        self.db.write(batch)

    def destroy(self) -> None:
        """Closed, and gone from the disk."""
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
