"""The views derived from the snapshots (card index, maturity queue entries) rebuilt from one read of the store, on
faust's real stores (memory and RocksDB), without a broker."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import faust
import pytest

from fraudstream.config import Settings
from fraudstream.contracts import Authorization
from fraudstream.core.card_index import IndexEntry
from fraudstream.core.decision import Decision
from fraudstream.core.scorer import FraudScorer
from fraudstream.core.snapshot import EncodedSnapshots, Snapshot
from fraudstream.stream import snapshot_views
from fraudstream.stream.card_index import DerivedCardIndex
from fraudstream.stream.maturity import TableMaturityQueue
from fraudstream.stream.snapshot_views import SnapshotViews
from fraudstream.stream.tables import RocksDBMemory, TableMapping

PARTITIONS = 3
KW = {"partitions": PARTITIONS, "key_type": bytes, "value_type": bytes, "default": None}
ALL = set(range(PARTITIONS))


class Worker:
    """The snapshot table with 60 snapshots (partition = card number % 3), and fresh views over it."""

    def __init__(self, store: str, tmp: Path) -> None:
        app = faust.App(f"views-{store[:6]}", store=store, datadir=str(tmp / "tables"), web_enabled=False,
                        key_serializer="raw", value_serializer="raw")
        self.tmp = tmp
        self.snapshots = TableMapping(app.Table("snapshots", **KW))
        self.maturity = TableMapping(app.Table("maturity", **KW))
        self.local = self.snapshots.rocksdb() is not None
        for i in range(60):
            auth = Authorization(f"t{i}", f"c{i % 6}", "m1", 10.0, 1_000 * i)
            self.snapshots.route(auth.tx_id, i % 6 % PARTITIONS)
            self.snapshots[auth.tx_id] = Snapshot(auth, {}, 0.1, "v1", Decision("none", 0.5, None), [], (), False,
                                                  decision_number=i).to_bytes()
        self.snapshots.clear_routes()
        # Every snapshot the store hands out, per partition: what a rebuild reads.
        self.read: Counter[int] = Counter()
        values_of = self.snapshots.values_of

        def counted(partitions: set[int]) -> Iterator[tuple[int, bytes]]:
            for partition, raw in values_of(partitions):
                self.read[partition] += 1
                yield partition, raw

        self.snapshots.values_of = counted  # type: ignore[method-assign]

    def views(self, name: str) -> tuple[DerivedCardIndex, TableMaturityQueue, FraudScorer]:
        rocks = RocksDBMemory(8 << 20) if self.local else None
        index = DerivedCardIndex(self.snapshots, rocks, self.tmp / name / "card-index" if rocks else None)
        queue = TableMaturityQueue(self.maturity, lambda: ALL, self.snapshots.stored_partition, feedback_ms=1_000,
                                   maturity_ms=10_000, snapshots=self.snapshots, rocksdb=rocks,
                                   directory=self.tmp / name / "maturity-index" if rocks else None)
        scorer = FraudScorer(Settings.load(env={}), snapshots=EncodedSnapshots(self.snapshots), card_index=index,
                             pending=queue, learn_inline=False)
        return index, queue, scorer


@pytest.fixture(params=["memory://", "rocksdb://"])
def worker(request, tmp_path) -> Worker:
    return Worker(request.param, tmp_path)


@pytest.fixture
def decoded(monkeypatch) -> Counter[str]:
    """How many times each snapshot (by tx_id) is decoded for the views."""
    counts: Counter[str] = Counter()
    index_entry = snapshot_views.index_entry

    def counting(raw: bytes) -> IndexEntry:
        entry = index_entry(raw)
        counts[entry[2]] += 1
        return entry

    monkeypatch.setattr(snapshot_views, "index_entry", counting)
    return counts


def contents(index: DerivedCardIndex, queue: TableMaturityQueue, scorer: FraudScorer) -> tuple[dict, list]:
    """Each card's list, and every entry the queue hands out when all have matured."""
    lists = {f"c{c}": scorer.card_index.since(f"c{c}", 0) for c in range(6)}
    return lists, queue.pop_due(10**9).matured


def test_a_rebuild_reads_and_decodes_each_snapshot_once_for_both_views(worker, decoded):
    # What each view holds rebuilt alone (a read each), to compare with.
    index, queue, scorer = worker.views("alone")
    index.rebuild(ALL, scorer.card_index)
    queue.rebuild(ALL)
    alone = contents(index, queue, scorer)
    assert len(alone[1]) == 60 and all(len(txs) == 10 for txs in alone[0].values())
    decoded.clear()
    worker.read.clear()

    index, queue, scorer = worker.views("together")
    views = SnapshotViews(worker.snapshots, [index.view(scorer.card_index), queue.view()])
    assert views.recovered(ALL) == 60
    assert set(decoded.values()) == {1} and len(decoded) == 60  # every snapshot decoded, once
    assert sum(worker.read.values()) == 60
    assert contents(index, queue, scorer) == alone

    # Recovered again with nothing new: the partitions that stayed keep their views, nothing is read.
    assert views.recovered(ALL) == 0 and len(decoded) == 60
    # A partition gone and back: only its snapshots are read, once for both views.
    decoded.clear()
    worker.read.clear()
    views.keep_only({0, 1})
    assert sorted(index.by_partition) == [0, 1]
    views.recovered(ALL)
    assert worker.read == {2: 20} and set(decoded.values()) == {1} and len(decoded) == 20


def test_each_view_rebuilds_only_the_partitions_it_does_not_hold(worker, decoded):
    index, queue, scorer = worker.views("views")
    views = SnapshotViews(worker.snapshots, [index.view(scorer.card_index), queue.view()])
    views.recovered(ALL)
    kept = index.by_partition[2]
    queue.keep_only({0, 1})  # the queue alone lacks partition 2
    worker.read.clear()
    views.recovered(ALL)
    assert worker.read == {2: 20}
    assert index.by_partition[2] is kept  # the card index held it: not rebuilt
    assert len(queue.pop_due(10**9).matured) == 60
