"""The worker's maturity queue on faust's real stores (RocksDB and memory), without a broker: the changelog
writes stay pending in the table mapping (nothing produces them here), where they are read back."""

from __future__ import annotations

import random

import faust
import pytest

from fraudstream.config import Settings
from fraudstream.contracts import Authorization, Label
from fraudstream.core.decision import Decision
from fraudstream.core.maturity import MemoryMaturityQueue
from fraudstream.core.scorer import FraudScorer
from fraudstream.core.snapshot import EncodedSnapshots, Snapshot
from fraudstream.stream.maturity import TableMaturityQueue, entry_key, learned_key, legacy_key
from fraudstream.stream.tables import RocksDBMemory, TableMapping

FEEDBACK, MATURITY = 1_000, 10_000
KW = {"partitions": 3, "key_type": bytes, "value_type": bytes, "default": None}


@pytest.fixture(params=["rocksdb://", "memory://"])
def app(request, tmp_path) -> faust.App:
    return faust.App(f"maturity-{request.param[:6]}", broker="kafka://127.0.0.1:1", store=request.param, datadir=str(tmp_path))


@pytest.fixture
def table(app) -> TableMapping:
    return TableMapping(app.Table("maturity", **KW))


@pytest.fixture
def snapshots(app) -> TableMapping:
    return TableMapping(app.Table("snapshots", **KW))


def queue_over(table: TableMapping, snapshots: TableMapping | None = None, owned=lambda: {0, 1, 2}, home=None,
               directory=None) -> TableMaturityQueue:
    """A queue over ``table``; its entries in local RocksDB databases under ``directory`` if the store is RocksDB."""
    local = table.rocksdb() is not None and directory is not None
    return TableMaturityQueue(table, owned, home, feedback_ms=FEEDBACK, maturity_ms=MATURITY, snapshots=snapshots,
                              rocksdb=RocksDBMemory(8 << 20) if local else None, directory=directory if local else None)


def snapshot(tx_id: str, ts: int) -> bytes:
    return Snapshot(Authorization(tx_id, "c1", "m1", 10.0, ts), {}, 0.1, "v1", Decision("none", 0.5, None), [], (),
                    False).to_bytes()


def add(queue: TableMaturityQueue, table: TableMapping, partition: int, ts: int, tx_id: str) -> None:
    """As the score stage does: the authorization's snapshot (when the queue derives from snapshots), then its entry."""
    table.partition = partition  # as the score stage routes the writes of the authorization it scores
    if queue.snapshots is not None:
        queue.snapshots.partition = partition
        queue.snapshots[tx_id] = snapshot(tx_id, ts)
    queue.add(ts, tx_id)


def written(table: TableMapping) -> list[tuple[int, str, bytes | None]]:
    """The changelog records pending, then forgotten as if produced: (partition, key, value or None)."""
    out = [(partition, k.decode(), table.get(k.decode())) for partition, k in table.pending]
    table.pending.clear()
    table.clear_routes()
    return out


def exact_len(queue, n: int) -> bool:
    """The memory store's length is exact; RocksDB's, an estimate once keys were deleted (a gauge's figure)."""
    return queue.table.rocksdb() is not None or len(queue) == n


def test_each_authorization_is_one_entry_handed_out_at_its_feedback_delay_and_removed_at_maturity(table, tmp_path):
    queue = queue_over(table, directory=tmp_path / "entries")
    for partition, ts, tx_id in [(0, 5_000, "a"), (1, 3_000, "b"), (2, 9_000, "c"), (1, 1_000, "d"), (0, 7_000, "e")]:
        add(queue, table, partition, ts, tx_id)
    assert written(table) == []  # the entries are derived from the snapshots: no record of their own
    assert len(queue) == 5 and queue.oldest() == 1_000 + FEEDBACK

    due = queue.pop_due(5_000 + FEEDBACK)  # ts <= now - feedback delay, the boundary included, in ts order
    assert due == (["d", "b", "a"], [], ())
    # No record per authorization: where learning stands, once per partition that handed entries out.
    assert written(table) == [(0, learned_key(0), b"5000"), (1, learned_key(1), b"5000")]
    assert queue.learned(5_000, "a") is queue.learned(1_000, "d") is True and not queue.learned(7_000, "e")
    assert queue.pop_due(5_000 + FEEDBACK) == ([], [], ())  # nothing twice
    assert queue.oldest() == 7_000 + FEEDBACK

    due = queue.pop_due(3_000 + MATURITY)
    assert (due.learn, due.matured) == (["e", "c"], ["d", "b"])
    assert written(table) == [(0, learned_key(0), b"12000"), (2, learned_key(2), b"12000")]  # maturity: nothing
    assert exact_len(queue, 3)
    assert queue.pop_due(9_000 + MATURITY).matured == ["a", "e", "c"]
    assert exact_len(queue, 0) and queue.oldest() is None


