"""Waiting for the broker: a batch's outputs, then (or, for the score stage, before them) its table writes.

A batch is acknowledged (its offsets may be committed) only once :meth:`Flusher.flush` finds every output on the
broker, however long a stalled broker takes (``fraudstream.stream.stall``). The table writes go to their changelogs
through the same producer (``fraudstream.stream.tables.ChangelogWriter``): those of the intake and merchant stages
in any order, any time after their batch's outputs; the score stage's in phases (:meth:`Flusher.durable`), all of
them before the batch's outputs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from fraudstream.metrics import Metrics
from fraudstream.stream.outputs import Output, Outputs
from fraudstream.stream.stall import StallWatch
from fraudstream.stream.tables import ChangelogWriter, TableMapping

__all__ = ["Flusher", "SEND_NOW_S"]

log = logging.getLogger("fraudstream.worker")

#: How long a flush first blocks for the broker's acknowledgements (then it polls, yielding to the other stages).
#: librdkafka sends a partition's queue when its linger is over, or while a flush with a timeout is running: a
#: ``flush(0)`` ends before its broker thread wakes, so every wait for outputs took the whole linger (10 ms a hop;
#: embedded broker on loopback, 100 records over 18 partitions: 9.5 ms median, 1.5 ms with this; docs/capacity.md,
#: "Latency"). The event loop waits this long at most, without the GIL.
SEND_NOW_S = 0.005


class Flusher:
    """Waits until what the stages made is on the broker: ``outputs``, and the table writes of ``changelog``, in the
    order of ``phases`` (tuples of tables, each phase delivered before the next is produced)."""

    def __init__(self, outputs: Outputs, changelog: ChangelogWriter, phases: Sequence[Sequence[TableMapping]],
                 stall: StallWatch, metrics: Metrics) -> None:
        self.outputs = outputs
        self.changelog = changelog
        self.phases = phases
        self.stall = stall
        self.metrics = metrics
        self.outputs_failing = False  # an output failed and is not yet delivered, once reported

    async def flush(self) -> None:
        """Wait until every output of the batch is on the broker (however long a stalled broker takes).

        Table writes pending from earlier batches go too: each was made once its batch's outputs were on the broker,
        so it may go any time after (the score stage's, which must go before its outputs, go in `durable`)."""
        self.changelog.send()
        outputs = self.outputs
        producer = outputs.producer
        remaining = producer.flush(SEND_NOW_S) + outputs.undelivered
        if not remaining:
            return
        since = time.monotonic()
        while remaining:
            await asyncio.sleep(0.001)
            outputs.retry()
            remaining = producer.flush(0) + outputs.undelivered
            self.stall.check(since, f"{remaining} outputs")
        self.stall.over()
        if self.outputs_failing:
            self.outputs_failing = False
            log.warning("outputs delivered again after %.1fs", time.monotonic() - since)

    def output_failed(self, output: Output, err: Any) -> None:
        """An output the broker did not take: `flush` produces it again, and waits (see `fraudstream.stream.outputs`)."""
        self.metrics.broker_errors.labels("output").inc()
        if not self.outputs_failing:  # once until they are delivered, not once per message or retry
            self.outputs_failing = True
            log.warning("output to %s not delivered (%s): producing it again until the broker takes it; nothing is "
                        "committed meanwhile", output[0], err)

    async def durable(self, deadline: float | None = None) -> bool:
        """Wait until every table write made so far is on its changelog, since the outputs of a score batch must not
        go before its state. The pending writes are produced now, each key once with its last value, in the phases
        of `phases`, each delivered before the next is produced: a crash in between leaves what a restart repairs
        (`ScoreStage.replay`: a snapshot ahead of its standing and threshold), never a threshold ahead of the
        standings it counts, nor a standing ahead of the snapshot of the authorization that changed it. A write that
        fails is produced again (`ChangelogWriter`). False only if ``deadline`` (monotonic) came first."""
        since = time.monotonic()
        for tables in self.phases:
            if not await self.deliver(tables, since, deadline):
                return False
        self.changelog.persist()
        self.stall.over()
        return True

    async def deliver(self, tables: Any, since: float, deadline: float | None = None) -> bool:
        """Produce what ``tables`` have pending, then wait until no table write at all is in flight."""
        w = self.changelog
        producer = w.producer  # the confluent producer the writes go through
        if w.send(tables):
            producer.flush(SEND_NOW_S)  # sent now, not after the linger (see SEND_NOW_S)
        while w.inflight or w.pending(tables):
            producer.flush(0)  # serves the delivery reports
            if w.pending(tables):
                w.send(tables)  # failed writes, or what a full queue held back
            if not w.inflight and not w.pending(tables):
                break
            if deadline is not None and time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.001)
            self.stall.check(since, f"{w.inflight + w.pending(tables)} table writes")
        return True

    def write_tables(self) -> None:
        """Table writes nobody awaits (merchant state from labels, ...) reach their changelogs within a timer tick."""
        w = self.changelog
        w.send()
        w.producer.poll(0)  # delivery reports: failed writes marked pending again, offsets for the stores
        w.persist()

    async def after_faust_flush(self) -> None:
        """Whenever faust flushes before it commits (`faust_patches.flush_with_faust`): the table writes that may go in
        any order. The score stage's state goes in order, from its own `durable` (and that of a batch is delivered
        before the batch is acknowledged, so before its offsets can be committed)."""
        await self.deliver(self.changelog.free, time.monotonic())
        self.changelog.persist()
        self.stall.over()
