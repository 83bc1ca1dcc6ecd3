"""The worker's card index, rebuilt from the snapshot table as faust recovers it: memory store and RocksDB, no broker.

The snapshot table's changelog records are captured as the worker would produce them (``TableMapping.pending``, each
key's value when sent) and applied to a fresh table the way faust's recovery applies them
(``Table.apply_changelog_batch``); with RocksDB the local data survives a restart and only the changelog's tail is
applied.
"""

from __future__ import annotations

import shutil
from itertools import count
from pathlib import Path

import faust
from faust.events import Event
from faust.types.tuples import Message

from fraudstream.config import Settings
from fraudstream.contracts import Authorization, Label
from fraudstream.core.scorer import FraudScorer
from fraudstream.core.snapshot import EncodedSnapshots
from fraudstream.stream.card_index import DerivedCardIndex
from fraudstream.stream.tables import RocksDBMemory, TableMapping

DAY = 86_400_000
T0 = 1_700_438_400_000
PARTITIONS = 3
CARDS = [f"c{i}" for i in range(7)]

Record = tuple[int, bytes, bytes | None]  # changelog partition, key, value (None: a tombstone)


def snapshot_table(store: str, datadir: Path, app_id: str = "cards-test") -> TableMapping:
    app = faust.App(app_id, store=store, datadir=str(datadir), web_enabled=False, key_serializer="raw",
                    value_serializer="raw")  # as the worker's
    return TableMapping(app.Table("snapshots", partitions=PARTITIONS, key_type=bytes, value_type=bytes, default=None))


def worker_scorer(snapshots: TableMapping, local: Path | None = None) -> tuple[FraudScorer, DerivedCardIndex]:
    """The score stage's scorer over ``snapshots``; with ``local``, its card index in local RocksDB databases there."""
    settings = Settings.load(env={}).with_overrides(partitions=PARTITIONS, legit_sample_rate=0.0, maturity_days=2.0)
    index = DerivedCardIndex(snapshots, RocksDBMemory(8 << 20), local) if local is not None else DerivedCardIndex(snapshots)
    scorer = FraudScorer(settings, snapshots=EncodedSnapshots(snapshots), card_index=index, learn_inline=False)
    scorer.card_index.capacity = 2  # most cards' lists read back from the index, not the live cache
    return scorer, index


class Worker:
    """The score stage's writes, without Kafka: each authorization on its card's partition, a batch at a time."""

    def __init__(self, snapshots: TableMapping, local: Path | None = None) -> None:
        self.snapshots = snapshots
        self.scorer, self.index = worker_scorer(snapshots, local)
        self.changelog: list[Record] = []
        self.numbers = {p: count(1) for p in range(PARTITIONS)}

    def batch(self, auths: list[Authorization], now: int) -> None:
        scorer, index = self.scorer, self.index
        for a in auths:
            p = CARDS.index(a.card_id) % PARTITIONS
            self.snapshots.partition = index.partition = p
            index.route(a.card_id, p)
            scorer.score(a, {}, partition=p, decision_number=next(self.numbers[p]))
        scorer.mature(now)
        scorer.card_index.flush()
        scorer.card_index.trim()
        index.clear_routes()
        for p, k in list(self.snapshots.pending):  # what the changelog writer would produce now
            self.changelog.append((p, k, self.snapshots._read(k)))
        self.snapshots.pending.clear()

    def run(self, days: int, start: int = 0) -> None:
        n = start * 8 * len(CARDS)
        for day in range(start, start + days):
            for hour in range(0, 24, 3):
                auths = []
                for i, card in enumerate(CARDS):
                    n += 1
                    late = 2 * 3_600_000 if (n % 5 == 0) else 0  # some arrive late
                    auths.append(Authorization(f"t{n}", card, f"m{i % 2}", 10.0, T0 + day * DAY + hour * 3_600_000 + i - late))
                self.batch(auths, T0 + day * DAY + hour * 3_600_000)

    def lists(self) -> dict[str, list[tuple[int, str]]]:
        """Each card's list as the live worker reads it, but for matured entries (skipped by every reader)."""
        return {c: [e for e in self.scorer.card_index.since(c, 0) if e[1] in self.scorer.snapshots] for c in CARDS}


def recover(snapshots: TableMapping, records: list[Record], chunk: int = 50) -> None:
    """Apply changelog records to the table as faust's recovery does (buffered, ``apply_changelog_batch``)."""
    table = snapshots.table
    topic = table.changelog_topic.get_topic_name()
    events = [Event(table.app, k, v, {}, Message(topic, p, offset, 0.0, 0, {}, k, v, None))
              for offset, (p, k, v) in enumerate(records)]
    for i in range(0, len(events), chunk):
        table.apply_changelog_batch(events[i : i + chunk])


