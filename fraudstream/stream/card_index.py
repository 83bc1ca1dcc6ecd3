"""The card index of the worker: each card's recent ``(ts, tx_id)``, derived from the snapshot table, no changelog.

The score stage appends to each card's live list as it scores (``FraudScorer.card_index``, a
``fraudstream.core.state.CardTransactions``: a bounded cache of lists). Behind that cache, :class:`DerivedCardIndex`
holds every card's list as bytes, per partition, in this worker only: nothing goes to the broker. Everything in
it is in the snapshot table already (a snapshot per authorization scored, with its card, ts and decision number,
kept until maturity: the index's horizon too), and the snapshots are written in the score stage's first changelog
phase, before any score is produced. So when faust has recovered the snapshot table's partitions (a start, a restart
after a crash, a rebalance bringing partitions here; memory store or RocksDB), the index of each partition new here
is rebuilt from its snapshots (``fraudstream.core.card_index.derive_card_lists``), and the index of each partition
gone elsewhere is dropped: with the maturity queue's entries, from one read of the store
(``fraudstream.stream.snapshot_views``, which says why the store is read and not the changelog).

Where the lists are kept follows the store: with the memory store, a dict per partition (≈ 30 bytes an entry, one
entry per snapshot held: the bytes the ``card-transactions`` table's memory store held); with RocksDB, a local
RocksDB database per partition under the state directory (``card-index/``), on the worker's one RocksDB memory bound
(``fraudstream.stream.tables.RocksDBMemory``), never changelogged and rebuilt whenever its partition is recovered
(a restart included: wiped when the worker starts). In front of either, the live lists stay bounded as before
(``FRAUDSTREAM_LIVE_STATES_MAX`` / 10 cards). A rebuild reads every snapshot of the partitions recovered: with
RocksDB a restart reads its local snapshots once more, where the table read only its changelog's tail.

Earlier releases wrote the lists to a changelogged table, ``card-transactions``: this release neither reads nor
writes its changelog topic, so a rolling upgrade just ignores it (delete it once every worker runs this release).
While both releases run, a partition an earlier-release worker takes over from this one lacks, in that worker's
table, the authorizations this one scored: its card-level labels miss them until the upgrade is done.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from fraudstream.contracts import encode
from fraudstream.core.card_index import IndexEntry, derive_card_lists
from fraudstream.core.state import CardTransactions
from fraudstream.stream.snapshot_views import LocalLists, SnapshotView, read_snapshots
from fraudstream.stream.tables import RocksDBMemory, TableMapping

__all__ = ["DerivedCardIndex"]

log = logging.getLogger("fraudstream.worker")


class DerivedCardIndex(MutableMapping[str, bytes]):
    """Each card's ``(ts, tx_id)`` list as bytes (``CardTransactions``' durable mapping), per partition of the
    snapshot table ``snapshots``, in this process only; rebuilt from ``snapshots`` (:meth:`rebuild`). With
    ``rocksdb`` (the worker's memory bound) each partition's lists are a local RocksDB database under ``directory``,
    else a dict.

    Written where the card's list is, else to the partition the card is routed to (``route``, as the score stage does
    for its tables: ``fraudstream.stream.stages.tables.CardTables``), else to that of the event being processed.

    >>> index = DerivedCardIndex(snapshots=None)
    >>> index.partition = 3
    >>> index["c1"] = b'[[5,"t1"]]'
    >>> index.route("c2", 1); index["c2"] = b'[[6,"t2"]]'
    >>> sorted(index.by_partition), index["c1"], index.get("c9")
    ([1, 3], b'[[5,"t1"]]', None)
    >>> index.keep_only({1}, CardTransactions()); sorted(index)
    ['c2']
    """

    def __init__(self, snapshots: TableMapping | None, rocksdb: RocksDBMemory | None = None,
                 directory: Path | None = None) -> None:
        self.snapshots = snapshots
        self.by_partition: dict[int, MutableMapping[str, bytes]] = {}
        self.partition = 0  # partition of the event being processed
        self.partition_of: dict[str, int] = {}  # cards routed in the batch
        self.rocksdb = rocksdb
        self.directory = directory
        if rocksdb is not None:
            assert directory is not None, "a local RocksDB index needs a directory"
            shutil.rmtree(directory, ignore_errors=True)  # an earlier run's: rebuilt as partitions are recovered

    def _new_lists(self, partition: int) -> MutableMapping[str, bytes]:
        if self.rocksdb is None or self.directory is None:
            return {}
        return LocalLists(self.directory / f"partition-{partition}", self.rocksdb)

    def _lists_of(self, partition: int) -> MutableMapping[str, bytes]:
        lists = self.by_partition.get(partition)
        if lists is None:
            lists = self.by_partition[partition] = self._new_lists(partition)
        return lists

    def _drop(self, partition: int) -> MutableMapping[str, bytes] | None:
        lists = self.by_partition.pop(partition, None)
        if isinstance(lists, LocalLists):
            lists.destroy()
        return lists

    # --- the CardTables interface ------------------------------------------------
    def route(self, key: str, partition: int) -> None:
        self.partition_of[key] = partition

    def clear_routes(self) -> None:
        self.partition_of.clear()

    # --- the mapping -------------------------------------------------------------
    def _lookup(self, key: str) -> tuple[MutableMapping[str, bytes] | None, bytes | None]:
        """Which partition's lists hold ``key``, and its value (None, None if none)."""
        routed = self.by_partition.get(self.partition_of.get(key, self.partition))
        if routed is not None:
            value = routed.get(key)
            if value is not None:
                return routed, value
        for lists in self.by_partition.values():
            if lists is not routed:
                value = lists.get(key)
                if value is not None:
                    return lists, value
        return None, None

    def __getitem__(self, key: str) -> bytes:
        value = self._lookup(key)[1]
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._lookup(key)[1]
        return default if value is None else value

    def __setitem__(self, key: str, value: bytes) -> None:
        holder = self._lookup(key)[0]
        if holder is None:
            holder = self._lists_of(self.partition_of.get(key, self.partition))
        holder[key] = value

    def __delitem__(self, key: str) -> None:
        holder = self._lookup(key)[0]
        if holder is None:
            raise KeyError(key)
        del holder[key]

    def __iter__(self) -> Iterator[str]:
        for lists in list(self.by_partition.values()):
            yield from list(lists)

    def __len__(self) -> int:
        return sum(len(lists) for lists in self.by_partition.values())

    # --- derived from the snapshots ----------------------------------------------
    def view(self, cache: CardTransactions) -> SnapshotView:
        """This index as a view of the snapshots (``SnapshotViews`` rebuilds it), ``cache`` the live lists in front."""
        return SnapshotView("card index", lambda: self.by_partition, lambda held: self.keep_only(held, cache),
                            lambda found: self.derive(found, cache))

    def rebuild(self, partitions: set[int], cache: CardTransactions) -> int:
        """The lists of ``partitions`` from the snapshots the store holds for them now (recovered): this view alone.
        The worker rebuilds every view of the snapshots from one read (``SnapshotViews``)."""
        if not partitions or self.snapshots is None:
            return 0
        return self.derive(read_snapshots(self.snapshots, partitions), cache)

    def derive(self, found: dict[int, list[IndexEntry]], cache: CardTransactions) -> int:
        """The lists of each partition of ``found`` (``read_snapshots``: its snapshots' entries), replacing what it
        held; their cards' live lists in ``cache`` are forgotten (they read back from here). Returns the entries
        listed."""
        started = time.perf_counter()
        listed = 0
        for partition, entries in found.items():
            lists = derive_card_lists(entries, cache.cap)
            self._drop(partition)
            held = self._lists_of(partition)
            if isinstance(held, LocalLists):
                held.write({card: encode(txs) for card, txs in lists.items()})
            else:
                held.update({card: encode(txs, keep=True) for card, txs in lists.items()})
            for card, txs in lists.items():
                cache.live.pop(card, None)
                cache.dirty.discard(card)
                listed += len(txs)
        log.info("card index of partitions %s rebuilt from their snapshots: %d entries in %.2fs", sorted(found),
                 listed, time.perf_counter() - started)
        return listed

    def keep_only(self, partitions: set[int], cache: CardTransactions) -> None:
        """Drop the lists of every partition but ``partitions`` (gone elsewhere), and their cards' live lists."""
        for partition in [p for p in self.by_partition if p not in partitions]:
            for card in self.by_partition[partition]:
                cache.live.pop(card, None)
                cache.dirty.discard(card)
            self._drop(partition)
