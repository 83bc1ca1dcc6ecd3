"""RocksDB's index and filter blocks are held in the block cache, inside the bound the settings give it."""

from __future__ import annotations

from pathlib import Path

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from fraudstream.stream.tables import keep_rocksdb_indexes_in_cache

KEYS = 60_000


def _fill(db: rocksdict.Rdict) -> None:
    for i in range(KEYS):
        db[b"card-%08d" % i] = b"x" * 64
    db.flush()  # into a table file: its index and filter now exist
    for i in range(0, KEYS, 97):
        assert db[b"card-%08d" % i] == b"x" * 64


def _memory(db: rocksdict.Rdict) -> dict[str, int]:
    return {p: int(db.property_int_value(f"rocksdb.{p}") or 0) for p in ("estimate-table-readers-mem", "block-cache-usage")}


class FaustOptions(RocksDBOptions):
    """faust's own options, whether or not the worker's have been applied in this process already."""

    def as_options(self) -> rocksdict.Options:
        faust_as_options = getattr(RocksDBOptions.as_options, "faust_as_options", RocksDBOptions.as_options)
        return faust_as_options(self)


def _open(options: RocksDBOptions, path: Path) -> rocksdict.Rdict:
    db = options.open(path)
    _fill(db)
    return db


def test_index_and_filter_blocks_are_counted_in_the_block_cache(tmp_path: Path) -> None:
    settings = {"write_buffer_size": 1 << 20, "block_cache_size": 8 << 20, "block_cache_compressed_size": 0,
                "use_rocksdict": True}
    # faust's own options: the index and filter live outside the cache, in the table readers
    outside = _open(FaustOptions(**settings), tmp_path / "faust")
    before = _memory(outside)
    outside.close()
    assert before["estimate-table-readers-mem"] > 10_000, before

    keep_rocksdb_indexes_in_cache()
    keep_rocksdb_indexes_in_cache()  # idempotent: each app instance calls it
    inside = _open(RocksDBOptions(**settings), tmp_path / "bounded")
    after = _memory(inside)
    inside.close()
    assert after["estimate-table-readers-mem"] < before["estimate-table-readers-mem"] / 4, (before, after)
    assert after["block-cache-usage"] > before["block-cache-usage"], (before, after)
