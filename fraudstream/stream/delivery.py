"""Holes in faust's at-least-once delivery, and what closes them. Each lost (or stalled) authorizations in
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
   then. Guarded topics must therefore be consumed through :func:`batches`, or a lane
   (:mod:`fraudstream.stream.lanes`).

8. Events dropped on the way to the agent. faust's stream skips (and acknowledges) an event that reaches it while
   flow control is off or after its generation ended, and hands the agent the next ones: the consumer's offsets were
   contiguous (1), the agent's were not. The skipped offset, never acknowledged (7), held back every commit of its
   partition until it was read again (``HEAD_WAIT_S`` later), by then after the partition's later authorizations:
   the intake took it for a redelivery, its card's state being past its offset, and skipped it, and it was committed
   without ever reaching fraud.authorizations-by-merchant (tests/reliability/test_crash.py under load: a restarted
   worker's first offset of a partition, 748, was read again 12 s later, after 759 and 762 of the same card); the
   merchant stage skips or applies out of order what comes so.
   :func:`batches` hands an agent each partition's offsets in order from where reading (re)started, without a hole:
   an event past the next offset expected is left out, and the partition is read again from that offset at once;
   if no later event comes to tell (the partition's last ones were skipped: a restarted worker sat with lag on a
   partition it never read again), the consumer's patched ``getmany`` reads it again ``HEAD_WAIT_S`` after.

9. Records fetched, then dropped before any agent saw them, the consumer's position past them. aiokafka takes an
   empty set of partitions for all of them: a fetch still waiting when faust's recovery paused its last active
   partition (the changelogs it had read, before it resumed the streams) handed on records of the paused stream
   partitions, which faust drops. And records buffered before the seek to the committed offsets can be handed on
   while it runs, so that the position ends past the offsets the seek meant to read again. Either way nothing
   later from that partition came to say so: in tests/reliability/test_rebalance.py (about one run in fifty) 26
   authorizations of one partition were never read again, and the other partitions held theirs for them in event
   time, 60 s, until the test gave up; traced another time, 434 of one partition. The consumer's patched fetch
   reads again what it drops; a partition whose records were handed on while it was sought to its committed offset
   is sought there again; and a partition whose next offset is on the broker (below its fetch high-water mark) but
   has not been fetched for ``HEAD_WAIT_S`` is read again from it, whatever the cause.

:func:`fraudstream.stream.faust_patches.keep_stream_offsets_contiguous` closes 1, 2, 4 (for every seek), 5 and 9,
:func:`batches` closes 3, 6 and 8, and both together close 7.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from fraudstream.stream.pacing import BatchPacing

__all__ = ["SkippedOffsets", "batches", "checked", "fresh", "hold", "in_order", "let_go", "processing", "produced_over"]

log = logging.getLogger("fraudstream.worker")

#: A partition whose next offset an agent still waits for is asked to be read again from it at most this often
#: (events fetched before the first ask keep arriving past it meanwhile).
READ_AGAIN_EVERY_S = 1.0

# Shared with the consumer's patches (fraudstream.stream.faust_patches), which commit nothing past a held message
# and record revocations.

#: Messages an agent keeps unacknowledged on purpose (see :func:`hold`), as (topic, partition, offset).
_HELD: set[tuple[str, int, int]] = set()

#: Per partition of a guarded topic, as (topic, partition): the consumer generation whose assignment of it was last
#: revoked. A message fetched in that generation or before is stale (see :func:`fresh`).
_REVOKED: dict[tuple[str, int], int] = {}

#: Per partition of a guarded topic, as (topic, partition): the next offset its agent must be handed (module doc, 8).
#: Set where reading (re)starts (the committed offset, by the consumer's patched ``perform_seek``), then one past
#: each offset handed over. Absent (not guarded, or revoked and not sought since): unknown, anything goes.
_NEXT: dict[tuple[str, int], int] = {}

#: Per partition: the offset it was last asked to be read again from (see :func:`in_order`; the consumer's patched
#: seeks say so too), and when (monotonic).
_ASKED: dict[tuple[str, int], tuple[int, float]] = {}

#: Per partition: offsets gone from the broker (retention), as (first, first after), which the consumer's patched
#: ``getmany`` stepped over: no agent waits for them.
_GONE: dict[tuple[str, int], tuple[int, int]] = {}

class SkippedOffsets:
    """Per partition, as (topic, partition): offset ranges the fetcher stepped over as it should, holding no record
    for a ``read_committed`` reader (transaction markers, aborted transactions). Under exactly once every internal
    topic has them, and a guarded partition's next offset may lie past such a range (``fraudstream.stream
    .transactions``; noted by ``faust_patches.read_committed_records``, in the consumer's thread).

    >>> skipped = SkippedOffsets()
    >>> skipped.add(("t", 0), 10, 11); skipped.add(("t", 0), 11, 15); skipped.add(("t", 0), 20, 21)
    >>> skipped.end_of(("t", 0), 10), skipped.end_of(("t", 0), 16), skipped.between(("t", 0), 12, 30)
    (15, 16, [(12, 15), (20, 21)])
    >>> skipped.forget_before(("t", 0), 16); skipped.ranges[("t", 0)]
    [(20, 21)]
    """

    #: Ranges kept per partition at most (the oldest go; a commit normally forgets them long before).
    KEEP = 10_000

    def __init__(self) -> None:
        self.ranges: dict[tuple[str, int], list[tuple[int, int]]] = {}
        self._lock = threading.Lock()

    def add(self, key: tuple[str, int], begin: int, end: int) -> None:
        if end <= begin:
            return
        with self._lock:
            ranges = self.ranges.setdefault(key, [])
            ranges.append((begin, end))
            ranges.sort()
            merged = [ranges[0]]
            for b, e in ranges[1:]:
                if b <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
                else:
                    merged.append((b, e))
            self.ranges[key] = merged[-self.KEEP:]

    def end_of(self, key: tuple[str, int], offset: int) -> int:
        """The first offset at or after ``offset`` that is not in a skipped range."""
        for b, e in self.ranges.get(key, ()):
            if b <= offset < e:
                return e
        return offset

    def between(self, key: tuple[str, int], begin: int, end: int) -> list[tuple[int, int]]:
        """The skipped ranges within [begin, end)."""
        return [(max(b, begin), min(e, end)) for b, e in self.ranges.get(key, ()) if e > begin and b < end]

    def forget_before(self, key: tuple[str, int], offset: int) -> None:
        with self._lock:
            ranges = self.ranges.get(key)
            if ranges:
                self.ranges[key] = [(b, e) for b, e in ranges if e > offset]

    def forget(self, key: tuple[str, int]) -> None:
        with self._lock:
            self.ranges.pop(key, None)


#: Offsets the fetcher stepped over as it should (see :class:`SkippedOffsets`): no agent waits for them.
_SKIPPED = SkippedOffsets()

#: Per guarded topic: how many batches of it an agent is processing now. An agent waiting for its next batch while
#: its partition's next offset was fetched long ago lost it on the way, with nothing after it to tell (the
#: consumer's patched ``getmany`` reads it again).
_BUSY: dict[str, int] = {}


def hold(message: Any) -> None:
    """Keep ``message`` from being acknowledged at the end of its batch: the agent acknowledges it later, with
    ``stream.ack``, after calling :func:`let_go`. Until then nothing from its offset on is committed, and its
    partition is not read again for it (it was not lost on its way to the agent, it is waiting)."""
    message.incref()
    _HELD.add((message.topic, message.partition, message.offset))


def let_go(message: Any) -> None:
    """``message`` is no longer held (see :func:`hold`)."""
    _HELD.discard((message.topic, message.partition, message.offset))


def fresh(messages: list[Any]) -> list[Any]:
    """``messages`` without those fetched before their partition was last revoked (module doc, 6). Those are marked
    acknowledged already, so that no acknowledgement counts them."""
    kept = []
    for message in messages:
        generation = message.generation_id
        if generation is not None and generation <= _REVOKED.get((message.topic, message.partition), -1):
            message.acked = True
        else:
            kept.append(message)
    return kept


def in_order(messages: list[Any]) -> tuple[list[Any], dict[Any, int]]:
    """``messages`` without those past a hole in their partition's offsets (module doc, 8), and, per partition with
    such a hole, as ``{tp: offset}``, the offset it must be read again from. An offset at or before the next one
    expected (a partition read again) is kept: the stages recognise what they have done already.

    >>> class Message:
    ...     def __init__(self, offset): self.topic, self.partition, self.tp, self.offset, self.acked = "t", 0, "t0", offset, False
    >>> _NEXT[("t", 0)] = 748  # where reading started: the committed offset
    >>> kept, again = in_order([Message(749), Message(750)])  # 748 never reached the agent
    >>> kept, again, _NEXT[("t", 0)]
    ([], {'t0': 748}, 748)
    >>> kept, again = in_order([Message(748), Message(749), Message(748)])
    >>> [m.offset for m in kept], again, _NEXT[("t", 0)]
    ([748, 749, 748], {}, 750)
    >>> del _NEXT[("t", 0)]
    """
    kept, again = [], {}
    for message in messages:
        key = (message.topic, message.partition)
        expected = _NEXT.get(key)
        gone = _GONE.get(key)
        if expected is not None and gone is not None and gone[0] <= expected < gone[1]:
            expected = gone[1]
        if expected is not None:
            expected = _SKIPPED.end_of(key, expected)  # a transaction's marker, say: nothing to wait for there
        offset = message.offset
        if expected is None:  # not a guarded topic, or not sought yet since its assignment: nothing known
            kept.append(message)
        elif offset <= expected:
            kept.append(message)
            _NEXT[key] = max(expected, offset + 1)
        else:
            message.acked = True  # not counted by faust's acknowledgement: it comes again, after the hole
            again[message.tp] = expected
    return kept, again


async def _read_again(consumer: Any, again: dict[Any, int]) -> None:
    """Seek each partition of ``again`` back to its offset, unless it was asked so less than
    ``READ_AGAIN_EVERY_S`` ago (events fetched before that keep coming past it meanwhile)."""
    now = time.monotonic()
    for tp, offset in again.items():
        key = (tp.topic, tp.partition)
        asked = _ASKED.get(key)
        if asked is not None and asked[0] == offset and now - asked[1] < READ_AGAIN_EVERY_S:
            continue
        _ASKED[key] = (offset, now)
        log.info("%s[%d]: offset %d did not reach its agent, later ones did; reading again from %d", tp.topic,
                 tp.partition, offset, offset)
        try:
            await consumer.seek(tp, offset)
        except Exception as exc:  # revoked since (a rebalance): its next owner reads it from the committed offset
            log.info("%s[%d]: not read again from %d: %s", tp.topic, tp.partition, offset, exc)


def produced_over(messages: list[Any]) -> float | None:
    """How long ``messages`` took to be produced, by their timestamps: the spread of n timestamps, times
    n / (n - 1), so that traffic at a steady rate gives the time it took (None: fewer than two timestamps)."""
    stamps = [t for t in (getattr(message, "timestamp", None) for message in messages) if isinstance(t, (int, float))]
    n = len(stamps)
    return (max(stamps) - min(stamps)) * n / (n - 1) if n > 1 else None


@contextmanager
def processing(topic: str, kept: list[Any], release: bool = True) -> Iterator[None]:
    """Around an agent's batch of ``kept`` messages: if it does not finish, nothing of it is committed, and its
    partitions expect its offsets again (module doc, 3 and 8). Once finished, with ``release``, each message's own
    reference (taken when it was fetched, module doc 7) is given up; without, the caller acknowledges it."""
    _BUSY[topic] = _BUSY.get(topic, 0) + 1
    finished = False
    try:
        yield
        finished = True
    finally:
        _BUSY[topic] -= 1
        for message in kept:
            if finished:
                if release:
                    message.decref()
            else:
                message.acked = True
                # Read again, so expected again: later offsets wait for it (module doc, 8).
                key = (message.topic, message.partition)
                expected = _NEXT.get(key)
                if expected is not None and message.offset < expected:
                    _NEXT[key] = message.offset


async def checked(consumer: Any, messages: list[Any]) -> list[Any]:
    """``messages`` that are fresh and in order (:func:`fresh`, :func:`in_order`); their partitions read again from
    any hole."""
    kept, again = in_order(fresh(messages))
    if again:
        await _read_again(consumer, again)
    return kept


async def batches(stream: Any, max_: int, within: float, pacing: BatchPacing | None = None) -> AsyncIterator[list[Any]]:
    """``stream.take_events(max_, within)``, except that:

    - a batch the agent does not finish (it raised, or it was cancelled) is never committed: its events are marked
      acknowledged already, so faust's acknowledgement at the end of the batch does not count them, and the
      partition's next reader gets them again;
    - events fetched before their partition was revoked are left out (:func:`fresh`);
    - so are events past an offset that never reached the agent, and their partition is read again from that offset
      (:func:`in_order`);
    - with ``pacing``, after a batch it finished the agent waits as long as ``pacing`` says before taking the next
      (slow traffic: fewer, fuller batches; :mod:`fraudstream.stream.pacing`)."""
    async for events in stream.take_events(max_, within=within):
        taken_at = time.monotonic()
        messages = [event.message for event in events]
        kept_messages = await checked(stream.app.consumer, messages)
        if not kept_messages:
            continue
        kept_ids = {id(message) for message in kept_messages}
        kept = [event for event in events if id(event.message) in kept_ids]
        with processing(kept_messages[0].topic, kept_messages):
            yield kept
        if pacing is not None:
            # The batch is finished (not acknowledged to faust yet: take_events does that when we ask for the next).
            pause = pacing.pause_after(len(events), taken_at, time.monotonic(), produced_over(messages))
            if pause > 0:
                await asyncio.sleep(pause)