def test_an_authorization_scored_behind_where_learning_stands_is_handed_out_next(table):
    queue = queue_over(table)
    add(queue, table, 0, 1_000, "on-time")
    assert queue.pop_due(3_000).learn == ["on-time"]
    add(queue, table, 0, 1_500, "late")  # 1,500 <= 3,000 - 1,000: its feedback delay has passed already
    assert not queue.learned(1_500, "late") and queue.oldest() == 2_500
    assert queue.pop_due(2_800).learn == ["late"]  # even with an older now (batches' newest ts go back and forth)
    assert queue.learned(1_500, "late")
    add(queue, table, 0, 500, "very-late")  # past its maturity when handed out: learned, then removed, in one go
    assert queue.pop_due(10_500) == (["very-late"], ["very-late"], ())


def test_a_restarted_worker_hands_out_what_was_not_and_nothing_twice(table, snapshots, tmp_path):
    queue = queue_over(table, snapshots, lambda: {0}, directory=tmp_path / "before")
    for i in range(50):
        add(queue, table, 0, 100 * i, f"t{i:02d}")
    assert queue.pop_due(999 + FEEDBACK).learn == [f"t{i:02d}" for i in range(10)]
    # Another worker over the same tables goes on: its entries derived from the snapshots, where learning stands read.
    after = queue_over(table, snapshots, lambda: {0}, directory=tmp_path / "after")
    assert after.rebuild({0}) == 50
    assert after.learned(900, "t09") and not after.learned(1_000, "t10")
    assert after.pop_due(1_999 + FEEDBACK).learn == [f"t{i:02d}" for i in range(10, 20)]
    queue.clear()  # as after a rebalance that leaves the partition here: its entries stay
    assert queue.pop_due(2_999 + FEEDBACK).learn == [f"t{i:02d}" for i in range(20, 30)]
    assert queue.pop_due(3_999 + FEEDBACK).learn == [f"t{i:02d}" for i in range(30, 40)]
    # A crash before that batch's state reached its changelog: where learning stood before it is what is read back,
    # and the batch's entries are handed out again (its training examples were never produced).
    table[learned_key(0)] = b"2999"
    queue.clear()
    assert queue.pop_due(3_999 + FEEDBACK).learn == [f"t{i:02d}" for i in range(30, 40)]
    due = queue.pop_due(999 + MATURITY)
    assert (due.learn, due.matured) == ([f"t{i:02d}" for i in range(40, 50)], [f"t{i:02d}" for i in range(10)])
    for tx_id in due.matured:
        del snapshots[tx_id]  # as the scorer does at maturity
    queue.clear()
    add(queue, table, 0, 50, "late")  # older than what matured: still taken out in its turn
    assert queue.pop_due(999 + MATURITY) == (["late"], ["late"], ())
    del snapshots["late"]
    # Rebuilt again: what matured went with its snapshot, the rest comes out in its turn, nothing learned twice.
    again = queue_over(table, snapshots, lambda: {0})
    assert again.rebuild({0}) == 40
    assert again.pop_due(4_999 + MATURITY) == ([], [f"t{i:02d}" for i in range(10, 50)], ())


def test_a_partition_gone_elsewhere_is_dropped_and_one_not_yet_recovered_waits(table, snapshots):
    owned = {0, 1, 2}
    queue = queue_over(table, snapshots, lambda: owned)
    add(queue, table, 0, 1_000, "mine")
    add(queue, table, 2, 1_000, "moves-away")
    owned = {0, 1}  # partition 2 went to another worker
    queue.keep_only(owned)
    queue.clear()
    assert queue.pop_due(1_000 + MATURITY) == (["mine"], ["mine"], ())
    owned = {0, 1, 2}  # back, not recovered yet: nothing of it is handed out until it is rebuilt
    assert queue.pop_due(1_000 + MATURITY) == ([], [], ())
    assert queue.rebuild({2}) == 1 and queue.pop_due(1_000 + MATURITY) == (["moves-away"], ["moves-away"], ())


