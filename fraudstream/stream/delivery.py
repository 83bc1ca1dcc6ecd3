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

:func:`fraudstream.stream.faust_patches.keep_stream_offsets_contiguous` closes 1, 2, 4 (for every seek) and 5,
:func:`batches` closes 3 and 6, and both together close 7.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

__all__ = ["batches", "fresh", "hold", "let_go"]

# Shared with the consumer's patches (fraudstream.stream.faust_patches), which commit nothing past a held message
# and record revocations.

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