def rebuilt(snapshots: TableMapping, partitions: set[int], local: Path | None = None) -> tuple[FraudScorer, DerivedCardIndex]:
    scorer, index = worker_scorer(snapshots, local)
    index.rebuild(partitions, scorer.card_index)
    return scorer, index


def since(scorer: FraudScorer) -> dict[str, list[tuple[int, str]]]:
    return {c: scorer.card_index.since(c, 0) for c in CARDS}


def test_recovered_from_the_changelog_the_memory_store_rebuilds_the_live_lists(tmp_path: Path) -> None:
    live = Worker(snapshot_table("memory://", tmp_path))
    live.run(days=4)  # two days past maturity: snapshots deleted (tombstones) as well as written
    assert any(v is None for _, _, v in live.changelog)
    expected = live.lists()
    assert all(len(entries) > 10 for entries in expected.values())

    table = snapshot_table("memory://", tmp_path, "cards-test-restarted")
    recover(table, live.changelog)
    scorer, index = rebuilt(table, set(range(PARTITIONS)))
    assert since(scorer) == expected
    assert sorted(index.by_partition) == [0, 1, 2] and len(index) == len(CARDS)

    # A partition that goes elsewhere leaves with its cards; one recovered here later comes with its own only.
    index.keep_only({0, 1}, scorer.card_index)
    assert {c for c in CARDS if scorer.card_index.since(c, 0)} == {c for c in CARDS if CARDS.index(c) % PARTITIONS in (0, 1)}
    index.rebuild({2}, scorer.card_index)
    assert since(scorer) == expected


def test_a_card_level_label_labels_the_same_authorizations_live_and_after_recovery(tmp_path: Path) -> None:
    live = Worker(snapshot_table("memory://", tmp_path))
    live.run(days=3)
    table = snapshot_table("memory://", tmp_path, "cards-test-restarted")
    recover(table, live.changelog)
    recovered, _ = rebuilt(table, set(range(PARTITIONS)))
    report = Label("c3", True, T0 + 3 * DAY, "customer_report", None, T0)  # since before the oldest still held
    live_out, recovered_out = live.scorer.label(report), recovered.label(report)
    assert [(e.tx_id, e.weight) for e in live_out.examples] == [(e.tx_id, e.weight) for e in recovered_out.examples]
    assert live_out.examples[0].weight == 1.0 and len(live_out.examples) > 10
    assert live_out.merchant_updates == recovered_out.merchant_updates


def test_rocksdb_keeps_its_local_data_across_a_restart_and_replays_only_the_tail(tmp_path: Path) -> None:
    live = Worker(snapshot_table("rocksdb://", tmp_path / "live"), local=tmp_path / "live-index")
    live.run(days=3)
    head = len(live.changelog)
    # The local databases as they are now: what a restart finds, with the changelog offsets persisted up to here.
    rocks = live.snapshots.rocksdb()
    for db in rocks._dbs.values():
        db.close()
    rocks._dbs.clear()
    shutil.copytree(tmp_path / "live", tmp_path / "restarted")
    for p in range(PARTITIONS):
        rocks._db_for_partition(p)  # open again, as faust keeps them while assigned
    live.run(days=1, start=3)  # more, tombstones included: the changelog's tail the restart replays
    tail = live.changelog[head:]
    assert any(v is None for _, _, v in tail)
    expected = live.lists()

    table = snapshot_table("rocksdb://", tmp_path / "restarted")
    for p in range(PARTITIONS):
        table.rocksdb()._db_for_partition(p)  # faust opens the assigned partitions' databases
    recover(table, tail)
    # The index in local RocksDB databases too (the worker's with RocksDB tables); an earlier run's are wiped.
    stale = tmp_path / "index" / "partition-1"
    stale.mkdir(parents=True)
    scorer, index = rebuilt(table, set(range(PARTITIONS)), local=tmp_path / "index")
    assert since(scorer) == expected
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["partition-0", "partition-1", "partition-2"]
    index.keep_only({0, 2}, scorer.card_index)  # partition 1 went elsewhere: its database with it
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["partition-0", "partition-2"]
    assert {c for c in CARDS if scorer.card_index.since(c, 0)} == {c for c in CARDS if CARDS.index(c) % PARTITIONS != 1}
