"""Every patch of faust (and of the aiokafka underneath it) the worker needs, in one place, applied by :func:`apply`.

Each works around one faust behaviour; the long stories are in the docstrings below and in
:mod:`fraudstream.stream.delivery` (the holes in faust's at-least-once delivery, numbered 1 to 7 there).

=====================================================  ==============================================================
Patched                                                faust behaviour it works around
=====================================================  ==============================================================
``Consumer.getmany``                                   hands agents records past offsets it skipped after a rebalance
``Consumer.seek``                                      forgets where a sought partition must resume (for getmany)
``Consumer.perform_seek``                              reads stale read offsets; leaves never-committed partitions unsought
``Consumer.on_partitions_revoked``                     keeps committing a revoked partition's late acknowledgements
``Consumer._new_offset``                               commits past an unacknowledged head (off by one)
``ThreadDelegateConsumer._seek``                       seeks from the main thread while the fetcher thread reads
``AIOKafkaConsumerThread._highwaters``                 trusts end offsets the embedded broker misreports (recovery)
``AIOKafkaConsumerThread._create_worker_consumer``     hard-codes a 1500 ms fetch wait, no setting
``aiokafka Fetcher._proc_fetch_request``               never backs off that wait while idle
``RocksDBOptions.as_options``                          a cache per table partition; index and filters outside it
``app.producer.flush``                                 flushes only its own producer before a commit, not our tables'
=====================================================  ==============================================================

Every patch but the last is of a class, so it applies to every app of the process, once; each is idempotent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from fraudstream.stream.delivery import _ASKED, _BUSY, _GONE, _HELD, _NEXT, _REVOKED

if TYPE_CHECKING:
    from fraudstream.stream.tables import RocksDBMemory

__all__ = ["apply", "flush_with_faust", "keep_stream_offsets_contiguous", "share_rocksdb_memory", "use_fetch_wait",
           "use_true_end_offsets"]

log = logging.getLogger("fraudstream.worker")


def apply(app: Any, client: dict[str, Any], guarded_topics: Iterable[str], fetch_wait_ms: int, fetch_wait_idle_ms: int,
          rocksdb: bool, after_faust_flush: Callable[[], Awaitable[None]]) -> None:
    """Patch faust for one worker app: ``client`` is the confluent-kafka client configuration (to fetch true end
    offsets), ``guarded_topics`` the input topics no offset of which may be stepped over, ``rocksdb`` whether the
    tables are RocksDB stores (on one shared memory bound), ``after_faust_flush`` what must be on the broker whenever
    faust flushes before it commits (the table writes that may go in any order)."""
    use_true_end_offsets(client)
    keep_stream_offsets_contiguous(guarded_topics)
    use_fetch_wait(app, fetch_wait_ms, fetch_wait_idle_ms)
    if rocksdb:
        share_rocksdb_memory()
    flush_with_faust(app, after_faust_flush)


def flush_with_faust(app: Any, then: Callable[[], Awaitable[None]]) -> None:
    """faust flushes its producer before it commits offsets, and when partitions are revoked or it stops: ``then``
    runs after each of those flushes, so the table writes (produced by our own producer, see
    ``fraudstream.stream.tables.ChangelogWriter``) are on their changelogs by then, as they were when faust's own
    producer carried them."""
    producer = app.producer
    faust_flush = producer.flush

    async def flush() -> None:
        await faust_flush()
        await then()

    producer.flush = flush


#: Seeking back this many times in a row to the same offset without getting it (the broker's log start moved past
#: it: retention) accepts the jump.
MAX_SEEKS_BACK = 5

#: A partition whose next offset to commit is still not acknowledged this long after later ones were (faust dropped
#: it on the way to its agent) is read again from that offset.
HEAD_WAIT_S = 10.0


#: How long the main loop waits for a seek run in the consumer thread (it waits for one step of that thread's loop).
SEEK_TIMEOUT_S = 10.0


class _Positions:
    """Per partition of a guarded topic: the next offset expected, where reading (re)started (the first offset that
    must be acknowledged before anything is committed, while nothing is), and the last seek back (offset, times)."""

    def __init__(self) -> None:
        self.expected: dict[Any, int] = {}
        self.start: dict[Any, int] = {}
        self.seeks: dict[Any, tuple[int, int]] = {}
        self.waiting: dict[Any, tuple[int, float]] = {}  # head not acknowledged while later offsets are: since when
        self.behind: dict[Any, tuple[int, float]] = {}  # fetched past the next offset its agent waits for: since when

    def forget(self, tp: Any) -> None:
        self.expected.pop(tp, None)
        self.start.pop(tp, None)
        self.seeks.pop(tp, None)
        self.waiting.pop(tp, None)
        self.behind.pop(tp, None)


def keep_stream_offsets_contiguous(topics: Iterable[str]) -> None:
    """Patch faust's consumer so that no offset of ``topics`` is ever stepped over or committed unprocessed (module
    doc, 1 and 2). These topics must be neither compacted nor transactional: their offsets never legitimately jump.

    - A record past the next expected offset of its partition is held back, with the rest of that partition's
      records of the batch, and the partition is sought back to the expected offset: every message reaches its
      agent, in order.
    - After a rebalance, a partition without a committed offset is read from its beginning (the consumer's
      ``auto.offset.reset`` is earliest), not from wherever the previous assignment had fetched to.
    - Nothing is committed while the first offset to commit is not acknowledged; if it still is not
      ``HEAD_WAIT_S`` after later offsets were (lost on its way to the agent, which faust can do around a
      rebalance), the partition is read again from it.
    - A partition fetched past the offset its agent waits for next (``delivery._NEXT``), while that agent waits for
      a batch, for ``HEAD_WAIT_S`` (faust's stream skipped that offset and every one after it), is read again from
      it (delivery module doc, 8). Where reading starts, the committed offset, is where its agent starts too.

    Changelog topics (compacted, read by table recovery) are not touched.
    """
    from faust.transport.consumer import Consumer, ThreadDelegateConsumer, ensure_TP

    existing = getattr(Consumer.getmany, "_fraudstream_topics", None)
    if existing is not None:
        existing.update(topics)
        return
    guarded = set(topics)
    getmany, seek = Consumer.getmany, Consumer.seek
    on_revoked, new_offset = Consumer.on_partitions_revoked, Consumer._new_offset

    def positions(consumer: Any) -> _Positions:
        p = consumer.__dict__.get("_fraudstream_positions")
        if p is None:
            p = consumer.__dict__["_fraudstream_positions"] = _Positions()
        return p

    def read_again_the_lost(self: Any, pos: _Positions) -> None:
        # Fetched (handed to faust's streams) past the offset an agent waits for next, while that agent waits for
        # its next batch, for HEAD_WAIT_S: faust's stream skipped it, and every one after it (delivery module doc, 8).
        now = time.monotonic()
        for tp, fetched in pos.expected.items():
            waited = _NEXT.get((tp.topic, tp.partition))
            if waited is None or fetched <= waited or _BUSY.get(tp.topic):
                pos.behind.pop(tp, None)
                continue
            since = pos.behind.get(tp)
            if since is None or since[0] != waited:
                pos.behind[tp] = (waited, now)
            elif now - since[1] > HEAD_WAIT_S:
                log.warning("%s[%d]: offset %d fetched %.0fs ago and not processed; reading again from it", tp.topic,
                            tp.partition, waited, now - since[1])
                pos.behind[tp] = (waited, now)
                pos.expected[tp] = waited
                asyncio.ensure_future(seek_again(self, tp, waited))

    async def guarded_getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        pos = positions(self)
        read_again_the_lost(self, pos)
        held: set[Any] = set()
        async for tp, message in getmany(self, timeout):
            if tp.topic not in guarded:
                yield tp, message
                continue
            if tp in held:
                continue
            nxt, offset = pos.expected.get(tp), message.offset
            if nxt is not None and offset > nxt:
                last, n = pos.seeks.get(tp, (None, 0))
                n = n + 1 if last == nxt else 1
                if n <= MAX_SEEKS_BACK:
                    pos.seeks[tp] = (nxt, n)
                    held.add(tp)
                    log.info("%s[%d]: offset %d came where %d was next; reading again from %d", tp.topic, tp.partition,
                             offset, nxt, nxt)
                    _ASKED[(tp.topic, tp.partition)] = (nxt, time.monotonic())  # its agent need not ask again
                    await seek(self, tp, nxt)
                    continue
                log.error("%s[%d]: offsets %d..%d are gone from the broker; carrying on from %d", tp.topic,
                          tp.partition, nxt, offset - 1, offset)
                _GONE[(tp.topic, tp.partition)] = (nxt, offset)  # its agent does not wait for them either
            read = self._read_offset.get(tp)
            if read is None or offset >= read:  # what faust delivers (it drops what it has read already)
                pos.seeks.pop(tp, None)
                pos.expected[tp] = offset + 1
                message.incref()  # released by `batches` once its agent has finished the batch (module doc, 7)
            yield tp, message

    async def guarded_seek(self: Any, partition: Any, offset: int) -> None:
        await seek(self, partition, offset)
        positions(self).expected[partition] = offset

    async def guarded_perform_seek(self: Any) -> None:
        # faust's perform_seek, keeping the committed offsets it seeks to: its read offsets, looked at afterwards,
        # may already have moved on with records fetched before the seek.
        committed_offsets = await self.seek_to_committed()
        self._read_offset.update({tp: o if o is not None and o >= 0 else None for tp, o in committed_offsets.items()})
        self._committed_offset.update({ensure_TP(tp): o or None for tp, o in committed_offsets.items() if o is not None})
        pos = positions(self)
        uncommitted = []
        for tp in self.assignment():
            if tp.topic not in guarded:
                continue
            committed = committed_offsets.get(tp)
            if committed is None or committed < 0:
                uncommitted.append(tp)
            else:
                pos.expected[tp] = pos.start[tp] = _NEXT[(tp.topic, tp.partition)] = committed
                _ASKED[(tp.topic, tp.partition)] = (committed, time.monotonic())  # read from there: no need to ask
                pos.seeks.pop(tp, None)
        if uncommitted:
            for tp, offset in (await self.earliest_offsets(*uncommitted)).items():
                log.info("%s[%d]: no committed offset; reading from its beginning (%d)", tp.topic, tp.partition, offset)
                await seek(self, tp, offset)
                pos.expected[tp] = pos.start[tp] = _NEXT[(tp.topic, tp.partition)] = offset
                _ASKED[(tp.topic, tp.partition)] = (offset, time.monotonic())
                pos.seeks.pop(tp, None)

    async def guarded_revoked(self: Any, revoked: Any) -> None:
        pos = positions(self)
        for tp in revoked:
            pos.forget(tp)
        gone = {(tp.topic, tp.partition) for tp in revoked}
        _HELD.difference_update([h for h in _HELD if h[:2] in gone])
        for key in gone:  # where its agent resumes is known again at the next seek to the committed offsets
            _NEXT.pop(key, None)
            _ASKED.pop(key, None)
        generation = self.app.consumer_generation_id  # the one ending: the next assignment comes with a new one
        _REVOKED.update({(tp.topic, tp.partition): generation for tp in revoked if tp.topic in guarded})
        await on_revoked(self, revoked)

    async def seek_again(self: Any, tp: Any, offset: int) -> None:
        try:
            await seek(self, tp, offset)
        except Exception as exc:  # revoked since (a rebalance): its next owner reads it from the committed offset
            log.info("%s[%d]: not read again from %d: %s", tp.topic, tp.partition, offset, exc)

    def guarded_new_offset(self: Any, tp: Any) -> int | None:
        if tp.topic in guarded:
            acked = self._acked[tp]
            head = self._committed_offset[tp]
            if head is None:
                head = positions(self).start.get(tp)
            if head is None:
                # Revoked, and not sought since (module doc, 5): acknowledgements still come in, from events fetched
                # before the revocation, and from where they start nothing says what came before them.
                return None
            if acked and min(acked) > head:
                if (tp.topic, tp.partition, head) in _HELD:
                    return None  # waiting in its agent, on purpose
                pos, now = positions(self), time.monotonic()
                since = pos.waiting.get(tp)
                if since is None or since[0] != head:
                    pos.waiting[tp] = (head, now)
                elif now - since[1] > HEAD_WAIT_S:
                    log.warning("%s[%d]: offset %d still not processed %.0fs after later ones; reading again from it",
                                tp.topic, tp.partition, head, now - since[1])
                    pos.waiting[tp] = (head, now)
                    pos.expected[tp] = head
                    asyncio.ensure_future(seek_again(self, tp, head))
                return None  # the next offset to commit is not acknowledged yet
        result: int | None = new_offset(self, tp)
        return result

    async def seek_in_consumer_thread(self: Any, partition: Any, offset: int) -> None:
        # faust calls aiokafka's seek from the main thread, while the consumer thread may be iterating over the
        # fetcher's buffered records, from which the seek deletes the partition's: a "KeyError: TopicPartition" then
        # crashed the fetcher. So the seek runs in the consumer thread's loop, between two of its steps, and the main
        # loop waits for it without yielding: to every coroutine of the main loop the seek is as instant as faust's,
        # so no commit or acknowledgement can come between asking for it and its taking effect.
        thread = self._thread
        loop = thread.thread_loop
        if (not thread._thread_started.is_set() or thread.should_stop or not loop.is_running()
                or threading.get_ident() == getattr(thread._thread, "ident", None)):
            thread.seek(partition, offset)
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            if not done.set_running_or_notify_cancel():
                return  # the main loop gave up waiting and sought itself
            try:
                thread.seek(partition, offset)
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)

        loop.call_soon_threadsafe(run)
        try:
            done.result(timeout=SEEK_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            if not done.cancel():  # it is running now: wait for it
                done.result()
                return
            log.warning("%s[%d]: the consumer thread did not take a seek to %d within %.0fs; seeking from the main "
                        "thread", partition.topic, partition.partition, offset, SEEK_TIMEOUT_S)
            thread.seek(partition, offset)

    guarded_getmany._fraudstream_topics = guarded  # type: ignore[attr-defined]
    ThreadDelegateConsumer._seek = seek_in_consumer_thread  # type: ignore[method-assign]
    Consumer.getmany = guarded_getmany  # type: ignore[method-assign]
    Consumer.seek = guarded_seek  # type: ignore[method-assign]
    Consumer.perform_seek = guarded_perform_seek  # type: ignore[method-assign]
    Consumer.on_partitions_revoked = guarded_revoked  # type: ignore[method-assign]
    Consumer._new_offset = guarded_new_offset  # type: ignore[method-assign]


def use_true_end_offsets(client: dict[str, Any]) -> None:
    """Make faust's recovery read each changelog to its real end.

    faust recovers a table by reading its changelog up to the end offset the broker reports (ListOffsets). The
    embedded broker reports the base offset of the last record batch plus one, so the records after the first one
    of a multi-record batch (a batch flushes many keys at once) were never read back: recovery returned stale
    state. For every partition reported non-empty, the end is found by fetching from there until end of partition.
    Harmless on Apache Kafka, where both agree.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread._highwaters
    if getattr(original, "_fraudstream", False):
        return

    async def _highwaters(self: Any, partitions: Any) -> Any:
        reported = dict(await original(self, partitions))
        suspect = {tp: hw for tp, hw in reported.items() if hw and hw > 0}
        if suspect:
            try:
                true = await asyncio.get_running_loop().run_in_executor(None, _fetched_ends, client, suspect)
            except Exception as exc:  # fall back to what the broker said
                log.warning("could not check end offsets by fetching: %s", exc)
            else:
                for tp, end in true.items():
                    reported[tp] = max(reported[tp], end)
        return reported

    _highwaters._fraudstream = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]


