"""Exactly once (``FRAUDSTREAM_PROCESSING_GUARANTEE=exactly_once``): outputs, changelogs and input offsets in one
Kafka transaction.

Every stage produces through one confluent-kafka producer (``fraudstream.stream.outputs``), and a producer has one
open transaction at a time, while several loops (authorizations, labels, card events) run batches side by side. So, as Kafka Streams does with its commit interval, the transaction is not one batch's: it is open all the time
and committed at quiescent points, about every :data:`COMMIT_EVERY_S`:

1. :meth:`BatchGate.closed` lets no new batch start and waits until the batches running have finished (their events
   are then acknowledged);
2. every table write still pending goes to its changelog, every output to the broker, inside the transaction;
3. the input offsets faust would commit (those of the acknowledged events, nothing past one still held) go into the
   transaction (``send_offsets_to_transaction``), which commits, and the next one begins at once.

A reader with ``isolation.level=read_committed`` then sees a batch's outputs, and a restarted worker its state and
offsets, all together or none of them. If a commit fails the transaction is aborted and the worker stops at once
(:class:`TransactionFailed`): its tables in memory hold the aborted writes, so it must not go on from them; restarted,
it recovers state and offsets as the broker committed them. At a clean stop, faust's last commit covers the input
processed, and what was produced after it is aborted (:meth:`Transactions.finish`): an open transaction holds back
``read_committed`` readers of every partition it wrote to until it ends, and the embedded broker never times one out.

Fencing: the transactional id is stable per worker (``{app id}-{state dir}-{slot}``: see :func:`transactional_id`),
so a restarted worker aborts what its killed predecessor left open and fences it if it still runs. The offsets are
committed with group metadata of generation -1 (no group member), as Kafka accepts: a worker that lost its
partitions in a rebalance but does not know it yet is not fenced by the group's generation, as Kafka Streams'
``exactly_once_v2`` would be (faust's aiokafka consumer cannot hand its generation to confluent-kafka).

>>> gate = BatchGate()
>>> async def batch_then_commit():
...     async with gate.batch():
...         assert gate.busy == 1
...     async with gate.closed(deadline=None):
...         return gate.busy
>>> import asyncio; asyncio.run(batch_then_commit())
0
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

__all__ = ["BatchGate", "COMMIT_EVERY_S", "CommitOverlaps", "EXIT_TRANSACTION_FAILED", "TransactionFailed", "Transactions", "transactional_id"]

log = logging.getLogger("fraudstream.worker")

#: How often the open transaction commits (Kafka Streams' default commit interval under exactly-once). A
#: ``read_committed`` reader sees an output only once its transaction commits: it adds up to this much latency.
COMMIT_EVERY_S = 0.1
#: The worker's exit status when a transaction failed and it stopped (a supervisor restarts it).
EXIT_TRANSACTION_FAILED = 70
#: A commit that has waited this long for running batches says so (and again each time as long).
SLOW_WAIT_S = 5.0
#: How long a transactional call (init, send offsets, commit, abort) may wait for the broker.
CALL_TIMEOUT_S = 30.0


class CommitOverlaps(logging.Filter):
    """Drops mode's warning that faust's commit timer overran its interval: under exactly once a commit waits for the
    batches running, so at saturation it overruns 100 ms most of the time (a commit that is slow says so itself).

    >>> record = logging.LogRecord("mode.timers", logging.WARNING, "", 0, "Timer %s is overlapping (interval=%r runtime=%r)",
    ...                            ("commit", 0.1, 0.2), None)
    >>> CommitOverlaps().filter(record)
    False
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (str(record.msg).startswith("Timer %s is overlapping") and isinstance(args, tuple) and args[:1] == ("commit",))


class TransactionFailed(RuntimeError):
    """A transaction could not commit and was aborted: the worker's state in memory is no longer the broker's."""