def test_an_entry_goes_to_its_snapshots_partition_whatever_batch_adds_it(table, snapshots):
    """An earlier release's entry is queued again when its feedback delay has passed, in a batch of any partition:
    it must stay with the snapshot, or another worker would own it."""
    homes = {"a": 2, "b": 1}
    queue = queue_over(table, home=homes.get)
    table.partition = 0  # the batch being processed is partition 0's
    queue.add(1_000, "a")
    queue.add(2_000, "b")
    queue.add(3_000, "unknown")  # no snapshot known: the current partition
    assert queue.pop_due(3_000 + FEEDBACK).learn == ["a", "b", "unknown"]
    assert written(table) == [(0, learned_key(0), b"3000"), (1, learned_key(1), b"3000"), (2, learned_key(2), b"3000")]


def test_an_earlier_releases_entries_come_out_once(table, snapshots):
    """A rolling upgrade: the entries an earlier release keyed by their due time are handed out as legacy (their
    snapshots are not derived twice); the previous release's ``@`` records are derived from their snapshots like any
    other, and deleted from the table at maturity."""
    queue = queue_over(table, snapshots)
    for partition, ts, due, tx_id in [(0, 1_000, 3_000, "old-b"), (1, 500, 2_000, "old-a")]:
        snapshots.partition = partition
        snapshots[tx_id] = snapshot(tx_id, ts)
        table.route(legacy_key(due, tx_id), partition)
        table[legacy_key(due, tx_id)] = b""
    snapshots.partition = 0
    snapshots["previous"] = snapshot("previous", 1_200)
    table.route(entry_key(1_200, "previous"), 0)
    table[entry_key(1_200, "previous")] = b""
    written(table)
    assert queue.rebuild({0, 1, 2}) == 1  # "previous"
    add(queue, table, 0, 1_500, "new")
    assert queue.oldest() == 2_000  # old-a, due then
    assert queue.pop_due(2_500) == (["previous", "new"], [], ("old-a",))
    assert written(table) == [(0, learned_key(0), b"1500"), (1, legacy_key(2_000, "old-a"), None)]
    assert queue.pop_due(3_000).legacy == ("old-b",)
    written(table)
    assert queue.pop_due(1_500 + MATURITY) == ([], ["previous", "new"], ())
    assert written(table) == [(0, entry_key(1_200, "previous"), None)]


# --- the scorer over the tables, as the worker runs it ---------------------------------------------------------------
DAY = 86_400_000
T0 = 1_700_000_000_000


def scorer_over(app: faust.App, settings: Settings) -> tuple[FraudScorer, TableMapping, TableMapping]:
    kw = {"partitions": 1, "key_type": bytes, "value_type": bytes, "default": None}
    snapshots = TableMapping(app.Table("snapshots", **kw))
    maturity = TableMapping(app.Table("maturity", **kw))
    queue = TableMaturityQueue(maturity, lambda: {0}, snapshots.stored_partition, snapshots=snapshots,
                               feedback_ms=int(settings.feedback_delay_days * DAY), maturity_ms=int(settings.maturity_days * DAY))
    queue.rebuild({0})  # as the worker does once faust has recovered the tables
    return FraudScorer(settings, snapshots=EncodedSnapshots(snapshots), pending=queue, learn_inline=False), snapshots, maturity


