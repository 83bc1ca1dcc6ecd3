"""Every patch of faust (and of the aiokafka underneath it) the worker needs, in one place, applied by :func:`apply`.

Each works around one faust behaviour; the long stories are in the docstrings below and in
:mod:`fraudstream.stream.delivery` (the holes in faust's at-least-once delivery, numbered 1 to 9 there).

=====================================================  ==============================================================
Patched                                                faust behaviour it works around
=====================================================  ==============================================================
``Consumer.getmany``                                   hands agents records past offsets it skipped after a rebalance,
                                                      and its last read offset again after a seek; never notices a
                                                      partition whose next offset is on the broker and never comes
``Consumer._wait_next_records``                        makes a ``Message`` of every record and hands each on one at a
                                                      time (``Event``, lock, queue, task switch): the authorization
                                                      hops' records go to their lanes instead, a fetch at a time
                                                      (:mod:`fraudstream.stream.lanes`; acknowledged a batch at a
                                                      time by :func:`acknowledge_offsets`); drops a paused
                                                      partition's records without reading them again
``Consumer.seek``                                      forgets where a sought partition must resume (for getmany)
``Consumer.perform_seek``                              reads stale read offsets; leaves never-committed partitions unsought
``Consumer.on_partitions_revoked``                     keeps committing a revoked partition's late acknowledgements
``Consumer._new_offset``                               commits past an unacknowledged head (off by one)
``Consumer._add_gap``                                  counts the record after a gap into the gap (off by one)
``ThreadDelegateConsumer._seek``                       seeks from the main thread while the fetcher thread reads
``AIOKafkaConsumerThread._highwaters``                 trusts end offsets the embedded broker misreports (recovery)
``AIOKafkaConsumerThread._create_worker_consumer``     hard-codes a 1500 ms fetch wait, no setting
``aiokafka Fetcher._proc_fetch_request``               never backs off that wait while idle
``RocksDBOptions.as_options``                          a cache per table partition; index and filters outside it
``app.producer.flush``                                 flushes only its own producer before a commit, not our tables'
``AIOKafkaConsumerThread._create_worker_consumer``     reads uncommitted records but under its own transactions
``aiokafka PartitionRecords._unpack_records``          shows aborted records (embedded broker); markers unnoted
``aiokafka Fetcher._proc_fetch_request`` (again)       keeps no link from a fetch to the one before (for the above)
``Consumer.commit``, ``Consumer._commit``              commits offsets outside our producer's transaction
=====================================================  ==============================================================

The last four apply under exactly once only (``FRAUDSTREAM_PROCESSING_GUARANTEE``; see
``fraudstream.stream.transactions``). Every patch but ``app.producer.flush`` is of a class, so it applies to every
app of the process, once; each is idempotent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from fraudstream.kafka.offsets import fetched_ends
from fraudstream.stream.delivery import _ASKED, _BUSY, _GONE, _HELD, _NEXT, _REVOKED, _SKIPPED

if TYPE_CHECKING:
    from fraudstream.stream.tables import RocksDBMemory
    from fraudstream.stream.transactions import Transactions

__all__ = ["acknowledge_offsets", "apply", "commit_in_transactions", "flush_with_faust", "keep_stream_offsets_contiguous", "read_committed_records",
           "read_committed", "share_rocksdb_memory", "use_fetch_wait", "use_true_end_offsets"]

log = logging.getLogger("fraudstream.worker")


def apply(app: Any, client: dict[str, Any], guarded_topics: Iterable[str], fetch_wait_ms: int, fetch_wait_idle_ms: int,
          rocksdb: bool, after_faust_flush: Callable[[], Awaitable[None]], transactions: Transactions | None = None,
          revoke_within_s: float = 3.0) -> None:
    """Patch faust for one worker app: ``client`` is the confluent-kafka client configuration (to fetch true end
    offsets), ``guarded_topics`` the input topics no offset of which may be stepped over, ``rocksdb`` whether the
    tables are RocksDB stores (on one shared memory bound), ``after_faust_flush`` what must be on the broker whenever
    faust flushes before it commits (the table writes that may go in any order). With ``transactions`` (exactly
    once), offsets are committed in its transactions only, within ``revoke_within_s`` when partitions are revoked,
    and every record is read ``read_committed``."""
    use_true_end_offsets(client, committed_only=transactions is not None)
    keep_stream_offsets_contiguous(guarded_topics)
    use_fetch_wait(app, fetch_wait_ms, fetch_wait_idle_ms)
    if rocksdb:
        share_rocksdb_memory()
    flush_with_faust(app, after_faust_flush)
    if transactions is not None:
        read_committed(app)
        read_committed_records()
        commit_in_transactions(app, transactions, revoke_within_s)


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

#: `in_order`'s verdicts on a fetched record, beside an offset to seek back to (never negative).
_TAKE, _STALE = -1, -2


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
        self.gaps: dict[Any, int] = {}  # skipped offsets made faust's gaps up to here (exactly once)
        self.unsought: set[Any] = set()  # records fetched before the seek to the committed offset: left out
        self.unfetched: dict[Any, tuple[int, float]] = {}  # the offset its agent waits for is on the broker: since when

    def forget(self, tp: Any) -> None:
        self.expected.pop(tp, None)
        self.start.pop(tp, None)
        self.seeks.pop(tp, None)
        self.waiting.pop(tp, None)
        self.behind.pop(tp, None)
        self.gaps.pop(tp, None)
        self.unsought.discard(tp)
        self.unfetched.pop(tp, None)


def keep_stream_offsets_contiguous(topics: Iterable[str]) -> None:
    """Patch faust's consumer so that no offset of ``topics`` is ever stepped over or committed unprocessed (module
    doc, 1 and 2). These topics must be neither compacted nor transactional: their offsets never legitimately jump.

    - A record past the next expected offset of its partition is held back, with the rest of that partition's
      records of the batch, and the partition is sought back to the expected offset: every message reaches its
      agent, in order. A record before it was handed on already since the last seek, and is left out: every
      message reaches its agent once.
    - After a rebalance, a partition without a committed offset is read from its beginning (the consumer's
      ``auto.offset.reset`` is earliest), not from wherever the previous assignment had fetched to. Records
      fetched before that seek (faust resumes the partitions first) are left out: they would be processed, then read
      again from the committed offset.
    - Nothing is committed while the first offset to commit is not acknowledged; if it still is not
      ``HEAD_WAIT_S`` after later offsets were (lost on its way to the agent, which faust can do around a
      rebalance), the partition is read again from it.
    - A partition fetched past the offset its agent waits for next (``delivery._NEXT``), while that agent waits for
      a batch, for ``HEAD_WAIT_S`` (faust's stream skipped that offset and every one after it), is read again from
      it (delivery module doc, 8). Where reading starts, the committed offset, is where its agent starts too.
    - A fetch's records that are not handed on (their partition paused meanwhile) are read again; so is a partition
      whose next offset is on the broker and has not been fetched for ``HEAD_WAIT_S`` (delivery module doc, 9).

    Changelog topics (compacted, read by table recovery) are not touched.
    """
    from faust.transport.consumer import Consumer, ThreadDelegateConsumer, ensure_TP

    from fraudstream.stream.lanes import LANES, LaneRecord  # imported here: the lanes call acknowledge_offsets

    existing = getattr(Consumer.getmany, "_fraudstream_topics", None)
    if existing is not None:
        existing.update(topics)
        return
    guarded = set(topics)
    getmany, seek, wait_next_records = Consumer.getmany, Consumer.seek, Consumer._wait_next_records
    on_revoked, new_offset, add_gap = Consumer.on_partitions_revoked, Consumer._new_offset, Consumer._add_gap

    def positions(consumer: Any) -> _Positions:
        p = consumer.__dict__.get("_fraudstream_positions")
        if p is None:
            p = consumer.__dict__["_fraudstream_positions"] = _Positions()
        return p

    def read_again_when_overdue(self: Any, pos: _Positions, since: dict[Any, tuple[int, float]], tp: Any, offset: int,
                                now: float, what: str) -> None:
        # ``offset`` of ``tp`` is waited for (``what`` says why), noted in ``since``, one of ``pos``'s timers: once
        # it has been for HEAD_WAIT_S, the partition is read again from it.
        began = since.get(tp)
        if began is None or began[0] != offset:
            since[tp] = (offset, now)
        elif now - began[1] > HEAD_WAIT_S:
            log.warning("%s[%d]: offset %d %s for %.0fs; reading again from it", tp.topic, tp.partition, offset, what,
                        now - began[1])
            since[tp] = (offset, now)
            pos.expected[tp] = offset
            asyncio.ensure_future(seek_again(self, tp, offset))

    def read_again_the_lost(self: Any, pos: _Positions) -> None:
        # Fetched (handed to faust's streams) past the offset an agent waits for next, while that agent waits for
        # its next batch, for HEAD_WAIT_S: faust's stream skipped it, and every one after it (delivery module doc, 8).
        now = time.monotonic()
        for tp, fetched in pos.expected.items():
            waited = _NEXT.get((tp.topic, tp.partition))
            if waited is not None:
                waited = _SKIPPED.end_of((tp.topic, tp.partition), waited)  # a transaction's marker is not waited for
            if waited is None or fetched <= waited or _BUSY.get(tp.topic):
                pos.behind.pop(tp, None)
                continue
            read_again_when_overdue(self, pos, pos.behind, tp, waited, now, "fetched and not processed")

    def read_again_the_unfetched(self: Any, pos: _Positions) -> None:
        # The offset an agent waits for next is on the broker (below the partition's fetch high-water mark) and has
        # not been fetched since, for HEAD_WAIT_S, though its partition is neither paused nor stopped: a fetch of it
        # was lost on the way (`read_again_from`, for the one way seen), and nothing later will say so, as no later
        # offset comes either. It is read again from there.
        if not self.flow_active:
            return  # a rebalance: reading starts again from the committed offsets
        now, paused = time.monotonic(), self._paused_partitions
        for tp in pos.start:
            key = (tp.topic, tp.partition)
            next_offset, fetched = _NEXT.get(key), pos.expected.get(tp)
            if next_offset is None or fetched is None or tp in paused:
                pos.unfetched.pop(tp, None)
                continue
            waited = _SKIPPED.end_of(key, next_offset)
            highwater = readable_end(self, tp)
            if highwater is None or fetched > waited or highwater <= waited:
                pos.unfetched.pop(tp, None)
                continue
            read_again_when_overdue(self, pos, pos.unfetched, tp, waited, now,
                                    f"on the broker (high-water mark {highwater}) and not fetched")

    def readable_end(self: Any, tp: Any) -> int | None:
        # Where the partition's readable records end, by the last fetch (None: not fetched yet, or not assigned any
        # longer): its high-water mark, or with read_committed its last stable offset, before any open transaction.
        try:
            end = self.highwater(tp)
            client = self._thread._consumer  # aiokafka's (None before it starts)
            if end is not None and client is not None and client._isolation_level == "read_committed":
                stable = client.last_stable_offset(tp)
                end = end if stable is None else min(end, stable)
        except Exception:  # revoked since: aiokafka asserts that the partition is assigned
            return None
        return cast("int | None", end)

    async def read_again_from(self: Any, pos: _Positions, tp: Any, offset: int) -> None:
        # Records of ``tp`` from ``offset`` on were fetched and are not handed on: the consumer's position is past
        # them, so they are read again (from the next offset expected, if that is before them). Unless the partition
        # has not been sought since it was assigned: the seek to the committed offsets reads it again then.
        if tp not in pos.start:
            pos.unsought.add(tp)
            return
        offset = min(offset, pos.expected.get(tp, offset))
        pos.expected[tp] = offset
        await seek_again(self, tp, offset)

    def in_order(pos: _Positions, tp: Any, offset: int) -> int:
        """Whether a fetched record of a guarded partition follows what was handed on from it: ``_TAKE``; ``_STALE``
        (handed on already); or, for a jump ahead, the offset to seek back to (it is logged and asked for: the caller
        seeks). A jump that came back ``MAX_SEEKS_BACK`` times is a gap on the broker: logged, noted, taken."""
        nxt = pos.expected.get(tp)
        if nxt is None or offset == nxt:
            return _TAKE
        if offset < nxt:
            # Handed on since its partition was last sought: records fetched just before a seek, still on their
            # way through faust's getmany (or a lane's fetch), went on after it, then the same offsets came again
            # from the seek. faust drops what it has read but hands on its last read offset again (offset >= read
            # offset): that record reached its agent twice, and the score stage answered a copy again (two committed
            # scores of one authorization under exactly once).
            return _STALE
        key = (tp.topic, tp.partition)
        nxt = _SKIPPED.end_of(key, nxt)  # a transaction's marker, say: not a hole
        if offset <= nxt:
            return _TAKE
        last, n = pos.seeks.get(tp, (None, 0))
        n = n + 1 if last == nxt else 1
        if n <= MAX_SEEKS_BACK:
            pos.seeks[tp] = (nxt, n)
            log.info("%s[%d]: offset %d came where %d was next; reading again from %d", tp.topic, tp.partition, offset,
                     nxt, nxt)
            _ASKED[key] = (nxt, time.monotonic())  # its agent need not ask again
            return nxt
        log.error("%s[%d]: offsets %d..%d are gone from the broker; carrying on from %d", tp.topic, tp.partition, nxt,
                  offset - 1, offset)
        _GONE[key] = (nxt, offset)  # its agent does not wait for them either
        return _TAKE

    async def guarded_getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        pos = positions(self)
        read_again_the_lost(self, pos)
        read_again_the_unfetched(self, pos)
        held: set[Any] = set()
        async for tp, message in getmany(self, timeout):
            if tp.topic not in guarded:
                yield tp, message
                continue
            if tp in held:
                continue
            if tp not in pos.start:
                # Assigned and not sought to its committed offset yet: faust resumes the stream partitions before
                # it seeks them, so records fetched from wherever reading stood came in between; handed on, they
                # were processed, then read again from the committed offset (twice, under exactly once too).
                pos.unsought.add(tp)
                continue
            offset = message.offset
            verdict = in_order(pos, tp, offset)
            if verdict == _STALE:
                continue
            if verdict >= 0:
                held.add(tp)
                await seek(self, tp, verdict)
                continue
            read = self._read_offset.get(tp)
            if read is None or offset >= read:  # what faust delivers (it drops what it has read already)
                pos.seeks.pop(tp, None)
                pos.expected[tp] = offset + 1
                message.incref()  # released by `batches` once its agent has finished the batch (module doc, 7)
            yield tp, message

    async def to_lane(self: Any, pos: _Positions, tp: Any, records: list[Any], generation: int | None) -> None:
        # A fetch's records of one partition of a lane's topic, checked as `guarded_getmany` checks a stream's (see
        # there), then appended to the lane as faust's fetcher would hand them on: what it has read already is
        # dropped, a jump in its read offset is a gap.
        if tp not in pos.start:
            pos.unsought.add(tp)
            return
        taken = []
        read = self._read_offset.get(tp)
        for record in records:
            offset = record.offset
            verdict = in_order(pos, tp, offset)
            if verdict == _STALE:
                continue
            if verdict >= 0:
                await seek(self, tp, verdict)
                break  # the partition's later records of this fetch come again, after the seek
            if read is None or offset >= read:
                pos.seeks.pop(tp, None)
                pos.expected[tp] = offset + 1
                if read and offset - read > 1:
                    await self._add_gap(tp, read + 1, offset)
                read = self._read_offset[tp] = offset
                stamp = record.timestamp
                # With the fetch's reference (LaneRecord.refcount), given up once its batch is finished (module doc, 7).
                taken.append(LaneRecord(record.topic, record.partition, offset, record.key, record.headers,
                                        record.value, None if stamp is None else stamp / 1000.0, tp, generation))
        if taken:
            await LANES[tp.topic].put_all(taken, self.suspend_flow)

    async def guarded_wait_next_records(self: Any, timeout: float) -> tuple[Any, Any]:
        # The lanes' records leave the fetch here, before faust's getmany makes a Message of each.
        records, active_partitions = await wait_next_records(self, timeout)
        if not records:
            return records, active_partitions
        if not self.flow_active or self.should_stop:
            # faust drops a fetch that comes then, and seeks back to the committed offsets: so do the lanes.
            return {tp: rs for tp, rs in records.items() if tp.topic not in LANES}, active_partitions
        pos = positions(self)
        if active_partitions is not None:
            # aiokafka takes an empty set of partitions for all of them: a fetch still waiting when faust paused the
            # last active partition (its recovery pauses the changelogs it has read, then resumes the streams) hands
            # on records of paused partitions too, which faust drops, the consumer's position already past them:
            # nothing read them again, unless a seek to the committed offsets came after (tests/reliability/
            # test_rebalance.py: 26 authorizations of a partition never scored, the others held for it).
            paused = [tp for tp in records if tp.topic in guarded and tp not in active_partitions
                      and tp not in self._buffered_partitions]
            if paused:  # rare: the fetch is copied only then
                dropped = {tp: records[tp] for tp in paused}
                records = {tp: rs for tp, rs in records.items() if tp not in dropped}
                for tp, rs in dropped.items():
                    if rs:
                        await read_again_from(self, pos, tp, rs[0].offset)
        if not any(tp.topic in LANES for tp in records):
            return records, active_partitions
        rest = {tp: rs for tp, rs in records.items() if tp.topic not in LANES}
        generation = self.app.consumer_generation_id
        for tp, laned in records.items():
            if tp.topic not in LANES or not laned:
                continue
            if self.app.consumer_generation_id != generation:
                break  # a rebalance began meanwhile: faust's getmany drops the rest too (read again after the seek)
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            await to_lane(self, pos, tp, laned, generation)
        return rest, active_partitions

    async def guarded_seek(self: Any, partition: Any, offset: int) -> None:
        await seek(self, partition, offset)
        positions(self).expected[partition] = offset

    async def guarded_perform_seek(self: Any) -> None:
        # faust's perform_seek, keeping the committed offsets it seeks to: its read offsets, looked at afterwards,
        # may already have moved on with records fetched before the seek.
        pos = positions(self)
        before = dict(pos.expected)
        committed_offsets = await self.seek_to_committed()
        self._read_offset.update({tp: o if o is not None and o >= 0 else None for tp, o in committed_offsets.items()})
        self._committed_offset.update({ensure_TP(tp): o or None for tp, o in committed_offsets.items() if o is not None})
        uncommitted = []
        for tp in self.assignment():
            if tp.topic not in guarded:
                continue
            committed = committed_offsets.get(tp)
            if committed is None or committed < 0:
                uncommitted.append(tp)
            else:
                handed_on = pos.expected.get(tp) != before.get(tp)
                pos.expected[tp] = pos.start[tp] = _NEXT[(tp.topic, tp.partition)] = committed
                _ASKED[(tp.topic, tp.partition)] = (committed, time.monotonic())  # read from there: no need to ask
                pos.seeks.pop(tp, None)
                if handed_on:
                    # Records fetched before the seek were handed on while it ran, the consumer's position past
                    # them: it could end past the committed offset, which nothing would then read (delivery
                    # module doc, 9). Sought there again, now that its agent expects it.
                    await seek(self, tp, committed)
        if uncommitted:
            for tp, offset in (await self.earliest_offsets(*uncommitted)).items():
                log.info("%s[%d]: no committed offset; reading from its beginning (%d)", tp.topic, tp.partition, offset)
                await seek(self, tp, offset)
                pos.expected[tp] = pos.start[tp] = _NEXT[(tp.topic, tp.partition)] = offset
                _ASKED[(tp.topic, tp.partition)] = (offset, time.monotonic())
                pos.seeks.pop(tp, None)
        # Left out while the seek ran may be records fetched after it, from the committed offset: read them again,
        # from the first not handed on (faust hands on its last read offset again: not from one before it).
        for tp in [tp for tp in pos.unsought if tp in pos.start]:
            pos.unsought.discard(tp)
            await seek(self, tp, pos.expected.get(tp, pos.start[tp]))

    async def guarded_revoked(self: Any, revoked: Any) -> None:
        before = getattr(self.app, "fraudstream_before_revoke", None)
        if before is not None:  # exactly once: commit what was done, with its offsets, while they are known
            await before(self)
        pos = positions(self)
        for tp in revoked:
            pos.forget(tp)
        gone = {(tp.topic, tp.partition) for tp in revoked}
        _HELD.difference_update([h for h in _HELD if h[:2] in gone])
        for lane in LANES.values():  # fetched, not taken yet: their partitions' next owner reads them again
            lane.drop(gone)
        for key in gone:  # where its agent resumes is known again at the next seek to the committed offsets
            _NEXT.pop(key, None)
            _ASKED.pop(key, None)
            _SKIPPED.forget(key)
        generation = self.app.consumer_generation_id  # the one ending: the next assignment comes with a new one
        _REVOKED.update({(tp.topic, tp.partition): generation for tp in revoked if tp.topic in guarded})
        await on_revoked(self, revoked)

    def skipped_as_gaps(self: Any, tp: Any, head: int, last: int) -> None:
        # Offsets stepped over as they should (transaction markers) from the head on become faust's gaps, which its
        # _new_offset counts as acknowledged; each once (faust removes a gap when it uses it).
        key, pos = (tp.topic, tp.partition), positions(self)
        _SKIPPED.forget_before(key, head)
        done = max(pos.gaps.get(tp, head), head)
        added = False
        for begin, end in _SKIPPED.between(key, done, last + 1):
            self._gap[tp].addi(begin, end)
            done = max(done, end)
            added = True
        pos.gaps[tp] = done
        if added:
            self._gap[tp].merge_overlaps()

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
            if acked and (tp.topic, tp.partition) in _SKIPPED.ranges:
                skipped_as_gaps(self, tp, head, max(acked))
                head = _SKIPPED.end_of((tp.topic, tp.partition), head)
            if acked and min(acked) > head:
                if (tp.topic, tp.partition, head) in _HELD:
                    return None  # waiting in its agent, on purpose
                pos = positions(self)
                read_again_when_overdue(self, pos, pos.waiting, tp, head, time.monotonic(),
                                        "not processed, and later ones were")
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

    async def guarded_add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        # faust notes a jump of its read offset as a gap that takes in the record after it too (offset_to + 1), so
        # that record, once acknowledged, is counted twice and ends the run of offsets faust commits: under exactly
        # once, at every transaction marker. Offsets stepped over as they should are made gaps by `skipped_as_gaps`,
        # exactly; any other jump (offsets gone from the broker) is faust's to note.
        if tp.topic not in guarded or _SKIPPED.end_of((tp.topic, tp.partition), offset_from) < offset_to:
            await add_gap(self, tp, offset_from, offset_to)

    guarded_getmany._fraudstream_topics = guarded  # type: ignore[attr-defined]
    ThreadDelegateConsumer._seek = seek_in_consumer_thread  # type: ignore[method-assign]
    Consumer.getmany = guarded_getmany  # type: ignore[method-assign]
    Consumer._wait_next_records = guarded_wait_next_records  # type: ignore[method-assign]
    Consumer.seek = guarded_seek  # type: ignore[method-assign]
    Consumer.perform_seek = guarded_perform_seek  # type: ignore[method-assign]
    Consumer.on_partitions_revoked = guarded_revoked  # type: ignore[method-assign]
    Consumer._new_offset = guarded_new_offset  # type: ignore[method-assign]
    Consumer._add_gap = guarded_add_gap  # type: ignore[method-assign]


def acknowledge_offsets(consumer: Any, offsets: dict[Any, list[int]]) -> None:
    """Acknowledge ``offsets`` (per partition) to faust's ``consumer`` at once, as its ``Consumer.ack`` does a
    message at a time: they may be committed. The lanes' records are no faust messages (:mod:`fraudstream.stream
    .lanes`): this is faust's bookkeeping of acknowledged offsets, done once per batch."""
    from faust.types.tuples import ack_lock
    from mode.utils.futures import notify

    with ack_lock:  # as in Consumer.ack: the index, the lists and the count change together
        n = 0
        for tp, tp_offsets in offsets.items():
            if not consumer.app.topics.acks_enabled_for(tp.topic):
                continue
            committed = consumer._committed_offset[tp]
            index, acked = consumer._acked_index[tp], consumer._acked[tp]
            for offset in tp_offsets:
                if (committed is None or offset >= committed) and offset not in index:
                    index.add(offset)
                    acked.append(offset)
                    n += 1
        consumer._n_acked += n
    notify(consumer._waiting_for_ack)


def use_true_end_offsets(client: dict[str, Any], committed_only: bool = False) -> None:
    """Make faust's recovery read each changelog to its real end.

    faust recovers a table by reading its changelog up to the end offset the broker reports (ListOffsets). The
    embedded broker reports the base offset of the last record batch plus one, so the records after the first one
    of a multi-record batch (a batch flushes many keys at once) were never read back: recovery returned stale
    state. For every partition reported non-empty, the end is found by fetching from there until end of partition.
    Harmless on Apache Kafka, where both agree.

    ``committed_only`` (exactly once): the end is one past the last record a ``read_committed`` reader gets, not past
    the transaction marker after it, which no reader ever gets: recovery waited for it forever (faust looks for
    that case only with its own transactions, and only after two 5 s timeouts).
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    AIOKafkaConsumerThread._fraudstream_committed_only = committed_only  # type: ignore[attr-defined]
    original = AIOKafkaConsumerThread._highwaters
    if getattr(original, "_fraudstream", False):
        return

    async def _highwaters(self: Any, partitions: Any) -> Any:
        reported = dict(await original(self, partitions))
        suspect = {tp: hw for tp, hw in reported.items() if hw and hw > 0}
        if suspect:
            committed = AIOKafkaConsumerThread._fraudstream_committed_only  # type: ignore[attr-defined]
            try:
                if committed:
                    true = await _committed_ends(self, suspect)
                else:
                    true = await asyncio.get_running_loop().run_in_executor(None, fetched_ends, client, suspect)
            except Exception as exc:  # fall back to what the broker said
                log.warning("could not check end offsets by fetching: %s", exc)
            else:
                for tp, end in true.items():
                    reported[tp] = end if committed else max(reported[tp], end)
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


async def _committed_ends(thread: Any, reported: dict[Any, int], timeout: float = 30.0) -> dict[Any, int]:
    """Per partition, one past the offset of its last record a ``read_committed`` reader gets (0: none), as faust's
    consumer reads them (:func:`read_committed_records`), looking back from the end ``reported`` further and further
    (the records after it are transaction markers, or records of aborted or open transactions). Read by a consumer
    of no group, built as faust builds its own (credentials included), in the consumer's thread."""
    from aiokafka.structs import TopicPartition

    consumer = thread._create_client_consumer(thread.transport)
    consumer._isolation_level = "read_committed"
    consumer._fetch_max_wait_ms = 10
    await consumer.start()
    ends: dict[Any, int] = {}
    deadline = time.monotonic() + timeout
    try:
        for tp, hw in reported.items():
            atp = TopicPartition(tp.topic, tp.partition)
            consumer.assign([atp])
            back = 16
            while tp not in ends:
                start = max(hw - back, 0)
                consumer.seek(atp, start)
                last = -1
                while time.monotonic() < deadline:
                    got = await consumer.getmany(atp, timeout_ms=100)
                    for m in got.get(atp, ()):
                        last = max(last, m.offset)
                    # The end of what a read_committed reader may read now (the fetch's own marks: the embedded
                    # broker's ListOffsets answer can be too low).
                    end = consumer.last_stable_offset(atp) or consumer.highwater(atp) or hw
                    if not got and await consumer.position(atp) >= end:
                        break
                if last >= 0 or start == 0 or time.monotonic() >= deadline:
                    ends[tp] = last + 1
                back *= 8
        return ends
    finally:
        await consumer.stop()


def read_committed(app: Any) -> None:
    """Make faust's consumer (the agents' topics, and table recovery) read with ``isolation.level=read_committed``:
    faust sets it only with its own aiokafka transactions, which the embedded broker cannot run."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    app.fraudstream_read_committed = True
    original = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "_fraudstream_isolation", False):
        return

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        if getattr(self.app, "fraudstream_read_committed", False):
            consumer._isolation_level = "read_committed"  # the fetcher, built at start, reads it then
        return consumer

    _create_worker_consumer._fraudstream_isolation = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]


#: A partition whose records start with a transaction still undecided (its marker not read yet) for this long is
#: handed on as it is (see :func:`read_committed_records`).
UNDECIDED_FOR_S = 10.0


class _Carried:
    """Batches of one partition a fetch ended on before their transaction's marker (see :func:`read_committed_records`):
    held for the fetch that continues at ``end``, whose batches they go before."""

    __slots__ = ("batches", "end")

    def __init__(self, batches: list[Any], end: int) -> None:
        self.batches = batches
        self.end = end


class _FetcherReads:
    """What one consumer's ``read_committed`` fetcher keeps between its fetches, per partition: the batches carried to
    the next fetch, and since when its records have started with an undecided transaction (first offset, monotonic
    time). Kept per fetcher: another consumer of the process (recovery's end-offset reader) reads the same partitions."""

    __slots__ = ("carried", "undecided_since")

    def __init__(self) -> None:
        self.carried: dict[tuple[str, int], _Carried] = {}
        self.undecided_since: dict[tuple[str, int], tuple[int, float]] = {}


def read_committed_records() -> None:
    """Make aiokafka's ``read_committed`` fetcher leave out aborted transactions' records on the embedded broker too,
    and note the offsets it steps over (transaction markers, aborted records) in ``delivery._SKIPPED``.

    aiokafka leaves out the records of the aborted transactions a fetch response lists. The embedded broker (Tansu
    0.6.0) lists none: it keeps a transaction from ``read_committed`` readers while it is open, then shows its
    records whether it committed or aborted, so a restarted worker read again what its killed predecessor had
    produced in the transaction the restart aborted. Here a transactional batch is handed on only once the marker
    that ends its transaction (the producer's next control batch) has been read: left out if it says abort. A commit
    marker of a later producer epoch does not commit it: its transaction was abandoned (the embedded broker wrote no
    abort marker for it in a partition when the worker that aborted it, restarting, was killed in the middle of that).
    On Apache Kafka this gives what the broker's list gives.

    A fetch that ends before a batch's marker (a transaction larger in the partition than a fetch returns: the
    embedded broker returns about 5 MB whatever is asked, and a commit waits longer while a worker catches up) hands on
    what comes before that batch and carries the rest (:class:`_Carried`, kept by the consumer's fetcher) to the next
    fetch, which continues after it: the marker is read there or later, and nothing is fetched twice. (Fetching the
    same offsets again until the marker fitted stalled `make bench`'s exactly-once phase 10 s on each partition of
    fraud.authorizations-by-merchant, and after ``UNDECIDED_FOR_S`` handed the transaction on as if committed, aborted
    or not.) A fetch that does not continue where the carried batches end (a seek, a rebalance) drops them: it reads
    them again.

    The guarded topics' patches would take the offsets stepped over for holes (delivery module doc, 1 and 8), and
    faust notes them only once a later record of the partition reached it: they are noted here.
    """
    from aiokafka import errors as Errors
    from aiokafka.consumer.fetcher import READ_COMMITTED, Fetcher, PartitionRecords

    original = PartitionRecords._unpack_records
    if getattr(original, "_fraudstream", False):
        return
    # The undecided-transaction timers of fetches that did not come through the patched fetcher (they carry nothing).
    elsewhere = _FetcherReads()
    fetch = Fetcher._proc_fetch_request

    async def _proc_fetch_request(self: Any, assignment: Any, node_id: Any, request: Any) -> Any:
        # Each consumer's fetcher keeps its own `_FetcherReads`: its new PartitionRecords get it before any is read
        # (no await in between).
        got = await fetch(self, assignment, node_id, request)
        if self._isolation_level != READ_COMMITTED:
            return got
        reads = self.__dict__.setdefault("_fraudstream_reads", _FetcherReads())
        for result in self._records.values():
            records = getattr(result, "_partition_records", None)
            if records is not None:
                records._fraudstream_reads = reads
        return got

    def _unpack_records(self: Any) -> Any:
        if self._isolation_level != READ_COMMITTED:
            yield from original(self)
            return
        tp, records = self._tp, self._records
        key = (tp.topic, tp.partition)
        batches = []
        # None: this fetch did not come through the patched fetcher; nothing is carried (the same offsets come again).
        reads: _FetcherReads | None = getattr(self, "_fraudstream_reads", None)
        before_fetch = reads.carried.pop(key, None) if reads is not None else None
        if before_fetch is not None and before_fetch.end == self.next_fetch_offset:
            # Continue from the carried batches: the position goes back to the first (aiokafka's position follows
            # next_fetch_offset as records are handed on, so it is where the reader logically is).
            batches += before_fetch.batches
            self.next_fetch_offset = before_fetch.batches[0].base_offset
        while records.has_next():
            batch = records.next_batch()
            if self._check_crcs and not batch.validate_crc():
                raise Errors.CorruptRecordException(f"Invalid CRC - {tp}")
            batches.append(batch)
        # Each transactional batch's fate, from its producer's next marker read.
        aborted: set[int] = set()
        waiting: dict[int, list[int]] = {}  # producer id -> its batches with no marker yet
        for i, batch in enumerate(batches):
            producer = batch.producer_id
            if producer is None or producer < 0:
                continue
            if batch.is_control_batch:
                ended = waiting.pop(producer, [])
                if self._contains_abort_marker(batch):
                    aborted.update(ended)
                else:  # a commit ends only its own epoch's transaction: older ones were abandoned, never committed
                    aborted.update(j for j in ended if batches[j].producer_epoch < batch.producer_epoch)
            elif batch.is_transactional:
                waiting.setdefault(producer, []).append(i)
        cut = min((i for ended in waiting.values() for i in ended), default=len(batches))
        undecided_since = (reads or elsewhere).undecided_since
        if cut == 0 and batches:
            first = batches[0].base_offset
            since = undecided_since.get(key)
            if since is None or since[0] != first:
                undecided_since[key] = (first, time.monotonic())
            elif time.monotonic() - since[1] > UNDECIDED_FOR_S:
                log.warning("%s[%d]@%d: no transaction marker for %.0fs; reading on as if committed",
                            tp.topic, tp.partition, first, UNDECIDED_FOR_S)
                cut = len(batches)
        else:
            undecided_since.pop(key, None)
        carry = reads is not None and cut < len(batches)
        if reads is not None and carry:  # (mypy does not narrow `reads` through `carry`)
            reads.carried[key] = _Carried(batches[cut:], batches[-1].next_offset)
        for i, batch in enumerate(batches[:cut]):
            before = self.next_fetch_offset
            if batch.is_control_batch or i in aborted:
                self.next_fetch_offset = max(before, batch.next_offset)
                _SKIPPED.add(key, before, self.next_fetch_offset)
                continue
            for record in batch:
                if record.offset < self.next_fetch_offset:
                    continue
                if record.offset > self.next_fetch_offset:
                    _SKIPPED.add(key, self.next_fetch_offset, record.offset)
                consumer_record = self._consumer_record(tp, record)
                self.next_fetch_offset = record.offset + 1
                yield consumer_record
            if batch.next_offset > self.next_fetch_offset:
                _SKIPPED.add(key, self.next_fetch_offset, batch.next_offset)
                self.next_fetch_offset = batch.next_offset
        if carry:
            self.next_fetch_offset = batches[-1].next_offset  # the next fetch continues after the carried batches

    _unpack_records._fraudstream = True  # type: ignore[attr-defined]
    PartitionRecords._unpack_records = _unpack_records
    Fetcher._proc_fetch_request = _proc_fetch_request


def commit_in_transactions(app: Any, transactions: Transactions, revoke_within_s: float) -> None:
    """Make faust's offset commits part of ``transactions`` (exactly once): a commit waits until no batch runs,
    works out the offsets of the events acknowledged then, and commits them in the open transaction with the outputs
    and table writes made so far (``Transactions.commit``); faust's consumer commits no offset of its own. When
    partitions are revoked, what was done is committed first, with its offsets (faust forgets them then)."""
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

    app.fraudstream_transactions = transactions
    faust_commit = getattr(Consumer.commit, "_fraudstream_original", Consumer.commit)
    faust_send = getattr(AIOKafkaConsumer._commit, "_fraudstream_original", AIOKafkaConsumer._commit)

    async def before_revoke(consumer: Any) -> None:
        if not await transactions.commit(lambda: faust_commit(consumer, None, True),
                                         time.monotonic() + revoke_within_s):
            log.warning("partitions revoked while a batch was still running: it is not committed, and is read again")

    app.fraudstream_before_revoke = before_revoke
    if getattr(Consumer.commit, "_fraudstream_original", None) is not None:
        return

    async def commit(self: Any, topics: Any = None, start_new_transaction: bool = True) -> bool:
        txn: Transactions | None = getattr(self.app, "fraudstream_transactions", None)
        if txn is None:
            return cast(bool, await faust_commit(self, topics, start_new_transaction))
        done: list[bool] = []

        async def offsets() -> None:
            done.append(await faust_commit(self, topics, start_new_transaction))

        await txn.commit(offsets)
        return bool(done and done[0])

    async def send(self: Any, offsets: Any) -> bool:
        txn: Transactions | None = getattr(self.app, "fraudstream_transactions", None)
        if txn is None:
            return cast(bool, await faust_send(self, offsets))
        assignment = self.assignment()
        txn.add_offsets({(tp.topic, tp.partition): offset for tp, offset in offsets.items() if tp in assignment})
        return True

    commit._fraudstream_original = faust_commit  # type: ignore[attr-defined]
    send._fraudstream_original = faust_send  # type: ignore[attr-defined]
    Consumer.commit = commit  # type: ignore[method-assign]
    AIOKafkaConsumer._commit = send  # type: ignore[method-assign]


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
