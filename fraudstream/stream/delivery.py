"""Holes in faust's at-least-once delivery, and what closes them. Each lost authorizations in
tests/reliability/test_rebalance.py, test_crash.py and tests/stream/test_replay_equals_live.py on a loaded machine:
they never reached fraud.scores, and their offsets were committed.

1. Skipped offsets. After a rebalance in which a worker keeps some of its partitions, faust (faust-streaming 0.15
   with aiokafka) can hand the agents records fetched from a position past the messages the worker had fetched but
   not processed (dropped from the agents' queues at revocation): the seek to the committed offset races with
   records already fetched, and a partition with no committed offset yet is not sought at all. faust records the
   offsets it did not see as a "gap", the way it steps over compacted or transactional offsets, and commits past
   them, or, with no committed offset, commits whatever it acknowledged first.
2. Commits past an unacknowledged head. faust commits past the committed offset when that one message is not
   acknowledged but the next ones are (an off-by-one in ``Consumer._new_offset``), and, for a partition never
   committed, commits the first run of acknowledged offsets wherever it starts.
3. Unfinished batches committed. ``Stream.take_events`` acknowledges every event of a batch when the batch is
   over, however it ended; a batch cut short (the agent cancelled at shutdown, SIGTERM, while it waited for the
   broker) was committed without its outputs.
4. Seeks from the wrong thread. faust calls aiokafka's seek from the main thread while the consumer thread reads
   the fetcher's buffered records; the seek deletes from them, and the fetcher crashed (``KeyError``), taking the
   worker down. Seen in tests/reliability/test_crash.py after a restart, where the seeks of 1 come at once. The seek
   runs in the consumer thread while the main loop waits for it without yielding: awaiting it instead (as faust's
   ``call_thread`` would) let commits and acknowledgements come between asking for a seek and its taking effect,
   and test_rebalance.py lost authorizations in 5 runs of 6 on a loaded machine, against 1 or 2 otherwise.
5. Commits between a revocation and the next assignment. faust forgets a partition's acknowledgements and committed
   offset when it is revoked, but does not wait for its agents (``stream_wait_empty`` is off): events fetched
   before the revocation are still processed and acknowledged afterwards, and a commit during the rebalance
   committed their run, past an earlier offset still held by the merchant stage for event-time order, which the
   partition's next owner then never read (tests/reliability/test_rebalance.py, several runs in ten on a loaded
   machine, traced). A partition is now committed only once its reading start is known again.
6. Stale events processed after a revocation. The same events, processed after the worker dropped its per-partition
   state (the merchant stage's event-time order, the score stage's decision counts) at the revocation, were applied
   out of their order: a later authorization of a card partition reached a merchant's state while an earlier one,
   held for event-time order, was dropped, and the earlier one, read again after the rebalance, was then taken for
   a copy of what the state held and skipped (traced in test_rebalance.py). faust skips such events on the way into
   a stream once the new generation is known, not those already in an agent's batch buffer: :func:`batches` leaves
   out every event fetched in a generation whose assignment of its partition was revoked since. Its partition's
   owner reads it again from the committed offset.
7. Events acknowledged that no agent processed. faust acknowledges an event it skips (fetched in a generation that
   ended), and events left in a ``take_events`` buffer when the worker stops: at a graceful stop the last commit then
   went past authorizations that never reached their agent (traced in test_rebalance.py, the member that leaves).
   Each message of a guarded topic is fetched with a reference of ours, which :func:`batches` gives up only once its
   agent has finished the batch that holds it: whatever else acknowledges it, its offset is not committed before
   then. Guarded topics must therefore be consumed through :func:`batches`.

:func:`keep_stream_offsets_contiguous` closes 1, 2, 4 (for every seek) and 5, :func:`batches` closes 3 and 6, and
both together close 7.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

__all__ = ["batches", "fresh", "hold", "keep_stream_offsets_contiguous", "let_go"]

log = logging.getLogger("fraudstream.worker")

#: Seeking back this many times in a row to the same offset without getting it (the broker's log start moved past
#: it: retention) accepts the jump.
MAX_SEEKS_BACK = 5

#: A partition whose next offset to commit is still not acknowledged this long after later ones were (faust dropped
#: it on the way to its agent) is read again from that offset.
HEAD_WAIT_S = 10.0


#: How long the main loop waits for a seek run in the consumer thread (it waits for one step of that thread's loop).
SEEK_TIMEOUT_S = 10.0


#: Messages an agent keeps unacknowledged on purpose (see :func:`hold`), as (topic, partition, offset).
_HELD: set[tuple[str, int, int]] = set()

#: Per partition of a guarded topic, as (topic, partition): the consumer generation whose assignment of it was last
#: revoked. A message fetched in that generation or before is stale (see :func:`fresh`).
_REVOKED: dict[tuple[str, int], int] = {}


def hold(message: Any) -> None:
    """Keep ``message`` from being acknowledged at the end of its batch: the agent acknowledges it later, with
    ``stream.ack``, after calling :func:`let_go`. Until then nothing from its offset on is committed, and its
    partition is not read again for it (it was not lost on its way to the agent, it is waiting)."""
    message.incref()
    _HELD.add((message.topic, message.partition, message.offset))


def let_go(message: Any) -> None:
    """``message`` is no longer held (see :func:`hold`)."""
    _HELD.discard((message.topic, message.partition, message.offset))


def fresh(events: list[Any]) -> list[Any]:
    """``events`` without those fetched before their partition was last revoked (module doc, 6). Those are marked
    acknowledged already, so faust's acknowledgement at the end of the batch does not count them either."""
    kept = []
    for event in events:
        message = event.message
        generation = message.generation_id
        if generation is not None and generation <= _REVOKED.get((message.topic, message.partition), -1):
            message.acked = True
        else:
            kept.append(event)
    return kept


