"""Faust tables seen as plain mappings of bytes, for the pure core.

The core batches its writes; a batch mixes partitions, so each write names
its changelog partition explicitly instead of relying on faust's "current
event".

Changelog records do not go through faust's producer (pure-Python aiokafka, one
asyncio future per record: most of the worker's time at saturation). A write
updates the table's store at once and marks the key pending; :class:`ChangelogWriter`
later produces each pending key once, with its value at that moment (None, a
tombstone, when deleted), through the worker's confluent-kafka producer: same
topic, partition, raw key and value bytes as faust's ``send_changelog``, so
faust's recovery reads them back unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

__all__ = ["ChangelogWriter", "RocksDBMemory", "TableMapping", "TaggedMapping"]

log = logging.getLogger("fraudstream.tables")


class TableMapping(MutableMapping[str, bytes]):
    """``str`` keys, ``bytes`` values, changelogged to the partition of the key's events."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.partition = 0  # partition of the event being processed
        self.partition_of: dict[str, int] = {}  # keys written later in the batch
        # (changelog partition, key) written since last produced, in order of first write: produced once each
        self.pending: dict[tuple[int, bytes], None] = {}
        self.writer: ChangelogWriter | None = None  # set by the ChangelogWriter that produces this table's records
        self.topic: str | None = None  # the changelog topic's name, once produced to
        self._rocks: bool | None = None  # whether the store is RocksDB; known once the store exists
        # Known with it, as faust creates a table's store once (`Collection.data`, a property): the store, and for
        # the memory store its own dicts of values and of keys' partitions, read and written here directly (its
        # Mapping.get raises and catches a KeyError for every missing key).
        self._store: Any = None
        self._plain: dict[bytes, bytes] | None = None
        self._key_partition: Any = None

    def route(self, key: str, partition: int) -> None:
        self.partition_of[key] = partition

    def rocksdb(self) -> Any:
        """The RocksDB store behind the table, or None for the memory store.

        faust's RocksDB store keeps one database per partition and finds it from faust's "current event", which a
        batch that mixes partitions does not have: the store is addressed by partition explicitly instead.
        """
        if self._rocks is None:
            from faust.stores.rocksdb import Store as RocksDBStore

            store = self._store = self.table.data
            self._rocks = isinstance(store, RocksDBStore)
            if self._rocks:
                self._key_partition = store._key_index
            else:
                plain = getattr(store, "data", None)
                self._plain = plain if type(plain) is dict else None
                self._key_partition = store._key_partition
        return self._store if self._rocks else None

    def _read(self, k: bytes) -> bytes | None:
        plain = self._plain
        if plain is not None:
            return plain.get(k)
        rocks = self.rocksdb()
        if rocks is None:
            value: bytes | None = (self._plain if self._plain is not None else self._store).get(k)  # (known now)
            return value
        found = rocks._get_bucket_for_key(k)  # the key's partition if known, else each open partition
        return None if found is None else found.value

    def stored_partition(self, key: str) -> int | None:
        """The partition the key's value is stored in, None if unknown (or absent)."""
        return self._locate(key.encode())[0]

    def _locate(self, k: bytes) -> tuple[int | None, bytes | None]:
        """The key's partition (None if unknown) and value (None if absent)."""
        rocks = self.rocksdb()
        if rocks is None:
            store = self.table.data
            return store._key_partition.get(k), store.get(k)
        found = rocks._get_bucket_for_key(k)  # the key's partition if known, else each open partition
        if found is None:
            return None, None
        return rocks._key_index.get(k), found.value  # the search indexed the key's partition

    def __getitem__(self, key: str) -> bytes:
        value = self._read(key.encode())
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._read(key.encode())
        return default if value is None else value

    def __setitem__(self, key: str, value: bytes) -> None:
        k = key.encode()
        partition = self.partition_of.get(key)
        if self._rocks is None:
            self.rocksdb()  # (the store, known from now on)
        rocks = self._store if self._rocks else None
        if partition is None:
            # A key already stored is rewritten where it is (a snapshot rewritten as its time passes, outside the
            # batch of its own partition), a new one goes to the partition of the event being processed.
            partition = self._key_partition.get(k)
            if partition is None:
                partition = self.partition
        # The memory store learns keys' partitions only from recovery; it then drops those of revoked partitions.
        self._key_partition[k] = partition
        if rocks is not None:
            rocks._db_for_partition(partition).put(k, value)
        elif self._plain is not None:
            self._plain[k] = value
        else:
            self._store[k] = value
        # The key's value is to reach its changelog partition: with the next `ChangelogWriter.send`, once however
        # many times the key is written before then.
        self.pending[(partition, k)] = None

    def __delitem__(self, key: str) -> None:
        k = key.encode()
        stored, value = self._locate(k)
        if value is None:
            raise KeyError(key)
        del self.table.data[k]
        # The tombstone goes where the value is: a key deleted from another partition's batch (a snapshot that
        # matured, a label's early entry) would otherwise come back from its own changelog partition at recovery.
        partition = self.partition_of.get(key, self.partition if stored is None else stored)
        if self.rocksdb() is None:
            self.table.data._key_partition.pop(k, None)
        self._send(partition, k)

    def _send(self, partition: int, k: bytes) -> None:
        """The key's value (None: deleted) is to reach its changelog partition: with the next `ChangelogWriter.send`,
        once however many times the key is written before then."""
        self.pending[(partition, k)] = None

    @property
    def changelog_topic(self) -> str:
        """The name faust gives the table's changelog (``{app id}-{table name}-changelog``), read by its recovery."""
        name: str = self.table.changelog_topic.get_topic_name()
        return name

    def pop(self, key: str, default: Any = None) -> Any:
        value = self.get(key)
        if value is None:
            return default
        del self[key]
        return value

    def values_of(self, partitions: set[int]) -> Iterator[tuple[int, bytes]]:
        """(partition, value) of every key stored in ``partitions``, as the store holds them now (memory store: what
        recovery applied and what was written since; RocksDB: the local database, what recovery added included)."""
        rocks = self.rocksdb()
        if rocks is None:
            store = self.table.data
            data = store.data
            for k, partition in list(store._key_partition.items()):
                if partition in partitions:
                    value = data.get(k)
                    if value is not None:
                        yield partition, value
            return
        for partition in sorted(partitions):
            db = rocks._dbs.get(partition)
            if db is not None:
                for _, value in rocks._visible_items(db):  # (faust's offset key left out)
                    yield partition, value

    def __iter__(self) -> Iterator[str]:
        for k in list(self.table.data.keys()):
            yield k.decode() if isinstance(k, bytes) else k

    def __len__(self) -> int:
        return len(self.table.data)  # RocksDB: reads every key; see `approx_len`

    def approx_len(self) -> int:
        """The number of keys: exact for the memory store, RocksDB's own estimate otherwise (counting would read
        every key of every partition)."""
        rocks = self.rocksdb()
        if rocks is None:
            return len(self.table.data)
        return sum(int(db.property_int_value("rocksdb.estimate-num-keys") or 0) for db in list(rocks._dbs.values()))

    def rocksdb_readers_memory(self) -> int:
        """Bytes RocksDB holds for this table's open files outside the shared cache (:class:`RocksDBMemory`): small,
        as their index and filter blocks are in the cache."""
        rocks = self.rocksdb()
        if rocks is None:
            return 0
        return sum(int(db.property_int_value("rocksdb.estimate-table-readers-mem") or 0) for db in list(rocks._dbs.values()))

    def clear_routes(self) -> None:
        self.partition_of.clear()

    def send_pending(self) -> None:
        """The writes so far are nobody's to await (the card state, written after its batch's outputs): produce
        them now. Without this call they go with the next ``ChangelogWriter.send`` (every flush, and a timer)."""
        if self.writer is not None and self.pending:
            self.writer.send()  # the free tables (this one is); the others wait for whoever orders them