class BatchGate:
    """Batches run side by side; a commit waits until none runs, and none starts until it is done."""

    def __init__(self) -> None:
        self.busy = 0
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Around one batch of an agent, from the first output it makes to its last."""
        since = time.monotonic()
        while not self._open.is_set():
            try:
                await asyncio.wait_for(self._open.wait(), SLOW_WAIT_S)
            except TimeoutError:
                log.warning("a batch has waited %.0fs for a commit to finish", time.monotonic() - since)
        self.busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.busy -= 1
            if not self.busy:
                self._idle.set()

    @asynccontextmanager
    async def closed(self, deadline: float | None) -> AsyncIterator[bool]:
        """No batch starts until the block is over; entered once the running ones finished (True), or at
        ``deadline`` (monotonic) with some still running (False)."""
        async with self._lock:
            self._open.clear()
            try:
                since = time.monotonic()
                while self.busy:
                    wait = SLOW_WAIT_S if deadline is None else min(max(deadline - time.monotonic(), 0.0), SLOW_WAIT_S)
                    try:
                        await asyncio.wait_for(self._idle.wait(), wait)
                    except TimeoutError:
                        if deadline is not None and time.monotonic() >= deadline:
                            break
                        log.warning("a commit has waited %.0fs for %d running batches", time.monotonic() - since,
                                    self.busy)
                yield not self.busy
            finally:
                self._open.set()


class Transactions:
    """The worker's producer, transactional: :meth:`commit` commits what it produced since the last commit with the
    input offsets given, and begins the next transaction.

    ``producer``: a confluent-kafka producer built with a ``transactional.id``; ``client``: the confluent-kafka
    client configuration; ``group_id``: the consumer group whose offsets are committed; ``before_commit``: awaited
    before each commit, with no batch running (produce the pending table writes, wait for every output);
    ``on_failed``: called with the error once a transaction was aborted (the worker stops there); ``call_timeout_s``:
    how long a transactional call may wait for the broker, retries included.
    """

    def __init__(self, producer: Any, client: dict[str, Any], group_id: str,
                 before_commit: Callable[[], Awaitable[None]], on_failed: Callable[[BaseException], None],
                 gate: BatchGate | None = None, call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.producer = producer
        self.call_timeout_s = call_timeout_s
        self.before_commit = before_commit
        self.on_failed = on_failed
        self.gate = BatchGate() if gate is None else gate
        self._offsets: dict[tuple[str, int], int] = {}
        # Group metadata of no member (generation -1): a consumer of the group that never joins it.
        self._group_consumer = Consumer({**client, "group.id": group_id, "enable.auto.commit": False})
        self.group_metadata = self._group_consumer.consumer_group_metadata()
        self.started = False
        self.commits = 0

    def start(self) -> None:
        """Abort whatever a previous incarnation of this worker left open (and fence it), and begin a transaction."""
        if self.started:
            return
        self.producer.init_transactions(self.call_timeout_s)
        self.producer.begin_transaction()
        self.started = True
        log.info("exactly once: transactions on (%s)", self.producer)

    async def commit(self, offsets: Callable[[], Awaitable[Any]] | Mapping[tuple[str, int], int],
                     deadline: float | None = None) -> bool:
        """Commit the open transaction once no batch runs, with the input offsets ((topic, partition) -> next offset
        to read) given, or handed to :meth:`add_offsets` while ``offsets()`` is awaited (faust's commit, which
        works out the offsets of the events acknowledged by then). False if batches still ran at ``deadline``.
        Aborts, calls ``on_failed`` and raises :class:`TransactionFailed` if it cannot commit."""
        if not self.started:
            return False
        asked = time.monotonic()
        async with self.gate.closed(deadline) as quiet:
            if not quiet:
                return False
            quiet_at = time.monotonic()
            await self.before_commit()
            self._offsets = {}
            if callable(offsets):
                await offsets()
            else:
                self._offsets.update(offsets)
            flushed_at = time.monotonic()
            self.commit_now(self._offsets)
            done = time.monotonic()
            if done - asked > SLOW_WAIT_S:
                log.warning("a commit took %.1fs: %.1fs waiting for batches, %.1fs for outputs and table writes, %.1fs "
                            "for the broker", done - asked, quiet_at - asked, flushed_at - quiet_at, done - flushed_at)
            return True

    def add_offsets(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Input offsets for the transaction :meth:`commit` is committing (faust's consumer hands them here)."""
        self._offsets.update(offsets)

    def commit_now(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit now, in one go: nothing can produce in between (this blocks the event loop for a round trip)."""
        producer = self.producer
        try:
            if offsets:
                tps = [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]
                self._call(lambda: producer.send_offsets_to_transaction(tps, self.group_metadata, self.call_timeout_s))
            self._call(lambda: producer.commit_transaction(self.call_timeout_s))
            producer.begin_transaction()
            self.commits += 1
        except KafkaException as exc:
            self._abort(exc)
            raise TransactionFailed(str(exc)) from exc

    def _call(self, call: Callable[[], None]) -> None:
        """``call``, again while the broker says to retry it (a coordinator moving, a timeout)."""
        deadline = time.monotonic() + self.call_timeout_s
        while True:
            try:
                call()
                return
            except KafkaException as exc:
                err = exc.args[0]
                if not err.retriable() or time.monotonic() > deadline:
                    raise
                log.warning("transaction call to retry: %s", err)
                time.sleep(0.05)

    def _abort(self, exc: KafkaException) -> None:
        err = exc.args[0]
        log.critical("transaction failed (%s): aborting it; the worker stops, its state in memory includes writes "
                     "the broker discards", err)
        if not err.fatal():
            try:
                self.producer.abort_transaction(self.call_timeout_s)
            except KafkaException as again:
                log.error("abort failed too (%s): the next start of this worker aborts it", again)
        self.on_failed(exc)

    def finish(self) -> None:
        """At a clean stop, once nothing produces any more: abort the transaction still open (what was produced since
        faust's last commit: nothing whose input offsets were committed), so that no open transaction of this worker
        holds back ``read_committed`` readers of its partitions after it is gone. As a SIGKILL would leave it, then
        aborted by the next incarnation of this worker; but a worker stopped for good does not come back."""
        if not self.started:
            return
        self.started = False
        try:
            self.producer.abort_transaction(min(self.call_timeout_s, 10.0))
        except KafkaException as exc:
            log.warning("could not abort the open transaction at stop (%s): the broker aborts it after "
                        "transaction.timeout.ms", exc.args[0])

    def close(self) -> None:
        self._group_consumer.close()


def transactional_id(app_id: str, state_dir: str) -> tuple[str, IO[bytes]]:
    """A transactional id stable across restarts of one worker, distinct between workers: the app id, the state
    directory, and the first slot of that directory no running worker holds (a lock file: workers sharing a directory
    get slots 0, 1, ...; the lock goes with the process, so a restarted worker gets its predecessor's slot back and
    fences it). Returns the id and the open lock file, to keep open as long as the worker runs."""
    directory = Path(state_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(directory).encode()).hexdigest()[:10]
    slot = 0
    while True:
        lock = open(directory / f"transactions-{slot}.lock", "ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            slot += 1
            continue
        os.set_inheritable(lock.fileno(), False)
        return f"{app_id}-{digest}-{slot}", lock