def test_the_worker_learns_what_the_backtest_learns_with_fewer_records(app):
    """Authorizations out of order (some scored days late) and batches whose newest ts goes back and forth: the table
    queue gives the memory queue's training examples, and writes per authorization its snapshot, nothing more until
    maturity (its entry is derived from the snapshot)."""
    s = Settings.load(env={}).with_overrides(maturity_days=6.0, feedback_delay_days=2.0, legit_sample_rate=0.3, partitions=1)
    worker, snapshot_table, maturity_table = scorer_over(app, s)
    backtest = FraudScorer(s, learn_inline=False)
    assert isinstance(backtest.pending, MemoryMaturityQueue)
    rng = random.Random(7)
    times = sorted(T0 + rng.randrange(20 * DAY) for _ in range(600))
    late = {7: 3 * DAY, 31: 8 * DAY}  # some scored after their feedback delay, a few after their maturity
    auths = [Authorization(f"t{i:03d}", f"c{i % 40}", "m1", 10.0, ts - late.get(i % 50, 0)) for i, ts in enumerate(times)]
    learned: dict[str, list] = {"worker": [], "backtest": []}
    records = 0
    for start in range(0, len(auths), 20):
        batch = auths[start : start + 20]
        for scorer, name in ((worker, "worker"), (backtest, "backtest")):
            for a in batch:
                scorer.process(a)
            learned[name] += [(e.tx_id, e.source) for e in scorer.mature(max(a.ts for a in batch))]
        fed = {k.decode() for _, k in maturity_table.pending} | {k.decode() for _, k in snapshot_table.pending}
        records += len(maturity_table.pending) + len(snapshot_table.pending)
        assert all(not k.startswith("~") or k == learned_key(0) for k in fed)
        maturity_table.pending.clear()
        snapshot_table.pending.clear()
    assert learned["worker"] == learned["backtest"] and len(learned["worker"]) > 100
    assert {src for _, src in learned["worker"]} == {"provisional", "maturity"}
    assert worker.counts == backtest.counts and worker.counts["matured"] > 300
    matured = worker.counts["matured"]
    # Scoring: a snapshot; maturity: its tombstone; where learning stands: at most once a batch.
    assert len(auths) + matured <= records <= len(auths) + matured + len(auths) // 20
    assert len(backtest.pending) == len(auths) - matured and exact_len(worker.pending, len(auths) - matured)


def test_snapshots_an_earlier_release_queued_and_flagged_are_learned_once(app):
    """A rolling upgrade: the maturity entries and snapshots an earlier release wrote (entries keyed by due time,
    snapshots flagged once learned for now) are learned and removed as that release would have."""
    s = Settings.load(env={}).with_overrides(maturity_days=61.0, feedback_delay_days=2.0, legit_sample_rate=1.0, partitions=1)
    scorer, snapshot_table, maturity_table = scorer_over(app, s)

    def earlier(tx_id: str, ts: int, provisional: bool) -> None:
        snap = Snapshot(Authorization(tx_id, "c1", "m1", 10.0, ts), {"amount": 10.0}, 0.1, "logistic-1",
                        Decision("none", 0.5, None), [], (), False, provisional=provisional)
        snapshot_table[tx_id] = snap.to_bytes()
        due = ts + (61 if provisional else 2) * DAY
        maturity_table[legacy_key(due, tx_id)] = b""

    earlier("waiting", T0, provisional=False)  # its feedback delay not yet passed at the upgrade
    earlier("learned", T0 - 3 * DAY, provisional=True)  # learned as legitimate for now, waiting for maturity
    assert isinstance(scorer.pending, TableMaturityQueue)
    assert scorer.pending.rebuild({0}) == 0  # as a worker of this release recovers the partition: due keys first
    assert [(e.tx_id, e.source) for e in scorer.mature(T0 + 2 * DAY)] == [("waiting", "provisional")]
    assert scorer.mature(T0 + 30 * DAY) == []  # queued again, by ts: not learned twice
    assert scorer.snapshots["waiting"].provisional and scorer.pending.learned(T0, "waiting")
    # A chargeback is learned as a correction of what was learned for now.
    outcome = scorer.label(Label("c1", True, T0 + 31 * DAY, "chargeback", "waiting"))
    assert [(e.tx_id, e.is_fraud) for e in outcome.examples] == [("waiting", True)] and scorer.counts["corrected"] == 1
    assert scorer.mature(T0 + 58 * DAY) == [] and scorer.counts["matured"] == 1  # "learned" matured, by its old key
    assert "learned" not in scorer.snapshots
    assert scorer.mature(T0 + 61 * DAY) == [] and scorer.counts["matured"] == 2 and len(scorer.snapshots) == 0
    assert exact_len(scorer.pending, 0)
