"""The worker's maturity queue on faust's real stores (RocksDB and memory), without a broker: the changelog
writes stay pending in the table mapping (nothing produces them here), where they are read back."""

from __future__ import annotations

import faust
import pytest

from fraudstream.stream.maturity import TableMaturityQueue
from fraudstream.stream.tables import TableMapping


@pytest.fixture(params=["rocksdb://", "memory://"])
def table(request, tmp_path) -> TableMapping:
    app = faust.App(f"maturity-{request.param[:6]}", broker="kafka://127.0.0.1:1", store=request.param, datadir=str(tmp_path))
    return TableMapping(app.Table("maturity", partitions=3, key_type=bytes, value_type=bytes, default=None))


def add(queue: TableMaturityQueue, table: TableMapping, partition: int, ts: int, tx_id: str) -> None:
    table.partition = partition  # as the score stage routes the writes of the authorization it scores
    queue.add(ts, tx_id)


def tombstones(table: TableMapping) -> list[tuple[int, bytes]]:
    return [(partition, k) for partition, k in table.pending if table.get(k.decode()) is None]


def test_due_entries_come_out_in_event_time_order_across_partitions(table):
    queue = TableMaturityQueue(table, lambda: {0, 1, 2})
    for partition, ts, tx_id in [(0, 5_000, "a"), (1, 3_000, "b"), (2, 9_000, "c"), (1, 1_000, "d"), (0, 7_000, "e")]:
        add(queue, table, partition, ts, tx_id)
    assert len(queue) == 5 and queue.oldest() == 1_000
    table.pending.clear()

    assert queue.pop_due(5_000) == ["d", "b", "a"]  # ts <= cutoff, the boundary included
    # Each deletion's tombstone goes to the partition the entry was written to, not the current one.
    assert tombstones(table) == [(1, b"0000000001000:d"), (1, b"0000000003000:b"), (0, b"0000000005000:a")]
    assert queue.oldest() == 7_000
    assert queue.pop_due(6_999) == []
    assert queue.pop_due(10_000) == ["e", "c"]
    assert len(queue) == 0 and queue.oldest() is None


def test_entries_of_partitions_not_owned_stay(table):
    owned = {0, 1, 2}
    queue = TableMaturityQueue(table, lambda: owned)
    add(queue, table, 0, 1_000, "mine")
    add(queue, table, 2, 1_000, "moves-away")
    owned = {0, 1}  # partition 2 went to another worker (this one may keep it as a standby)
    queue.clear()  # as after a rebalance
    assert queue.pop_due(2_000) == ["mine"]
    assert table.get("0000000001000:moves-away") == b""


def test_the_queue_is_the_table_a_new_worker_continues_from(table):
    queue = TableMaturityQueue(table, lambda: {0})
    for i in range(50):
        add(queue, table, 0, 1_000 * i, f"t{i:02d}")
    assert queue.pop_due(9_000) == [f"t{i:02d}" for i in range(10)]
    # Nothing of the queue is kept in the object but read positions: another one over the same table goes on.
    after = TableMaturityQueue(table, lambda: {0})
    assert after.pop_due(19_000) == [f"t{i:02d}" for i in range(10, 20)]
    queue.clear()
    assert queue.pop_due(29_000) == [f"t{i:02d}" for i in range(20, 30)]
    add(queue, table, 0, 500, "late")  # scored late: older than what was taken out, still taken out in its turn
    assert queue.pop_due(29_000) == ["late"]


def test_an_entry_goes_to_its_snapshots_partition_whatever_batch_adds_it(table):
    """Maturity adds an authorization's entry again when its feedback delay has passed, in a batch of any partition:
    it must stay with the snapshot (and a rewritten key where it is stored), or another worker would own it."""
    homes = {"a": 2, "b": 1}
    queue = TableMaturityQueue(table, lambda: {0, 1, 2}, home=homes.get)
    table.partition = 0  # the batch being processed is partition 0's
    queue.add(1_000, "a")
    queue.add(2_000, "b")
    queue.add(3_000, "unknown")  # no snapshot known: the current partition
    assert [p for p, _ in table.pending] == [2, 1, 0]
    table.clear_routes()
    table.pending.clear()
    table.partition = 1
    table["0000000001000:a"] = b"again"  # rewritten from another partition's batch: stays in partition 2
    assert list(table.pending) == [(2, b"0000000001000:a")] and table.stored_partition("0000000001000:a") == 2
