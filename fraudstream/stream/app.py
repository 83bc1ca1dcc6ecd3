"""The faust app: topics, tables, agents and timers, thin wiring around the stages (``fraudstream.stream.stages``).

Data path (each arrow is a Kafka topic, so state is partitioned by its key):

    fraud.authorizations (card) ─ validate, card features, merchant features, score, rules, decision ─▶
    fraud.scores, fraud.alerts, fraud.merchant-partials (each card partition's merchant events)

    fraud.labels (card) ─ join snapshot ─▶ fraud.training-examples (1 partition)

Every worker reads all of fraud.training-examples in order (see
:mod:`fraudstream.stream.learning`), so all workers score with one model, and all
of fraud.merchant-partials into replicas of every card partition's merchant
states (:mod:`fraudstream.stream.partials`), which a merchant's features add up.

Faust does what it is for here: group membership, partition assignment,
tables and their changelogs (patched where it falls short:
:mod:`fraudstream.stream.faust_patches`). Authorizations are taken in whole
batches straight from the consumer's fetch (:mod:`fraudstream.stream.lanes`),
not through faust streams, and pass once through the score stage; the labels,
reissues and card events, a few per authorization, come through faust agents.
Each loop hands its messages to a stage, a plain class; the stages produce with
one confluent-kafka producer, flushed before the batch is acknowledged, so an
offset is never committed before its outputs exist. This module decides when:
the score stage's state, then its outputs, then the card state; and the table
writes' changelog phases (`fraudstream.stream.flushing`).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust

from fraudstream.config import Settings
from fraudstream.contracts import DeadLetter, Rejection, encode
from fraudstream.core.decision import CardStanding
from fraudstream.core.features.card import DAY_MS, CardState
from fraudstream.core.features.partials import MerchantPartials
from fraudstream.core.maturity import maturity_delays
from fraudstream.core.scorer import FraudScorer, blank_standing
from fraudstream.core.snapshot import EncodedSnapshots
from fraudstream.core.state import StateStore
from fraudstream.metrics import Metrics
from fraudstream.stream import faust_patches
from fraudstream.stream.card_index import DerivedCardIndex
from fraudstream.stream.delivery import batches, fresh, let_go
from fraudstream.stream.flushing import Flusher
from fraudstream.stream.gauges import Gauges
from fraudstream.stream.heap import release_free_heap
from fraudstream.stream.lanes import LANES, Lane, acknowledge, lane_batches
from fraudstream.stream.learning import ModelFollower, RuleFollower
from fraudstream.stream.maturity import TableMaturityQueue
from fraudstream.stream.outputs import Output, Outputs
from fraudstream.stream.pacing import BatchPacing
from fraudstream.stream.partials import PartialsFollower
from fraudstream.stream.snapshot_views import SnapshotViews
from fraudstream.stream.stages import CardEventStage, CardTables, DeadLetters, LabelOutcomes, OwnMerchants, ScoreStage
from fraudstream.stream.stall import STALL_AFTER_S, StallWatch
from fraudstream.stream.tables import ChangelogWriter, RocksDBMemory, TableMapping, TaggedMapping
from fraudstream.stream.transactions import (
    COMMIT_EVERY_S,
    EXIT_TRANSACTION_FAILED,
    BatchGate,
    CommitOverlaps,
    Transactions,
    transactional_id,
)

__all__ = ["EXIT_BATCH_FAILED", "FraudApp"]

log = logging.getLogger("fraudstream.worker")

#: Idle cards and merchants are looked for once per day of event time: they are idle for a month before they go.
EVICT_EVERY_MS = DAY_MS
#: Free heap goes back to the system this often (wall clock): a few milliseconds each time.
HEAP_RELEASE_EVERY_S = 30.0
#: Records fetched and waiting for their stage, per lane, at most (faust's stream buffer held as many).
LANE_LIMIT = 4096
#: The worker's exit status when a batch of authorizations fails half done (`FraudApp._batch_failed`).
EXIT_BATCH_FAILED = 71
#: How long the worker's producer waits to fill a produce batch, at most (see where it is built).
OUTPUTS_LINGER_MS = 10


class FraudApp:
    """Builds the faust app for ``settings`` against ``bootstrap`` (host:port)."""

    def __init__(self, settings: Settings, bootstrap: str, metrics: Metrics | None = None) -> None:
        self.settings = s = settings
        self.bootstrap = bootstrap
        self.metrics = metrics or Metrics()
        # Exactly once: faust's commits are our transactions' (fraudstream.stream.transactions), this often.
        commits: dict[str, Any] = {"broker_commit_interval": COMMIT_EVERY_S} if s.exactly_once else {}
        self.app = faust.App(
            s.app_id,
            broker=[f"kafka://{host}" for host in bootstrap.split(",")],
            store=s.store,
            datadir=s.state_dir,
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication_factor,
            broker_session_timeout=s.session_timeout_s,
            broker_heartbeat_interval=max(0.5, s.session_timeout_s / 6),
            broker_request_timeout=max(40.0, s.session_timeout_s + 10),
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=False,
            table_standby_replicas=0,
            stream_wait_empty=False,
            broker_credentials=_faust_credentials(s),
            logging_config=None,
            producer_linger=0.005,
            **commits,
        )
        connected = s.with_overrides(broker=f"kafka://{bootstrap}")
        client = connected.kafka_client_config()
        # One request in flight: a retried batch cannot overtake a later one, so each partition keeps the order
        # in which the stages produced (the merchant stage relies on it to recognise re-sent authorizations).
        # Outputs that fail are produced again, never dropped (fraudstream.stream.outputs): `flush` waits for them.
        # Exactly once: the producer is transactional, with an id stable across restarts of this worker.
        # A batch's outputs go when its flush sends them (`Flusher`), in one produce batch per partition if the linger
        # outlasts their production: with 2 ms a stage's outputs went in pieces while it was still producing them (at
        # 200/s, 2.5 produce batches per partition and batch), and the embedded broker's cost follows its batches.
        # Not longer: flush(0) does not always make librdkafka send at once (its broker thread may wake after the
        # call), and a linger of 500 ms put 130-250 ms into each hop at 700/s (bench --quick --rate 700).
        transactional: dict[str, Any] = {}
        if s.exactly_once:
            tid, self._transactional_lock = transactional_id(s.app_id, s.state_dir)
            transactional = {"transactional.id": tid, "transaction.timeout.ms": 10_000}
        self.outputs = Outputs(connected.producer_config(**{"linger.ms": OUTPUTS_LINGER_MS, "max.in.flight.requests.per.connection": 1,
                                                            "error_cb": self._on_producer_error, **transactional}),
                               on_failed=self._on_output_failed, on_rejected=self._on_output_rejected)
        self.producer = self.outputs.producer
        #: Batches in progress: a transaction commits only between them (fraudstream.stream.transactions).
        self.gate = BatchGate()
        self.stall = StallWatch(self.metrics)
        self._define_topics()
        self._define_tables()
        # Table changelogs go through the same producer as the outputs (see fraudstream.stream.tables). The card state
        # may reach them in any order; the rest of the score stage's, in phases (`Flusher.durable`).
        self.changelog = ChangelogWriter(self.producer, self.tables, self._on_changelog_error, free=(self.card_table,))
        phases = ((self.card_table, self.snapshot_table, self.maturity_table),
                  (self.standing_table, self.early_label_table), (self.threshold_table,))
        self.flusher = Flusher(self.outputs, self.changelog, phases, self.stall, self.metrics)
        self.transactions: Transactions | None = None
        if s.exactly_once:
            self.transactions = Transactions(self.producer, client, s.app_id, self._before_commit,
                                             self._on_transaction_failed, self.gate)
            self.transactions.start()
            # faust's last commit ends the transactions of the input processed; what is produced after it (the
            # checkpoint at shutdown, timers) is aborted as the process exits, not left open for good.
            atexit.register(self.transactions.finish)
            logging.getLogger("mode.timers").addFilter(CommitOverlaps())
        # faust could step over messages around a rebalance, and commit them unprocessed (fraudstream.stream.delivery);
        # and more (fraudstream.stream.faust_patches).
        faust_patches.apply(self.app, client, [s.topic_authorizations, s.topic_labels, s.topic_card_reissues, s.topic_card_events],
                            s.fetch_wait_ms, s.fetch_wait_idle_ms, rocksdb=self.rocksdb_memory is not None,
                            after_faust_flush=self.flusher.after_faust_flush, transactions=self.transactions,
                            revoke_within_s=s.session_timeout_s / 2)
        # Crash safety: each card's state carries the offset of the newest authorization it includes, in the same
        # changelog record.
        self.card_durable = TaggedMapping(self.card_table, lambda k: str(self.score.card_offset(k)).encode())
        # Bounded live caches (`StateStore.trim`): the tables hold every card of the last month, the heap the busy ones.
        live = s.live_states_max
        cards = StateStore(CardState, CardState.from_bytes, self.card_durable, capacity=live)
        standings = StateStore(CardStanding, CardStanding.from_bytes, self.standing_table, capacity=live, blank=blank_standing)
        # Merchant states: every card partition's replicas, which every worker keeps from fraud.merchant-partials, the
        # partitions scored here included (`OwnMerchants`): no table of their own, no store in the scorer.
        self.merchant_partials = MerchantPartials(s.partitions, grace_ms=s.grace_ms, replicated=True)
        self.scorer = FraudScorer(
            s,
            cards=cards,
            standings=standings,
            snapshots=EncodedSnapshots(self.snapshot_table),
            pending=self.maturity_queue,
            card_index=self.card_index,
            early_labels=self.early_label_table,
            learn_inline=False,
            merchant_partials=self.merchant_partials,
        )
        # A card's recent (ts, tx_id) list holds up to 512 entries (tens of KB as objects): a tenth as many stay live.
        self.scorer.card_index.capacity = max(1, live // 10)
        # Both rebuilt from one read of the snapshots at each recovery, dropped with their partitions.
        SnapshotViews(self.snapshot_table, [self.card_index.view(self.scorer.card_index),
                                            self.maturity_queue.view()]).follow(self.app)
        # The stages: plain classes, a batch in, outputs out (fraudstream.stream.stages). They share one sink, one
        # dead-letter writer and one record of the offsets reached (for the lag gauges).
        m, out = self.metrics, self.outputs
        self.positions: dict[tuple[str, int], int] = {}
        self.dead_letters = DeadLetters(s, m, out)
        card_tables = CardTables(self.standing_table, self.card_index, self.snapshot_table, self.early_label_table,
                                 self.threshold_table, self.maturity_table)
        self.own_merchants = OwnMerchants(self.scorer)
        self.label_outcomes = LabelOutcomes(s, m, out, self.own_merchants)
        self.score = ScoreStage(s, m, out, self.dead_letters, self.scorer, card_tables, self.label_outcomes,
                                self.own_merchants, self.card_table, self.card_durable, self.positions)
        self.card_events = CardEventStage(s, m, out, self.dead_letters, self.scorer, card_tables, self.label_outcomes,
                                          self.positions)
        self.model_follower = ModelFollower(self, client)
        self.rule_follower = RuleFollower(self, client)
        self.partials_follower = PartialsFollower(self.merchant_partials, s.topic_merchant_partials, self._partials_consumer,
                                                  client, self.dead_letter, scored_here=self.own_merchants.seeded)
        # Held by a batch from its first merchant event to their publishing (the score stage: after its state is
        # durable): each record of fraud.merchant-partials then holds one batch's events, in the order they were taken.
        self._merchant_lock = asyncio.Lock()
        self._assignments = 0  # assignments so far: a seeding that began before the latest one is not finished
        self._busy = 0
        self._evicted_at = 0  # event time of the last eviction
        self._forgotten_reported = 0  # merchants the replicas forgot, counted as evicted
        self._evicting = False  # deletions made, not yet on their changelogs
        self.gauges = Gauges(s, m, self.scorer, self.tables, self.card_table, self.rocksdb_memory,
                             self.score, self.label_outcomes.quality, self.positions, lambda: self.app.consumer)
        self._define_agents()
        self._define_timers()

    # --- wiring -------------------------------------------------------------
    def pacing(self) -> BatchPacing | None:
        """One agent's batch pacing: fuller batches while traffic is slow (``FRAUDSTREAM_BATCH_FILL``; None, the
        default, with Apache Kafka: no pacing, and no per-batch work for it). For the loops of what comes from outside
        (authorizations, labels, reissues) and of the low-rate internal topics."""
        s = self.settings
        if not s.batch_fill:
            return None
        return BatchPacing(s.batch_window_s, s.batch_fill, s.batch_window_max_s)

    def _define_topics(self) -> None:
        s, app = self.settings, self.app
        # Topics are created by `fraudstream topics create` from topics/; faust only reads them.
        self.t_auth = app.topic(s.topic_authorizations, partitions=s.partitions)
        # Subscribed (faust assigns its partitions, commits their offsets), each record put in the lane by the
        # consumer's fetch, never handed to a faust stream (fraudstream.stream.lanes).
        self.lane = Lane(s.topic_authorizations, max(LANE_LIMIT, 2 * s.batch_size))
        LANES[s.topic_authorizations] = self.lane
        app.topics.add(self.t_auth.clone(is_iterator=True))  # type: ignore[arg-type]  # a Topic, as faust adds it itself
        self.t_labels = app.topic(s.topic_labels, partitions=s.partitions)
        self.t_reissues = app.topic(s.topic_card_reissues, partitions=s.partitions)
        self.t_card_events = app.topic(s.topic_card_events, partitions=s.partitions)

    def _define_tables(self) -> None:
        app, n = self.app, self.settings.partitions
        kw: dict[str, Any] = {"partitions": n, "key_type": bytes, "value_type": bytes, "default": None}
        self.rocksdb_memory: RocksDBMemory | None = None
        if self.settings.store.startswith("rocksdb"):
            # faust gives each table partition 3 x 64 MB of write buffers and a 2 GB cache: one bound for them all.
            self.rocksdb_memory = RocksDBMemory(1024 * 1024 * max(self.settings.rocksdb_memory_mb, 8))
            kw["options"] = self.rocksdb_memory.table_options()
        self.card_table = TableMapping(app.Table("cards", **kw))
        self.standing_table = TableMapping(app.Table("card-standings", **kw))
        self.snapshot_table = TableMapping(app.Table("snapshots", **kw))
        # Where learning stands per partition (fraudstream.stream.maturity).
        self.maturity_table = TableMapping(app.Table("maturity", **kw))
        # Each card's recent (ts, tx_id): derived from the snapshots, no changelog (fraudstream.stream.card_index).
        self.card_index = DerivedCardIndex(self.snapshot_table, self.rocksdb_memory, Path(self.settings.state_dir) / "card-index")
        # The maturity queue: its entries derived from the snapshots too; where learning stands in `maturity`.
        feedback_ms, maturity_ms = maturity_delays(self.settings)
        self.maturity_queue = TableMaturityQueue(
            self.maturity_table, self.owned_score_partitions, home=self.snapshot_table.stored_partition,
            feedback_ms=feedback_ms, maturity_ms=maturity_ms, snapshots=self.snapshot_table,
            rocksdb=self.rocksdb_memory, directory=Path(self.settings.state_dir) / "maturity-index")
        self.early_label_table = TableMapping(app.Table("early-labels", **kw))
        # str(partition) -> the decision policy (adaptive threshold) of that partition of the enriched topic
        self.threshold_table = TableMapping(app.Table("thresholds", **kw))
        self.tables = (self.card_table, self.standing_table, self.snapshot_table, self.maturity_table,
                       self.early_label_table, self.threshold_table)

    def _define_agents(self) -> None:
        s, app = self.settings, self.app

        # Crash safety. Offsets are committed some seconds after a batch is acknowledged, and table writes reach
        # their changelogs on their own schedule, so after a SIGKILL a restarted worker sees again messages whose
        # effects may or may not be in its tables. The score stage is written so that either case gives the same
        # result (`fraudstream.stream.stages.score`): its snapshots, standings and thresholds are on their changelogs
        # before any score, alert or merchant event is produced, so a redelivered authorization is answered from its
        # snapshot (and a snapshot whose threshold and standing updates did not reach their changelogs is replayed
        # into them); the card state goes after the outputs, tagged with the offset it includes, so an authorization
        # it includes is skipped. `lane_batches` and `batches`: a batch cut short (a loop cancelled at shutdown while
        # it waits for the broker) is not committed.
        # Authorizations are taken in whole batches from their lane (fraudstream.stream.lanes), not from a faust
        # stream: faust's per-message hand-off cost more than the rest of the worker.

        async def score_stage() -> None:
            # With nothing new, still every 50 ms: authorizations held for other partitions' merchant partials go on
            # as those come (`PartialsFollower`).
            async for messages in lane_batches(self.lane, self._consumer, s.batch_size, s.batch_window_s, self.pacing(),
                                               patience=0.05):
                # Not before the model is restored and has caught up: a restart must not score with an older one.
                while not self.model_follower.ready:
                    await asyncio.sleep(0.05)
                messages = fresh(messages)  # the partitions may have been revoked meanwhile
                await self.partials_follower.poll()
                if not messages and not any(self.score.waiting.values()):
                    continue
                self._busy += 1
                try:
                    async with self.gate.batch(), self._merchant_lock:
                        try:
                            released = self.score.batch(messages)
                            await self.flusher.durable()
                            self.score.send()
                            await self.flusher.flush()
                            self.score.commit()
                        except Exception as exc:
                            self._batch_failed(exc)
                    # Held authorizations were kept from being committed: now they may be.
                    for message in released:
                        let_go(message)
                    acknowledge(self.app.consumer, released)
                finally:
                    self._busy -= 1

        app.task(_restarting("score", score_stage))

        @app.agent(self.t_labels, name="labels")
        async def label_intake(stream: Any) -> None:
            async for events in batches(stream, s.batch_size, s.batch_window_s, self.pacing()):
                async with self.gate.batch():
                    self.card_events.intake([event.message for event in events], "label")
                    await self.flusher.flush()

        @app.agent(self.t_reissues, name="card-reissues")
        async def reissue_intake(stream: Any) -> None:
            async for events in batches(stream, s.batch_size, s.batch_window_s, self.pacing()):
                async with self.gate.batch():
                    self.card_events.intake([event.message for event in events], "reissue")
                    await self.flusher.flush()

        @app.agent(self.t_card_events, name="card-events")
        async def card_event_stage(stream: Any) -> None:
            async for events in batches(stream, s.batch_size, s.batch_window_s, self.pacing()):
                messages = [event.message for event in events]
                # A label's news goes to its card partition's own merchant state: seeded first.
                while not {m.partition for m in messages} <= self.own_merchants.seeded:
                    await asyncio.sleep(0.01)
                async with self.gate.batch(), self._merchant_lock:
                    self.card_events.batch(messages)
                    await self.flusher.flush()
                    await self.flusher.durable()  # the standings and snapshots it changed, in order

        self.agents = (label_intake, reissue_intake, card_event_stage)

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust's stubs want (sender, *args, signal=)
        async def on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
            # A batch between its outputs and its state write must finish first: dropping its unwritten state
            # would lose it, though its offsets get committed. (faust does not wait: stream_wait_empty=False.)
            deadline = time.monotonic() + self.settings.session_timeout_s / 2
            while self._busy and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            if self._busy:
                log.warning("partitions revoked while a batch is still waiting for the broker")
            # What those batches wrote, to the changelogs the partitions' next owner recovers from.
            if not await self.flusher.durable(max(deadline, time.monotonic() + 1.0)):
                log.warning("partitions revoked before every table write reached its changelog")
            # Cached state objects may belong to partitions that move away:
            # forget them all; they reload from the tables on next use (merchant states: from the replicas).
            self.scorer.cards.drop_live(lambda k: False)
            self.scorer.standings.drop_live(lambda k: False)
            self.scorer.card_index.drop_live()
            self.scorer.pending.clear()
            self.scorer.policies.clear()  # reloaded from the thresholds table, possibly advanced by another worker
            # Held authorizations were never committed: after the rebalance faust seeks every partition back to
            # its committed offset, so they come again, to whoever owns their partition then.
            self.score.forget()

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # faust's stubs want (sender, *args, signal=)
        async def on_assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
            # Every partition's previous owner published its merchant events before it let go (`on_revoked`): read
            # to their end, they are what this worker's own merchant states start from.
            self._assignments += 1
            self._seed({tp.partition for tp in assigned if tp.topic == s.topic_authorizations})

    def _define_timers(self) -> None:
        app = self.app

        # A timer that raises would crash the whole worker: log and carry on.
        @app.timer(interval=5.0)
        async def report() -> None:
            _guarded(self.gauges.report)

        @app.timer(interval=5.0)
        async def evict() -> None:
            _guarded(self.evict_idle_state)
            if self._evicting:
                await self.flusher.durable()  # the deletions, onto their changelogs in the score stage's order
                self._evicting = False

        # Resident memory that follows the live states, not the worst moment since the start (see `heap`).
        @app.timer(interval=HEAP_RELEASE_EVERY_S)
        async def release_heap() -> None:
            _guarded(self.release_heap)

        # An idle worker waits for nothing, so a frozen broker would go unnoticed: ask it something now and then.
        @app.timer(interval=STALL_AFTER_S)
        async def probe_broker() -> None:
            await self.stall.probe(self.producer)

        # A card partition with nothing new must not hold back the others' merchant features.
        @app.timer(interval=max(0.05, self.settings.source_idle_s / 2))
        async def announce_idle() -> None:
            async with self._merchant_lock:
                _guarded(self.announce_idle_sources)

        @app.timer(interval=0.2)
        async def follow() -> None:
            _guarded(self.model_follower.poll)
            _guarded(self.rule_follower.poll)
            _guarded(self.flusher.write_tables)
            try:
                await self.partials_follower.poll()
            except Exception:
                log.exception("reading the merchant partials failed; will retry")

        @app.task
        async def bootstrap_model() -> None:
            await asyncio.get_running_loop().run_in_executor(None, self.model_follower.restore)

        @app.on_before_shutdown.connect  # type: ignore[arg-type]  # faust's stubs want (sender, *args, signal=)
        async def on_shutdown(app: Any, **kwargs: Any) -> None:
            self.changelog.send()  # delivered by the checkpoint's flush
            self.model_follower.checkpoint_on_shutdown()
            await self.partials_follower.stop()

    def _consumer(self) -> Any:
        return self.app.consumer

    def _partials_consumer(self) -> Any:
        """An aiokafka consumer of no group for fraud.merchant-partials, built as faust builds its own (credentials
        included): with exactly once it reads committed records only, as faust's patched fetcher gives them."""
        import aiokafka
        from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

        s, conf = self.settings, self.app.conf
        return aiokafka.AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap.split(","), enable_auto_commit=False, auto_offset_reset="earliest",
            isolation_level="read_committed" if s.exactly_once else "read_uncommitted",
            fetch_max_wait_ms=s.fetch_wait_ms, request_timeout_ms=int(conf.broker_request_timeout * 1000.0),
            **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context))

    # --- the producer's callbacks -------------------------------------------------
    def _on_producer_error(self, err: Any) -> None:
        """librdkafka's errors outside any one message (broker down, transport errors)."""
        self.metrics.broker_errors.labels(f"producer{err.name()}".lower()).inc()
        log.warning("broker error (producer): %s", err)
        if self.transactions is not None and err.fatal():  # fenced by a newer incarnation of this worker, say
            self._on_transaction_failed(err)

    def _on_output_failed(self, output: Output, err: Any) -> None:
        self.flusher.output_failed(output, err)
        if self.transactions is not None:  # the open transaction cannot commit now: producing again cannot mend it
            self._on_transaction_failed(err)

    async def _before_commit(self) -> None:
        """Exactly once, before a transaction commits (no batch running): every table write and output in it."""
        await self.flusher.durable()
        await self.flusher.flush()

    def _on_transaction_failed(self, err: Any) -> None:
        """A transaction was aborted (or cannot commit): the tables in memory hold writes the broker discards, so the
        worker stops at once, as a SIGKILL would; restarted, it recovers what the broker committed."""
        log.critical("exactly once: transaction failed (%s); stopping the worker (exit %d) so that it restarts from "
                     "what the broker committed", err, EXIT_TRANSACTION_FAILED)
        logging.shutdown()
        os._exit(EXIT_TRANSACTION_FAILED)

    def _on_output_rejected(self, output: Output, err: Any) -> None:
        """An output the broker can never take (too large): dead-lettered with its first bytes and where it was going."""
        topic, value, key, partition = output
        self.metrics.broker_errors.labels("output_rejected").inc()
        log.error("output to %s rejected (%s, %d bytes)", topic, err, len(value or b""))
        if topic == self.settings.topic_dead_letter:
            return  # a dead letter is cut to fit; this is only reachable with a broker limit below that
        # Its first bytes (DeadLetter cuts them to fit) and where it was going; no offset, it was never written.
        letter = DeadLetter.of(Rejection("output_rejected", f"{err.str()}: {len(value or b'')} bytes"), value, key,
                               topic, -1 if partition is None else partition, -1)
        self.outputs.produce(self.settings.topic_dead_letter, encode(letter))
        self.metrics.dead_letters.labels(topic, "output_rejected").inc()

    def _on_changelog_error(self, table: TableMapping, partition: int, err: Any) -> None:
        self.metrics.broker_errors.labels("changelog").inc()
        log.warning("changelog write to %s[%d] failed (%s); writing it again", table.table.name, partition, err)

    # --- upkeep -------------------------------------------------------------------
    def announce_idle_sources(self) -> None:
        """Card partitions of this worker that are caught up and quiet: the others stop waiting for them."""
        self.score.announce_idle(self.app.consumer)
        self.own_merchants.publish(self.outputs, self.settings.topic_merchant_partials)
        self.outputs.poll()

    def _seed(self, partitions: set[int]) -> None:
        """In the background: ``partitions``' merchant events read to their end, then their own states seeded from the
        replicas (`OwnMerchants.seed`); their authorizations wait until then. Not if another assignment came first."""
        assignment = self._assignments

        async def seed() -> None:
            try:
                await self.partials_follower.catch_up(partitions)
            except Exception:
                log.exception("could not read the merchant partials of partitions %s; trying again", sorted(partitions))
                await asyncio.sleep(1.0)
                if assignment == self._assignments:
                    self._seed(partitions)
                return
            if assignment == self._assignments:
                for p in partitions:
                    self.own_merchants.seed(p)

        asyncio.ensure_future(seed())

    def _batch_failed(self, exc: Exception) -> None:
        """A score batch raised between its first merchant event and their publishing (not a message's failure:
        those are dead-lettered). Its events are in this worker's replicas and nowhere else, and a batch read again
        would take them for published (`OwnMerchants`): the worker stops at once, as a SIGKILL would; restarted, it
        reads every partition's events from the topic again."""
        log.critical("a batch of authorizations failed (%s: %s) after its merchant events were taken, before they were "
                     "published; stopping the worker (exit %d) so that it restarts from what the broker has",
                     type(exc).__name__, exc, EXIT_BATCH_FAILED, exc_info=exc)
        logging.shutdown()
        os._exit(EXIT_BATCH_FAILED)

    def dead_letter(self, rejection: Rejection, msg: Any) -> None:
        """Bad input to the dead-letter topic, with its reason, counted (the model and rule followers' too)."""
        self.dead_letters.send(rejection, msg)

    def owned_score_partitions(self) -> set[int]:
        """The partitions of the enriched topic, and of the score stage's tables, that this worker is active for."""
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.settings.topic_authorizations}

    def release_heap(self) -> None:
        started = time.perf_counter()
        if release_free_heap():
            took = time.perf_counter() - started
            (log.info if took > 0.05 else log.debug)("free heap returned to the system in %.1f ms", took * 1000)

    def evict_idle_state(self) -> None:
        """Cards, standings and merchants idle longer than their longest window leave the tables (a blocked card's
        standing stays until its reissue), once per day of event time: a replay of last year evicts as it goes, by
        the authorizations' ``ts``, not the wall clock. Only between batches: the deletions are written at once."""
        now = self.score.event_time
        if self._busy or not now or now - self._evicted_at < EVICT_EVERY_MS:
            return
        self._evicted_at = now
        scorer = self.scorer
        # Merchants leave every worker's replicas as event time passes their partitions' days (`forget_idle`).
        forgotten = self.merchant_partials.forgotten
        evicted = scorer.evict_idle(now) + forgotten - self._forgotten_reported
        self._forgotten_reported = forgotten
        if evicted:
            scorer.cards.flush()
            scorer.standings.flush()
            # Caches of the tags written with those states (they read back from the tables when needed).
            self.score.card_offsets.clear()
            self._evicting = True
            self.metrics.evicted.inc(evicted)
            log.info("evicted %d idle card, standing and merchant states (event time %d)", evicted, now)

def _restarting(name: str, loop: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``loop`` run again whenever it fails, as faust restarts a crashed agent (its unfinished batch is read again)."""
    async def run() -> None:
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the %s loop failed; starting it again", name)
                await asyncio.sleep(1.0)

    run.__name__ = run.__qualname__ = name.replace("-", "_")
    return run


def _guarded(fn: Any) -> None:
    try:
        fn()
    except Exception:
        log.exception("periodic task %s failed; will retry", getattr(fn, "__qualname__", fn))


def _faust_credentials(s: Settings) -> Any:
    if s.sasl_mechanism:
        ssl_context = None
        if s.security_protocol.endswith("SSL"):
            ssl_context = _ssl_context(s)
        return faust.SASLCredentials(username=s.sasl_username, password=s.sasl_password, mechanism=s.sasl_mechanism,
                                     ssl_context=ssl_context)
    if s.security_protocol == "SSL":
        return faust.SSLCredentials(_ssl_context(s))
    return None


def _ssl_context(s: Settings) -> Any:
    import ssl

    ctx = ssl.create_default_context(cafile=s.ssl_cafile or None)
    if s.ssl_certfile:
        ctx.load_cert_chain(s.ssl_certfile, s.ssl_keyfile or None)
    return ctx