async def batches(stream: Any, max_: int, within: float) -> AsyncIterator[list[Any]]:
    """``stream.take_events(max_, within)``, except that:

    - a batch the agent does not finish (it raised, or it was cancelled) is never committed: its events are marked
      acknowledged already, so faust's acknowledgement at the end of the batch does not count them, and the
      partition's next reader gets them again;
    - events fetched before their partition was revoked are left out (:func:`fresh`)."""
    async for events in stream.take_events(max_, within=within):
        kept = fresh(events)
        if not kept:
            continue
        finished = False
        try:
            yield kept
            finished = True
        finally:
            for event in kept:
                if finished:
                    event.message.decref()  # the reference taken when it was fetched (module doc, 7)
                else:
                    event.message.acked = True


class _Positions:
    """Per partition of a guarded topic: the next offset expected, where reading (re)started (the first offset that
    must be acknowledged before anything is committed, while nothing is), and the last seek back (offset, times)."""

    def __init__(self) -> None:
        self.expected: dict[Any, int] = {}
        self.start: dict[Any, int] = {}
        self.seeks: dict[Any, tuple[int, int]] = {}
        self.waiting: dict[Any, tuple[int, float]] = {}  # head not acknowledged while later offsets are: since when

    def forget(self, tp: Any) -> None:
        self.expected.pop(tp, None)
        self.start.pop(tp, None)
        self.seeks.pop(tp, None)
        self.waiting.pop(tp, None)


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

    async def guarded_getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        pos = positions(self)
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
                    await seek(self, tp, nxt)
                    continue
                log.error("%s[%d]: offsets %d..%d are gone from the broker; carrying on from %d", tp.topic,
                          tp.partition, nxt, offset - 1, offset)
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
                pos.expected[tp] = pos.start[tp] = committed
                pos.seeks.pop(tp, None)
        if uncommitted:
            for tp, offset in (await self.earliest_offsets(*uncommitted)).items():
                log.info("%s[%d]: no committed offset; reading from its beginning (%d)", tp.topic, tp.partition, offset)
                await seek(self, tp, offset)
                pos.expected[tp] = pos.start[tp] = offset
                pos.seeks.pop(tp, None)

    async def guarded_revoked(self: Any, revoked: Any) -> None:
        pos = positions(self)
        for tp in revoked:
            pos.forget(tp)
        gone = {(tp.topic, tp.partition) for tp in revoked}
        _HELD.difference_update([h for h in _HELD if h[:2] in gone])
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
