"""Every RocksDB database of a worker shares one memory bound: index and filter blocks and memtables included."""

from __future__ import annotations

from pathlib import Path

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from fraudstream.stream.faust_patches import share_rocksdb_memory
from fraudstream.stream.tables import RocksDBMemory

KEYS = 60_000


def _fill(db: rocksdict.Rdict, keys: int = KEYS, value: bytes = b"x" * 64) -> None:
    for i in range(keys):
        db[b"card-%08d" % i] = value
    db.flush()  # into a table file: its index and filter now exist
    for i in range(0, keys, 97):
        assert db[b"card-%08d" % i] == value


def _memory(db: rocksdict.Rdict) -> dict[str, int]:
    return {p: int(db.property_int_value(f"rocksdb.{p}") or 0) for p in ("estimate-table-readers-mem", "block-cache-usage")}


class FaustOptions(RocksDBOptions):
    """faust's own options, whether or not the worker's have been applied in this process already."""

    def as_options(self) -> rocksdict.Options:
        faust_as_options = getattr(RocksDBOptions.as_options, "faust_as_options", RocksDBOptions.as_options)
        return faust_as_options(self)


def test_index_and_filter_blocks_are_counted_in_the_block_cache(tmp_path: Path) -> None:
    settings = {"write_buffer_size": 1 << 20, "block_cache_size": 8 << 20, "block_cache_compressed_size": 0,
                "use_rocksdict": True}
    # faust's own options: the index and filter live outside the cache, in the table readers
    outside = FaustOptions(**settings).open(tmp_path / "faust")
    _fill(outside)
    before = _memory(outside)
    outside.close()
    assert before["estimate-table-readers-mem"] > 10_000, before

    share_rocksdb_memory()
    share_rocksdb_memory()  # idempotent: each app instance calls it
    memory = RocksDBMemory(8 << 20)
    inside = RocksDBOptions(**{**memory.table_options(), "use_rocksdict": True}).open(tmp_path / "bounded")
    _fill(inside)
    after = _memory(inside)
    inside.close()
    assert after["estimate-table-readers-mem"] < before["estimate-table-readers-mem"] / 4, (before, after)
    assert after["block-cache-usage"] > before["block-cache-usage"], (before, after)


def test_every_database_shares_one_bound_whatever_the_partitions(tmp_path: Path) -> None:
    share_rocksdb_memory()
    memory = RocksDBMemory(8 << 20)
    options = RocksDBOptions(**{**memory.table_options(), "use_rocksdict": True})
    dbs = [options.open(tmp_path / f"table-{n}") for n in range(12)]  # a worker that owns 12 table partitions
    try:
        value = b"v" * 200
        for db in dbs:
            for i in range(3_000):  # in the memtable: charged to the shared cache
                db[b"card-%08d" % i] = value
        assert memory.write_buffers.get_usage() > 0
        assert memory.usage() >= memory.write_buffers.get_usage()
        for db in dbs:
            _fill(db, 20_000, value)  # 4 MB each, 48 MB in all
        for db in dbs:
            assert sum(1 for _ in db.values()) == 20_000  # every block read through the cache
        usages = {_memory(db)["block-cache-usage"] for db in dbs}
        assert len(usages) == 1, usages  # one cache, seen from every database
        # Each database alone would have filled a cache of its own; together they fill the one bound and stay in it.
        assert memory.total_bytes * 0.75 < memory.usage() <= memory.total_bytes * 1.05, memory.usage()
        assert sum(_memory(db)["estimate-table-readers-mem"] for db in dbs) < memory.total_bytes / 16
    finally:
        for db in dbs:
            db.close()


def test_tables_without_the_shared_memory_keep_fausts_options(tmp_path: Path) -> None:
    share_rocksdb_memory()
    plain = RocksDBOptions(write_buffer_size=1 << 20, block_cache_size=1 << 20, use_rocksdict=True).open(tmp_path / "plain")
    _fill(plain, 20_000)
    assert _memory(plain)["estimate-table-readers-mem"] > 10_000  # faust's: index and filter outside the cache
    plain.close()