class ChangelogWriter:
    """Produces the pending changelog records of ``tables`` with a confluent-kafka producer, and follows them.

    A record that fails (after the producer's own retries) is marked pending again, to be produced again with its
    key's value then. ``inflight`` counts records produced and not yet reported: zero with nothing pending means every
    write made so far is on its changelog. The offsets delivered are handed to the tables' stores by :meth:`persist`,
    as faust's own send callback did: only RocksDB keeps them, and its recovery then reads each changelog from there
    instead of from the start (without them it reads more, and ends the same).

    ``send()`` without tables produces the ``free`` ones only: those whose writes may reach their changelogs in any
    order. The others are produced by whoever orders them (``fraudstream.stream.flushing.Flusher.durable``).
    """

    def __init__(self, producer: Any, tables: Any, on_error: Callable[[TableMapping, int, Any], None] | None = None,
                 free: Any = None) -> None:
        self.producer = producer
        self.tables: tuple[TableMapping, ...] = tuple(tables)
        self.free: tuple[TableMapping, ...] = self.tables if free is None else tuple(free)
        self.on_error = on_error
        self.inflight = 0
        self.by_topic: dict[str, TableMapping] = {}
        self.delivered: dict[tuple[str, int], int] = {}  # newest offset per changelog partition, not yet persisted
        for t in self.tables:
            t.writer = self

    def pending(self, tables: Any = None) -> int:
        return sum(len(t.pending) for t in (self.tables if tables is None else tables))

    def send(self, tables: Any = None) -> int:
        """Produce every pending write of ``tables`` (default: the free ones); returns how many. A full local queue
        leaves the rest pending."""
        produce, delivered, n = self.producer.produce, self._delivered, 0
        for t in self.free if tables is None else tables:
            if not t.pending:
                continue
            topic = t.topic
            if topic is None:
                topic = t.topic = t.changelog_topic
                self.by_topic[topic] = t
            read, pending = t._read, t.pending
            t.pending = {}
            items = iter(pending)
            try:
                for partition, k in items:
                    produce(topic, read(k), k, partition, on_delivery=delivered)
                    n += 1
            except BaseException as exc:  # this write and the rest stay pending
                t.pending = {(partition, k): None, **dict.fromkeys(items), **t.pending}
                if isinstance(exc, BufferError):
                    break  # the producer's queue is full: until the next send
                self.inflight += n
                raise
        self.inflight += n
        return n

    def _delivered(self, err: Any, msg: Any) -> None:
        self.inflight -= 1
        topic = msg.topic()
        if err is not None:
            t = self.by_topic[topic]
            t.pending[(msg.partition(), msg.key())] = None
            if self.on_error is not None:
                self.on_error(t, msg.partition(), err)
            return
        where = (topic, msg.partition())
        if msg.offset() > self.delivered.get(where, -1):
            self.delivered[where] = msg.offset()

    def persist(self) -> None:
        """Give the stores the newest changelog offsets delivered (what faust's ``Collection._on_changelog_sent`` did)."""
        if not self.delivered:
            return
        from faust.types import TP

        delivered, self.delivered = self.delivered, {}
        for (topic, partition), offset in delivered.items():
            rocks = self.by_topic[topic].rocksdb()
            if rocks is None or partition not in rocks._dbs:
                continue  # the memory store keeps no offsets; a partition revoked since is not reopened for this
            try:
                rocks.set_persisted_offset(TP(topic, partition), offset)
            except Exception as exc:  # a store closed by a rebalance: its recovery then reads a little more
                log.debug("persisted offset of %s[%d] not kept: %s", topic, partition, exc)