def use_fetch_wait(app: Any, wait_ms: int, idle_wait_ms: int) -> None:
    """Make faust's consumer wait ``wait_ms`` for data in a fetch while data flows, instead of the 1500 ms faust
    hard-codes, and back off to ``idle_wait_ms`` while it does not.

    faust has no setting for aiokafka's ``fetch_max_wait_ms``. Its consumer has one fetch in flight per broker for
    all its partitions, and the embedded broker answers a fetch that found no data only when the wait is over, even
    if data arrives meanwhile: each hop of the pipeline (authorizations, by merchant, enriched) waited up to 1.5 s.
    A short wait costs an empty fetch per wait while idle (10 ms: about 0.1 core of the worker and 0.15 of the
    embedded broker), so after each empty answer the wait doubles, up to ``idle_wait_ms``, and the first answer
    with data brings it back to ``wait_ms``: the first hop after a quiet spell waits at most ``idle_wait_ms``, the
    hops behind it ``wait_ms``. (Apache Kafka answers as soon as data arrives; there only idle fetches change.)

    The waits are set on the consumer before it starts (aiokafka builds its fetcher then, which reads
    ``_fetch_max_wait_ms`` for every request) and marked on its subscription state, which the fetcher keeps.
    """
    from aiokafka.consumer.fetcher import Fetcher
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    app.fraudstream_fetch_wait = (int(wait_ms), max(int(idle_wait_ms), int(wait_ms)))
    original = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "_fraudstream", False):
        return

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        waits = getattr(self.app, "fraudstream_fetch_wait", None)
        if waits is not None:
            if not hasattr(consumer, "_fetch_max_wait_ms") or not hasattr(consumer, "_subscription"):
                log.warning("cannot set the consumer's fetch wait with this aiokafka; faust's 1500 ms applies")
            else:
                consumer._fetch_max_wait_ms = waits[0]
                consumer._subscription._fraudstream_fetch_wait = waits
                log.info("consumer fetches wait %d ms for data, up to %d ms when idle", *waits)
        return consumer

    fetch = Fetcher._proc_fetch_request

    async def _proc_fetch_request(self: Any, assignment: Any, node_id: Any, request: Any) -> Any:
        got_data = await fetch(self, assignment, node_id, request)
        waits = getattr(self._subscriptions, "_fraudstream_fetch_wait", None)
        if waits is not None:
            self._fetch_max_wait_ms = waits[0] if got_data else min(2 * self._fetch_max_wait_ms, waits[1])
        return got_data

    _create_worker_consumer._fraudstream = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    Fetcher._proc_fetch_request = _proc_fetch_request


def _fetched_ends(client: dict[str, Any], reported: dict[Any, int], timeout: float = 10.0) -> dict[Any, int]:
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer({**client, "group.id": f"fraudstream-ends-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "latest", "fetch.wait.max.ms": 10})
    try:
        by_key = {(tp.topic, tp.partition): tp for tp in reported}
        c.assign([TopicPartition(tp.topic, tp.partition, hw - 1) for tp, hw in reported.items()])
        ends: dict[Any, int] = {}
        deadline = time.monotonic() + timeout
        while len(ends) < len(reported) and time.monotonic() < deadline:
            for m in c.consume(1000, 0.2):
                err = m.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    ends[by_key[(m.topic(), m.partition())]] = cast(int, m.offset())  # an EOF event has one
        return ends
    finally:
        c.close()


def share_rocksdb_memory() -> None:
    """Make faust open every RocksDB database of a table with ``fraudstream_memory`` in its options (a
    :class:`RocksDBMemory`) on that shared cache and write buffer manager, with its index and filter blocks in the
    cache.

    faust's options leave index and filter blocks outside the cache (RocksDB's default), where they grew with the
    data held, one index and one Bloom filter per file, not with ``FRAUDSTREAM_ROCKSDB_MEMORY_MB``: at a month of
    snapshots, gigabytes per worker. In the cache they are evicted like data blocks; the ones of level 0 (the newest
    files, read most) are pinned there. faust builds the options of every database it opens with ``as_options``;
    tables without ``fraudstream_memory`` keep faust's.
    """
    import rocksdict
    from faust.stores.rocksdb import RocksDBOptions

    original = RocksDBOptions.as_options
    if getattr(original, "faust_as_options", None):
        return

    def as_options(self: Any) -> Any:
        options = original(self)
        memory: RocksDBMemory | None = self.extra_options.get("fraudstream_memory")
        if not self.use_rocksdict or memory is None:
            return options
        table = rocksdict.BlockBasedOptions()  # faust's, as it builds them, on the shared cache
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(memory.cache)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(memory.write_buffers)
        return options

    as_options.faust_as_options = original  # type: ignore[attr-defined]
    RocksDBOptions.as_options = as_options  # type: ignore[method-assign]