class TaggedMapping(MutableMapping[str, bytes]):
    """A :class:`TableMapping` whose every value carries a tag after it, so that both reach the changelog in one
    record: a state and the offsets it includes can never be restored one without the other.

    The core sees the values without their tags; ``tag_of(key)`` gives the tag to write with a key's value (a
    stage may set it: ``MerchantStage`` writes its merchants' tags). Stored: the value, the tag, then the tag's
    length (4 bytes, little-endian).
    """

    def __init__(self, inner: TableMapping, tag_of: Callable[[str], bytes]) -> None:
        self.inner = inner
        self.tag_of = tag_of

    def tag(self, key: str) -> bytes | None:
        raw = self.inner._read(key.encode())
        return None if raw is None else raw[-4 - int.from_bytes(raw[-4:], "little") : -4]

    def get(self, key: str, default: Any = None) -> Any:
        raw = self.inner._read(key.encode())
        return default if raw is None else raw[: -4 - int.from_bytes(raw[-4:], "little")]

    def __getitem__(self, key: str) -> bytes:
        raw = self.inner._read(key.encode())
        if raw is None:
            raise KeyError(key)
        return raw[: -4 - int.from_bytes(raw[-4:], "little")]

    def __setitem__(self, key: str, value: bytes) -> None:
        tag = self.tag_of(key)
        self.inner[key] = b"".join((value, tag, len(tag).to_bytes(4, "little")))

    def __delitem__(self, key: str) -> None:
        del self.inner[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)



class RocksDBMemory:
    """One memory bound for every RocksDB database of a worker: one block cache, with the memtables charged to it.

    faust opens a database per table and partition, each with its own cache and write buffers, so a worker's
    RocksDB memory followed the partitions it happened to own: 8 tables x 12 partitions x 16 MB = 1.5 GB for a
    worker that took over all of them, a third of that for one of three. Here every database shares one LRU block
    cache of ``total_bytes``; a write buffer manager counts the memtables (at most half of it) in that cache, and
    the index and filter blocks of every file live there too (``faust_patches.share_rocksdb_memory``), so what the worker
    holds is ``total_bytes`` whatever it owns (as Kafka Streams' bounded-memory RocksDB configuration does). The
    cache reaches its bound once the worker has read that much, and stays there.

    >>> memory = RocksDBMemory(16 << 20)
    >>> memory.table_options()["block_cache_size"] == 16 << 20
    True
    >>> 0 <= memory.usage() <= memory.total_bytes
    True
    """

    def __init__(self, total_bytes: int) -> None:
        import rocksdict

        self.total_bytes = total_bytes
        self.cache = rocksdict.Cache(total_bytes)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(total_bytes // 2, False, self.cache)

    def table_options(self) -> dict[str, Any]:
        """faust's RocksDB options for a table (``app.Table(options=...)``). A database flushes its memtable at an
        eighth of the bound, or earlier when all of them together reach half of it."""
        return {"write_buffer_size": self.total_bytes // 8, "max_write_buffer_number": 2, "block_cache_size": self.total_bytes,
                "block_cache_compressed_size": 0, "target_file_size_base": self.total_bytes // 8, "fraudstream_memory": self}

    def usage(self) -> int:
        """Bytes in the shared cache: data, index and filter blocks, and the memtables charged to it."""
        return int(self.cache.get_usage())
