"""The faust app: topics, tables and agents, thin wiring around the core.

Data path (each arrow is a Kafka topic, so state is partitioned by its key):

    fraud.authorizations (card) ─ intake: validate, dead-letter ─▶
    fraud.authorizations-by-merchant (merchant) ─ merchant features ─▶
    fraud.authorizations-enriched (card) ─ card features, score, rules, decision ─▶
    fraud.scores, fraud.alerts

    fraud.labels (card) ─ join snapshot ─▶ fraud.training-examples (1 partition)
                                        └▶ fraud.merchant-labels (merchant)

Every worker reads all of fraud.training-examples in order (see
:mod:`fraudstream.stream.learning`), so all workers score with one model.

Faust does what it is for here: group membership, partition assignment,
tables and their changelogs. The hot path takes batches from each stream
and produces with one confluent-kafka producer, flushed before the batch
is acknowledged, so an offset is never committed before its outputs exist.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import zlib
from typing import Any

import faust

from fraudstream.config import Settings
from fraudstream.contracts import (
    Authorization,
    CardReissue,
    DeadLetter,
    Label,
    Rejection,
    decode,
    decode_authorization,
    decode_card_reissue,
    decode_label,
    encode,
)
from fraudstream.core.decision import CardStanding
from fraudstream.core.features.card import DAY_MS, HOUR_MS, CardState
from fraudstream.core.features.merchant import MerchantState
from fraudstream.core.features.ordering import EventTimeOrder
from fraudstream.core.model.quality import QualityWindow
from fraudstream.core.scorer import FraudScorer, MerchantLabel
from fraudstream.core.snapshot import EncodedSnapshots
from fraudstream.core.state import StateStore
from fraudstream.logs import mask
from fraudstream.metrics import Metrics
from fraudstream.stream import faust_patches
from fraudstream.stream.delivery import batches, fresh, hold, let_go
from fraudstream.stream.heap import allocator_usage, release_free_heap
from fraudstream.stream.learning import ModelFollower, RuleFollower
from fraudstream.stream.maturity import TableMaturityQueue
from fraudstream.stream.outputs import Output, Outputs
from fraudstream.stream.tables import ChangelogWriter, RocksDBMemory, TableMapping, TaggedMapping

__all__ = ["FraudApp"]

log = logging.getLogger("fraudstream.worker")

#: Outputs or table writes waiting this long for the broker make a stall: counted and logged.
STALL_AFTER_S = 5.0
#: Idle cards and merchants are looked for once per day of event time: they are idle for a month before they go.
EVICT_EVERY_MS = DAY_MS
#: Free heap goes back to the system this often (wall clock): a few milliseconds each time.
HEAP_RELEASE_EVERY_S = 30.0


class FraudApp:
    """Builds the faust app for ``settings`` against ``bootstrap`` (host:port)."""

    def __init__(self, settings: Settings, bootstrap: str, metrics: Metrics | None = None) -> None:
        self.settings = s = settings
        self.bootstrap = bootstrap
        self.metrics = metrics or Metrics()
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
        )
        connected = s.with_overrides(broker=f"kafka://{bootstrap}")
        client = connected.kafka_client_config()
        # One request in flight: a retried batch cannot overtake a later one, so each partition keeps the order
        # in which the stages produced (the merchant stage relies on it to recognise re-sent authorizations).
        # Outputs that fail are produced again, never dropped (fraudstream.stream.outputs): `flush` waits for them.
        self.outputs = Outputs(connected.producer_config(**{"linger.ms": 2, "max.in.flight.requests.per.connection": 1,
                                                            "error_cb": self._on_producer_error}),
                               on_failed=self._on_output_failed, on_rejected=self._on_output_rejected)
        self.producer = self.outputs.producer
        self._stalled_since: float | None = None  # when the current stall began, once reported
        self._outputs_failing = False  # an output failed and is not yet delivered, once reported
        self._define_topics()
        self._define_tables()
        # Table changelogs go through the same producer as the outputs (see fraudstream.stream.tables). Intake and
        # merchant state may reach them in any order; the score stage's, in phases (`durable`).
        self.changelog = ChangelogWriter(self.producer, self.tables, self._on_changelog_error,
                                         free=(self.card_table, self.merchant_table))
        self.changelog_phases = ((self.card_table, self.merchant_table, self.snapshot_table, self.maturity_table),
                                 (self.standing_table, self.index_table, self.early_label_table), (self.threshold_table,))
        # faust could step over messages around a rebalance, and commit them unprocessed (fraudstream.stream.delivery);
        # and more (fraudstream.stream.faust_patches).
        faust_patches.apply(self.app, client, [s.topic_authorizations, s.topic_by_merchant, s.topic_enriched, s.topic_labels,
                                               s.topic_merchant_labels, s.topic_card_reissues, s.topic_card_events],
                            s.fetch_wait_ms, s.fetch_wait_idle_ms, rocksdb=self.rocksdb_memory is not None,
                            after_faust_flush=self._after_faust_flush)
        # Crash safety: each card's state carries the offset of the newest authorization it includes, each
        # merchant's which authorizations it includes (see `merchant_progress`), in the same changelog record.
        self.card_offsets: dict[str, int] = {}
        self.merchant_applied: dict[str, dict[str, Any]] = {}
        self.card_durable = TaggedMapping(self.card_table, lambda k: str(self.card_offset(k)).encode())
        self.merchant_durable = TaggedMapping(self.merchant_table, lambda k: encode(self.merchant_progress(k)))
        # Event-time order at the merchant stage: what intake has handed on per card partition, and per merchant
        # partition the authorizations held until every card partition has passed them.
        self.source_marks: dict[int, int] = {}
        self.source_seen: dict[int, float] = {}  # card partition -> wall clock of its last authorization
        self.orders: dict[int, EventTimeOrder] = {}
        # Bounded live caches (`StateStore.trim`): the tables hold every card of the last month, the heap the busy ones.
        live = s.live_states_max
        cards = StateStore(CardState, CardState.from_bytes, self.card_durable, capacity=live)
        standings = StateStore(CardStanding, CardStanding.from_bytes, self.standing_table, capacity=live)
        merchants = StateStore(MerchantState, MerchantState.from_bytes, self.merchant_durable, capacity=live)
        self.scorer = FraudScorer(
            s,
            cards=cards,
            standings=standings,
            merchants=merchants,
            snapshots=EncodedSnapshots(self.snapshot_table),
            pending=TableMaturityQueue(self.maturity_table, self.owned_score_partitions, home=self.snapshot_table.stored_partition),
            card_index=self.index_table,
            early_labels=self.early_label_table,
            learn_inline=False,
        )
        # A card's recent (ts, tx_id) list holds up to 512 entries (tens of KB as objects): a tenth as many stay live.
        self.scorer.card_index.capacity = max(1, live // 10)
        self.model_follower = ModelFollower(self, client)
        self.rule_follower = RuleFollower(self, client)
        self.positions: dict[tuple[str, int], int] = {}
        self._outbox: list[tuple[str, bytes, bytes | None]] = []
        self._touched: set[int] = set()
        self._merchant_lock = asyncio.Lock()
        self._busy = 0
        self._evicted_at = 0  # event time of the last eviction
        self._evicting = False  # deletions made, not yet on their changelogs
        # Decisions taken per partition of the enriched topic: stamped on each snapshot and kept with the
        # partition's threshold, so a snapshot that reached its changelog without them can be replayed into them.
        self.decisions: dict[int, int] = {}
        self._stamp = 0
        self.snapshot_table.on_write = self._stamped
        self.alerts_by_hour: dict[int, int] = {}  # hour of event time -> new alerts: a day is 24 counters
        self.quality = QualityWindow()
        self._unmatched_reported = 0
        self._newest = 0
        self._arrivals: list[int] = []  # ms: when each authorization of the score batch reached fraud.authorizations
        self._define_agents()
        self._define_timers()

    # --- wiring -------------------------------------------------------------
    def _define_topics(self) -> None:
        s, app = self.settings, self.app
        # Topics are created by `fraudstream topics create` from topics/; faust only reads them.
        self.t_auth = app.topic(s.topic_authorizations, partitions=s.partitions)
        self.t_by_merchant = app.topic(s.topic_by_merchant, partitions=s.partitions)
        self.t_enriched = app.topic(s.topic_enriched, partitions=s.partitions)
        self.t_labels = app.topic(s.topic_labels, partitions=s.partitions)
        self.t_merchant_labels = app.topic(s.topic_merchant_labels, partitions=s.partitions)
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
        self.merchant_table = TableMapping(app.Table("merchants", **kw))
        self.snapshot_table = TableMapping(app.Table("snapshots", **kw))
        # The snapshots in event-time order, until they mature (fraudstream.stream.maturity).
        self.maturity_table = TableMapping(app.Table("maturity", **kw))
        self.index_table = TableMapping(app.Table("card-transactions", **kw))
        self.early_label_table = TableMapping(app.Table("early-labels", **kw))
        # str(partition) -> the decision policy (adaptive threshold) of that partition of the enriched topic
        self.threshold_table = TableMapping(app.Table("thresholds", **kw))
        self.tables = (self.card_table, self.standing_table, self.merchant_table, self.snapshot_table,
                       self.maturity_table, self.index_table, self.early_label_table, self.threshold_table)

    def _define_agents(self) -> None:
        s, app = self.settings, self.app

        # Crash safety. Offsets are committed some seconds after a batch is acknowledged, and table writes reach
        # their changelogs on their own schedule, so after a SIGKILL a restarted worker sees again messages whose
        # effects may or may not be in its tables. Each stage is written so that either case gives the same result:
        # - intake and merchant stages: outputs first, then state. The state (tagged with the offsets of the
        #   authorizations it includes) is written only once the outputs are on the broker; a redelivered or re-sent
        #   message whose offset is already in the state is skipped (its outputs exist), one that is not is computed
        #   again from the same state, so it gives the same output again.
        # - score stage: state first, then outputs. Snapshots, standings and thresholds are on their changelogs
        #   before any score or alert is produced, so a redelivered authorization is answered from its snapshot;
        #   a snapshot whose threshold and standing updates did not reach their changelogs is replayed into them.
        # `batches`: a batch cut short (an agent cancelled at shutdown while it waits for the broker) is not committed.
        @app.agent(self.t_auth, name="intake")
        async def intake(stream: Any) -> None:
            async for events in batches(stream, s.batch_size, s.batch_window_s):
                self._busy += 1
                try:
                    self.intake_batch(events)
                    await self.flush()
                    self.intake_commit()
                finally:
                    self._busy -= 1

        @app.agent(self.t_by_merchant, name="merchant-features")
        async def merchant_stage(stream: Any) -> None:
            async for events in batches(stream, s.batch_size, s.batch_window_s):
                self._busy += 1
                try:
                    async with self._merchant_lock:
                        released = self.merchant_batch(events)
                        await self.flush()
                        self.merchant_commit()
                    # Held authorizations were kept from being committed (see `_merchant_arrival`): now they may be.
                    for event in released:
                        let_go(event.message)
                        await stream.ack(event)
                finally:
                    self._busy -= 1

        @app.agent(self.t_enriched, name="score")
        async def score_stage(stream: Any) -> None:
            async for events in batches(stream, s.batch_size, s.batch_window_s):
                # Not before the model is restored and has caught up: a restart must not score with an older one.
                while not self.model_follower.ready:
                    await asyncio.sleep(0.05)
                events = fresh(events)  # the partitions may have been revoked meanwhile
                if not events:
                    continue
                self._busy += 1
                try:
                    self.score_batch(events)
                    await self.durable()
                    self.send_outbox()
                    await self.flush()
                finally:
                    self._busy -= 1

        @app.agent(self.t_labels, name="labels")
        async def label_intake(stream: Any) -> None:
            async for events in batches(stream, s.batch_size, s.batch_window_s):
                self.card_event_intake(events, "label")
                await self.flush()

        @app.agent(self.t_reissues, name="card-reissues")
        async def reissue_intake(stream: Any) -> None:
            async for events in batches(stream, s.batch_size, s.batch_window_s):
                self.card_event_intake(events, "reissue")
                await self.flush()

        @app.agent(self.t_card_events, name="card-events")
        async def card_event_stage(stream: Any) -> None:
            async for events in batches(stream, s.batch_size, s.batch_window_s):
                self.card_event_batch(events)
                await self.flush()
                await self.durable()  # the standings and snapshots it changed, in order

        @app.agent(self.t_merchant_labels, name="merchant-labels")
        async def merchant_label_stage(stream: Any) -> None:
            async for events in batches(stream, s.batch_size, s.batch_window_s):
                # Not while a merchant batch waits for its outputs: its state must not be written before them.
                async with self._merchant_lock:
                    self.merchant_label_batch(events)

        self.agents = (intake, merchant_stage, score_stage, label_intake, reissue_intake, card_event_stage, merchant_label_stage)

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
            if not await self.durable(max(deadline, time.monotonic() + 1.0)):
                log.warning("partitions revoked before every table write reached its changelog")
            # Cached state objects may belong to partitions that move away:
            # forget them all; they reload from the tables on next use.
            self.scorer.cards.drop_live(lambda k: False)
            self.scorer.standings.drop_live(lambda k: False)
            self.scorer.card_index.drop_live()
            self.scorer.merchants.drop_live(lambda k: False)
            self.scorer.pending.clear()
            self.scorer.policies.clear()  # reloaded from the thresholds table, possibly advanced by another worker
            self.card_offsets.clear()
            self.merchant_applied.clear()
            # Held authorizations were never committed: after the rebalance faust seeks every partition back to
            # its committed offset, so they come again, to whoever owns their partition then.
            self.orders.clear()
            self.metrics.held.set(0)
            self.decisions.clear()

    def _define_timers(self) -> None:
        app = self.app

        # A timer that raises would crash the whole worker: log and carry on.
        @app.timer(interval=5.0)
        async def report() -> None:
            _guarded(self.report_gauges)

        @app.timer(interval=5.0)
        async def evict() -> None:
            _guarded(self.evict_idle_state)
            if self._evicting:
                await self.durable()  # the deletions, onto their changelogs in the score stage's order
                self._evicting = False

        # Resident memory that follows the live states, not the worst moment since the start (see `heap`).
        @app.timer(interval=HEAP_RELEASE_EVERY_S)
        async def release_heap() -> None:
            _guarded(self.release_heap)

        # An idle worker waits for nothing, so a frozen broker would go unnoticed: ask it something now and then.
        @app.timer(interval=STALL_AFTER_S)
        async def probe_broker() -> None:
            await self.probe_broker()

        # A card partition with nothing new must not hold back the merchant stage's event-time order.
        @app.timer(interval=max(0.05, self.settings.source_idle_s / 2))
        async def announce_idle() -> None:
            _guarded(self.announce_idle_sources)

        @app.timer(interval=0.2)
        async def follow() -> None:
            _guarded(self.model_follower.poll)
            _guarded(self.rule_follower.poll)
            _guarded(self.write_tables)

        @app.task
        async def bootstrap_model() -> None:
            await asyncio.get_running_loop().run_in_executor(None, self.model_follower.restore)

        @app.on_before_shutdown.connect  # type: ignore[arg-type]  # faust's stubs want (sender, *args, signal=)
        async def on_shutdown(app: Any, **kwargs: Any) -> None:
            self.changelog.send()  # delivered by the checkpoint's flush
            self.model_follower.checkpoint_on_shutdown()

    # --- batch handlers (sync: the core is plain Python) ------------------------
    def each(self, events: list[Any], handle: Any) -> None:
        """Run ``handle`` on every message; one that raises is dead-lettered, never the end of the agent."""
        positions = self.positions
        for ev in events:
            msg = ev.message
            positions[(msg.topic, msg.partition)] = msg.offset
            try:
                handle(msg)
            except Exception as exc:  # a bug or an input no validator foresaw: keep going, keep the evidence
                log.exception("could not process %s[%d]@%d", msg.topic, msg.partition, msg.offset)
                self.dead_letter(Rejection("processing_error", f"{type(exc).__name__}: {exc}"[:300]), msg)

    def intake_batch(self, events: list[Any]) -> None:
        """Validate, then the card's features: here the card's authorizations arrive in order. Then tell every
        merchant partition how far each card partition of the batch has got (see `EventTimeOrder`)."""
        self.metrics.consumed.inc(len(events))
        self._batch_sources: set[int] = set()
        self.each(events, self._intake_one)
        now = time.monotonic()
        for source in self._batch_sources:
            self.source_seen[source] = now
            self.broadcast({"source": source, "mark": self.source_marks[source]})
        self.producer.poll(0)

    def broadcast(self, record: dict[str, Any]) -> None:
        """To every partition of fraud.authorizations-by-merchant, after what was produced there before."""
        value = encode(record)
        for partition in range(self.settings.partitions):
            self.outputs.produce(self.settings.topic_by_merchant, value, partition=partition)

    def announce_idle_sources(self) -> None:
        """Card partitions of this worker that are caught up and quiet: merchant partitions stop waiting for them."""
        consumer: Any = self.app.consumer  # faust's read offsets are not in its ConsumerT
        topic = self.settings.topic_authorizations
        try:
            assignment = consumer.assignment()
        except Exception:  # not yet started
            return
        now, quiet = time.monotonic(), self.settings.source_idle_s
        for tp in assignment:
            if tp.topic != topic or now - self.source_seen.get(tp.partition, 0.0) < quiet:
                continue
            hw = consumer.highwater(tp)
            # Where reading resumes: after the last authorization handled here, or, for a partition this worker has
            # handled nothing of since it was assigned, faust's read offset (its committed offset after the seek).
            done = max(self.positions.get((topic, tp.partition), -1) + 1, consumer._read_offset.get(tp) or 0)
            if hw is None or done < hw:
                continue  # behind, or not fetched yet: it is not idle, it is late
            self.broadcast({"source": tp.partition, "idle": True})
        self.producer.poll(0)

    def intake_commit(self) -> None:
        """After the batch's outputs are on the broker: the cards' state, tagged with the offsets it includes."""
        self.scorer.cards.flush()
        for card_id in self.scorer.cards.trim():
            self.card_offsets.pop(card_id, None)  # written with the state; read back with it
        self.card_table.clear_routes()
        self.card_table.send_pending()

    def card_offset(self, card_id: str) -> int:
        """Offset in fraud.authorizations of the newest authorization in the card's state (-1: none)."""
        offset = self.card_offsets.get(card_id)
        if offset is None:
            tag = self.card_durable.tag(card_id)
            offset = self.card_offsets[card_id] = -1 if not tag else int(tag)
        return offset

    def _intake_one(self, msg: Any) -> None:
        auth = decode_authorization(msg.value, msg.key)
        if isinstance(auth, Rejection):
            self.dead_letter(auth, msg)
            return
        card_id = auth.card_id
        if auth.ts > self.source_marks.get(msg.partition, auth.ts - 1):
            self.source_marks[msg.partition] = auth.ts
        self._batch_sources.add(msg.partition)
        if msg.offset <= self.card_offset(card_id):
            return  # redelivered after a crash: in the card's state already, and its output was sent before that
        self.card_table.route(card_id, msg.partition)
        step = self.scorer.card_stage(auth)
        value = encode({"auth": auth.as_dict(), "features": step.features, "late": step.late, "duplicate": step.duplicate,
                        "src": [msg.partition, msg.offset], "arr": _arrival_ms(msg)})
        self.outputs.produce(self.settings.topic_by_merchant, value, auth.merchant_id.encode())
        self.card_offsets[card_id] = msg.offset
        self.scorer.cards.mark(card_id)  # the offset is written with the state, even when the state did not change

    def merchant_batch(self, events: list[Any]) -> list[Any]:
        """The merchant's features in event-time order, then back to the card's partition for the decision.

        Returns the held authorizations released now: they are acknowledged (may be committed) only once their
        outputs and their merchants' state are written."""
        touched: set[int] = set()
        for ev in events:
            msg = ev.message
            self.positions[(msg.topic, msg.partition)] = msg.offset
            self._guarded(msg, lambda: self._merchant_arrival(ev, msg, touched))  # noqa: B023
        released = []
        for partition in sorted(touched):
            for evs, d in self.orders[partition].release():
                self._guarded(evs[0].message, lambda: self._merchant_one(d, partition))  # noqa: B023
                released.extend(evs)
        self.metrics.held.set(sum(len(o) for o in self.orders.values()))
        self.producer.poll(0)
        return released

    def _guarded(self, msg: Any, handle: Any) -> None:
        try:
            handle()
        except Exception as exc:  # a bug or an input no validator foresaw: keep going, keep the evidence
            log.exception("could not process %s[%d]@%d", msg.topic, msg.partition, msg.offset)
            self.dead_letter(Rejection("processing_error", f"{type(exc).__name__}: {exc}"[:300]), msg)

    def _merchant_arrival(self, ev: Any, msg: Any, touched: set[int]) -> None:
        """A card partition's progress, or an authorization: held for event-time order, or (out of order) now."""
        d = decode(msg.value)
        order = self.orders.get(msg.partition)
        if order is None:
            order = self.orders[msg.partition] = EventTimeOrder(self.settings.partitions)
        touched.add(msg.partition)
        if "source" in d:
            if d.get("idle"):
                order.go_idle(d["source"])
            else:
                order.advance(d["source"], d["mark"])
            return
        a = d["auth"]
        # Copies re-sent by a restarted intake share their source offset; a redelivery by the platform does not.
        key = (a["tx_id"], *(d.get("src") or (-1, msg.offset)))
        held = order.held(a["ts"], key)
        if held is not None:
            # The same authorization again (re-sent, or read again after a seek back) while it is held: settled with
            # it, and not committed before it either.
            hold(msg)
            held[0].append(ev)
        elif order.offer(a["ts"], key, ([ev], d)):
            hold(msg)  # not committed while held: a crash or rebalance brings it back (see the merchant agent)
        else:
            self.metrics.out_of_order.inc()
            self._merchant_one(d, msg.partition, in_order=False)

    def merchant_commit(self) -> None:
        """After the batch's outputs are on the broker: the merchants' state, tagged with what it includes."""
        self.scorer.merchants.flush()
        for merchant_id in self.scorer.merchants.trim():
            self.merchant_applied.pop(merchant_id, None)
        self.merchant_table.clear_routes()
        self.merchant_table.send_pending()

    def merchant_progress(self, merchant_id: str) -> dict[str, Any]:
        """Which authorizations the merchant's state includes: ``f``, the newest applied in event-time order,
        ``[ts, tx_id]``; ``s``, per partition of fraud.authorizations, the newest offset applied from it."""
        applied = self.merchant_applied.get(merchant_id)
        if applied is None:
            tag = self.merchant_durable.tag(merchant_id)
            applied = decode(tag) if tag else {}
            if "f" not in applied:  # nothing yet, or written before event-time order
                applied = {"f": None, "s": {}}
            self.merchant_applied[merchant_id] = applied
        return applied

    def _merchant_one(self, d: dict[str, Any], partition: int, in_order: bool = True) -> None:
        auth = Authorization(**d["auth"])
        merchant_id = auth.merchant_id
        duplicate = d["duplicate"]
        source, offset = d.get("src") or (-1, -1)
        applied = self.merchant_progress(merchant_id)
        key = [auth.ts, auth.tx_id]
        if not duplicate:
            # A copy of what the state includes already (redelivered after a crash, or re-sent by an intake that
            # crashed): skipped, its output was sent before the state was written. Each card partition's
            # authorizations reach a merchant in offset order, and only a restarted intake sends older ones again:
            # a copy comes from a card partition after a later offset of it was applied. In event-time order it is
            # also not newer than the newest applied (held ones are applied by time, not offset). An authorization
            # merely older than what the merchant has seen, released in order after a rebalance reset the order,
            # has a newer offset: it is new. (A redelivery by the platform is a new message, marked duplicate,
            # and answered again.)
            if (in_order and applied["f"] is not None and key <= applied["f"]
                    and offset <= applied["s"].get(str(source), -1)):
                return
            if not in_order and offset <= applied["s"].get(str(source), -1):
                return
        self.merchant_table.route(merchant_id, partition)
        feats = d["features"]
        feats.update(self.scorer.enrich_merchant(auth, duplicate))
        if not duplicate:
            # The newest applied, in order or not: after a rebalance order starts afresh and can go back in time,
            # and a copy of one applied out of order may then come in order.
            if applied["f"] is None or key > applied["f"]:
                applied["f"] = key
            if offset > applied["s"].get(str(source), -1):
                applied["s"][str(source)] = offset
            self.scorer.merchants.mark(merchant_id)  # written with the state
        self.outputs.produce(self.settings.topic_enriched, encode({"auth": d["auth"], "features": feats, "late": d["late"],
                                                                   "arr": d.get("arr")}), auth.card_id.encode())

    def score_batch(self, events: list[Any]) -> None:
        """Scores into the outbox: sent by `send_outbox` once the batch's state is on its changelogs."""
        self._touched.clear()
        s, m, scorer = self.settings, self.metrics, self.scorer
        started = time.perf_counter()
        self._newest = 0
        self._arrivals.clear()
        self.each(events, self._score_one)
        m.scored.inc(len(events))
        newest = self._newest
        if newest:
            m.last_event_ts.set(newest / 1000.0)
            for ex in scorer.mature(newest):
                self._outbox.append((s.topic_training, encode(ex.as_dict()), None))
        scorer.standings.flush()
        scorer.card_index.flush()
        scorer.standings.trim()
        scorer.card_index.trim()
        for partition in self._touched:
            self.threshold_table.route(str(partition), partition)
            self.threshold_table[str(partition)] = _pack_policy(scorer.policy(partition), self.decisions[partition])
        self.standing_table.clear_routes()
        self.index_table.clear_routes()
        self.threshold_table.clear_routes()
        self.maturity_table.clear_routes()
        m.processing.observe(time.perf_counter() - started)
        m.batch_size.observe(len(events))

    def _enqueue(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self._outbox.append((topic, value, key))

    def send_outbox(self) -> None:
        produce = self.outputs.produce
        for topic, value, key in self._outbox:
            produce(topic, value, key)
        self._outbox.clear()
        self.producer.poll(0)
        # End-to-end latency: from each authorization's arrival on fraud.authorizations to its score produced. Not
        # from its event time: an authorization's own ts can be hours old (a terminal offline, a replay) while the
        # pipeline keeps up; how far event time is behind shows in fraudstream_last_authorization_timestamp_seconds.
        now, observe = time.time(), self.metrics.latency.observe
        for arrived in self._arrivals:
            observe(max(0.0, now - arrived / 1000.0))
        self._arrivals.clear()

    async def durable(self, deadline: float | None = None) -> bool:
        """Wait until every table write made so far is on its changelog, since the outputs of a score batch must not
        go before its state. The pending writes are produced now, each key once with its last value, in the phases
        of `changelog_phases`, each delivered before the next is produced: a crash in between leaves what a restart
        repairs (`_replay`: a snapshot ahead of its standing and threshold), never a threshold ahead of the standings
        it counts, nor a standing ahead of the snapshot of the authorization that changed it. A write that fails is
        produced again (`ChangelogWriter`). False only if ``deadline`` (monotonic) came first."""
        since = time.monotonic()
        for tables in self.changelog_phases:
            if not await self._deliver(tables, since, deadline):
                return False
        self.changelog.persist()
        self._stall_over()
        return True

    async def _deliver(self, tables: Any, since: float, deadline: float | None = None) -> bool:
        """Produce what ``tables`` have pending, then wait until no table write at all is in flight."""
        w = self.changelog
        producer = w.producer  # the confluent producer the writes go through
        w.send(tables)
        while w.inflight or w.pending(tables):
            producer.flush(0)  # sends now (no linger) and serves the delivery reports
            if w.pending(tables):
                w.send(tables)  # failed writes, or what a full queue held back
            if not w.inflight and not w.pending(tables):
                break
            if deadline is not None and time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.001)
            self._check_stall(since, f"{w.inflight + w.pending(tables)} table writes")
        return True

    def write_tables(self) -> None:
        """Table writes nobody awaits (merchant state from labels, ...) reach their changelogs within a timer tick."""
        w = self.changelog
        w.send()
        w.producer.poll(0)  # delivery reports: failed writes marked pending again, offsets for the stores
        w.persist()

    def _on_changelog_error(self, table: TableMapping, partition: int, err: Any) -> None:
        self.metrics.broker_errors.labels("changelog").inc()
        log.warning("changelog write to %s[%d] failed (%s); writing it again", table.table.name, partition, err)

    async def _after_faust_flush(self) -> None:
        """Whenever faust flushes before it commits (`faust_patches.flush_with_faust`): the table writes that may go in
        any order. The score stage's state goes in order, from its own `durable` (and that of a batch is delivered
        before the batch is acknowledged, so before its offsets can be committed)."""
        await self._deliver(self.changelog.free, time.monotonic())
        self.changelog.persist()
        self._stall_over()

    def _restore_policy(self, partition: int) -> None:
        """The decision policy of a partition as it was when last written, if it was (a restart, a rebalance)."""
        if partition in self.scorer.policies and partition in self.decisions:
            return
        policy = self.scorer.policy(partition)
        raw = self.threshold_table.get(str(partition))
        self.decisions[partition] = 0
        if raw is not None:
            self.decisions[partition] = _unpack_policy(policy, raw)
            log.info("decision policy of partition %d restored (%d decisions)", partition, self.decisions[partition])

    def _stamped(self, tx_id: str, value: bytes) -> bytes:
        """A new snapshot carries the number of the decision it records (`decisions`): a redelivered authorization
        whose snapshot got ahead of its partition's threshold is replayed into it (`_replay`)."""
        if self._stamp and value[-1:] == b"}" and b'"n":' not in value:
            return value[:-1] + b',"n":%d}' % self._stamp
        return value

    def _replay(self, partition: int, snap: dict[str, Any]) -> bool:
        """A snapshot that reached its changelog when the partition's threshold and the card's standing (other
        changelogs, written in later phases of `durable`) did not, before a crash. The batch's offsets were not
        committed, so its authorizations come again, first on their partition, and each is found by its snapshot:
        apply to the threshold and standing what `DecisionPolicy.decide` did when it was scored. Returns whether it
        did."""
        n = snap.get("n")
        if n is None or n <= self.decisions[partition]:
            return False
        a, d, scorer = snap["a"], snap["d"], self.scorer
        ts, card_id, tx_id = a["ts"], a["card_id"], a["tx_id"]
        self.standing_table.route(card_id, partition)
        self.index_table.route(card_id, partition)
        scorer.policy(partition).replay(scorer.standings.get(card_id), ts, snap["s"], d["action"], d["alert_id"])
        scorer.standings.mark(card_id)
        if (ts, tx_id) not in scorer.card_index.since(card_id, ts):
            scorer.card_index.add(card_id, ts, tx_id)
        self.decisions[partition] = n
        self._touched.add(partition)
        return True

    def _score_one(self, msg: Any) -> None:
        s, m, scorer, produce = self.settings, self.metrics, self.scorer, self._enqueue
        d = decode(msg.value)
        auth = Authorization(**d["auth"])
        late = d["late"] is True
        self.standing_table.route(auth.card_id, msg.partition)
        self.index_table.route(auth.card_id, msg.partition)
        self.set_partition(msg.partition)
        self._restore_policy(msg.partition)
        self._touched.add(msg.partition)
        self._stamp = self.decisions[msg.partition] + 1
        try:
            scored = scorer.score(auth, d["features"], late, msg.partition)
        finally:
            self._stamp = 0
        if scored.duplicate:
            raw = self.snapshot_table.get(auth.tx_id)
            if raw is not None and self._replay(msg.partition, decode(raw)):
                log.info("replayed decision of partition %d (%s) into its threshold and standing", msg.partition, auth.tx_id)
        else:
            self.decisions[msg.partition] += 1
        # Everything that can fail comes before the first output: a message is either scored or dead-lettered.
        key = auth.card_id.encode()
        score_value = encode(scored.score_record())
        alert_value = encode(scored.alert_record()) if scored.alerted else None
        if scored.label_outcome is not None:
            self.publish_label_outcome(scored.label_outcome, "early", produce=produce)
        produce(s.topic_scores, score_value, key)
        if alert_value is not None:
            produce(s.topic_alerts, alert_value, key)
            if not scored.duplicate:
                m.alerts.labels(scored.decision.action).inc()
                if scored.decision.action in ("alert", "block"):
                    hour = auth.ts // HOUR_MS
                    self.alerts_by_hour[hour] = self.alerts_by_hour.get(hour, 0) + 1
        if scored.rule_hits and not scored.duplicate:
            modes = scorer.rules.modes
            for rule_id in scored.rule_hits:
                m.rule_hits.labels(rule_id, modes.get(rule_id, "unknown")).inc()
        m.score.observe(scored.score)
        m.late.inc(scored.late)
        m.duplicates.inc(scored.duplicate)
        if auth.ts > self._newest:
            self._newest = auth.ts
        arrived = d.get("arr")
        # None from an older worker: when it reached the enriched topic, then.
        self._arrivals.append(arrived if type(arrived) is int else _arrival_ms(msg))

    def card_event_intake(self, events: list[Any], kind: str) -> None:
        """Labels and reissues, validated and re-keyed with our partitioner.

        Whatever client produced them, they then reach the partition that holds
        the card's snapshots and standing.
        """
        self.each(events, lambda msg: self._card_event_intake_one(msg, kind))
        self.producer.poll(0)

    def _card_event_intake_one(self, msg: Any, kind: str) -> None:
        record = decode_label(msg.value, msg.key) if kind == "label" else decode_card_reissue(msg.value, msg.key)
        if isinstance(record, Rejection):
            self.dead_letter(record, msg)
            if kind == "label":
                self.metrics.labels.labels("invalid", "rejected").inc()
            return
        self.outputs.produce(self.settings.topic_card_events, encode({"kind": kind, "record": record}), record.card_id.encode())

    def card_event_batch(self, events: list[Any]) -> None:
        self.each(events, self._card_event_one)
        self.scorer.standings.flush()
        self.standing_table.clear_routes()
        self.producer.poll(0)

    def _card_event_one(self, msg: Any) -> None:
        d = decode(msg.value)
        card_id = d["record"]["card_id"]
        self.standing_table.route(card_id, msg.partition)
        self.set_partition(msg.partition)
        if d["kind"] == "reissue":
            self.scorer.reissue(CardReissue(**d["record"]))
            return
        label = Label(**d["record"])
        outcome = self.scorer.label(label)
        self.metrics.labels.labels(label.source, outcome.status).inc()
        self.publish_label_outcome(outcome, label.source, label.is_fraud)

    def merchant_label_batch(self, events: list[Any]) -> None:
        self.each(events, self._merchant_label_one)
        self.scorer.merchants.flush()
        for merchant_id in self.scorer.merchants.trim():
            self.merchant_applied.pop(merchant_id, None)
        self.merchant_table.clear_routes()

    def _merchant_label_one(self, msg: Any) -> None:
        d = decode(msg.value)
        self.merchant_table.route(d["merchant_id"], msg.partition)
        self.scorer.apply_merchant_label(MerchantLabel(d["merchant_id"], d["card_id"], d["tx_ts"], d["fraud_delta"], d["ts"]))

    def set_partition(self, partition: int) -> None:
        """Per-event writes (snapshots, indexes) go to the changelog partition of the event."""
        self.snapshot_table.partition = partition
        self.index_table.partition = partition
        self.early_label_table.partition = partition

    def publish_label_outcome(self, outcome: Any, source: str, is_fraud: bool | None = None, produce: Any = None) -> None:
        s, m = self.settings, self.metrics
        produce = produce or self.outputs.produce
        if outcome.score is not None and is_fraud is not None:
            self.quality.add(outcome.score, outcome.alerted, is_fraud)
        if outcome.delay_ms is not None:
            m.label_delay.labels(source).observe(max(outcome.delay_ms, 0) / 1000.0)
        if outcome.found is not None:
            m.compromised_cards.labels(outcome.found).inc()
            if outcome.detection_ms is not None:
                m.detection_delay.observe(outcome.detection_ms / 1000.0)
        if outcome.amount_prevented:
            m.fraud_amount.labels("prevented").inc(outcome.amount_prevented)
        if outcome.amount_missed:
            m.fraud_amount.labels("missed").inc(outcome.amount_missed)
        for ex in outcome.examples:
            produce(s.topic_training, encode(ex.as_dict()))
        for upd in outcome.merchant_updates:
            produce(s.topic_merchant_labels, encode(upd.as_dict()), upd.merchant_id.encode())

    def dead_letter(self, rejection: Rejection, msg: Any) -> None:
        letter = DeadLetter.of(rejection, msg.value, msg.key, msg.topic, msg.partition, msg.offset)
        self.outputs.produce(self.settings.topic_dead_letter, encode(letter))
        self.metrics.dead_letters.labels(msg.topic, rejection.reason).inc()
        log.warning("dead-lettered %s[%d]@%d: %s (%s)", msg.topic, msg.partition, msg.offset, rejection.reason,
                    mask(rejection.detail))

    async def flush(self) -> None:
        """Wait until every output of the batch is on the broker (however long a stalled broker takes).

        Table writes pending from earlier batches go too: each was made once its batch's outputs were on the broker,
        so it may go any time after (the score stage's, which must go before its outputs, go in `durable`)."""
        self.changelog.send()
        outputs = self.outputs
        remaining = self.producer.flush(0) + outputs.undelivered
        if not remaining:
            return
        since = time.monotonic()
        while remaining:
            await asyncio.sleep(0.001)
            outputs.retry()
            remaining = self.producer.flush(0) + outputs.undelivered
            self._check_stall(since, f"{remaining} outputs")
        self._stall_over()
        if self._outputs_failing:
            self._outputs_failing = False
            log.warning("outputs delivered again after %.1fs", time.monotonic() - since)

    def _check_stall(self, since: float, what: str) -> None:
        if time.monotonic() - since > STALL_AFTER_S:
            self._report_stall(since, what)

    def _report_stall(self, since: float, what: str) -> None:
        """Once per stall: counted in fraudstream_broker_errors_total{kind="stall"}, and a warning."""
        if self._stalled_since is None:
            self._stalled_since = since
            self.metrics.broker_errors.labels("stall").inc()
            log.warning("broker stalled: %s not answered for %.1fs; waiting for it, nothing is committed meanwhile",
                        what, time.monotonic() - since)

    def _stall_over(self) -> None:
        if self._stalled_since is not None:
            log.warning("broker answered again after a stall of %.0fs", time.monotonic() - self._stalled_since)
            self._stalled_since = None

    async def probe_broker(self) -> None:
        """A metadata request on the producer's connection: a broker that does not answer in time is stalled."""
        timeout = STALL_AFTER_S * 0.9  # shorter than the timer's interval: probes never overlap
        started = time.monotonic()
        try:
            await asyncio.get_running_loop().run_in_executor(None, lambda: self.producer.list_topics(timeout=timeout))
        except Exception:  # timed out (or refused): the broker did not answer
            self._report_stall(started, "a metadata request")
            return
        self._stall_over()

    def _on_producer_error(self, err: Any) -> None:
        """librdkafka's errors outside any one message (broker down, transport errors)."""
        self.metrics.broker_errors.labels(f"producer{err.name()}".lower()).inc()
        log.warning("broker error (producer): %s", err)

    def _on_output_failed(self, output: Output, err: Any) -> None:
        """An output the broker did not take: `flush` produces it again, and waits (see `fraudstream.stream.outputs`)."""
        self.metrics.broker_errors.labels("output").inc()
        if not self._outputs_failing:  # once until they are delivered, not once per message or retry
            self._outputs_failing = True
            log.warning("output to %s not delivered (%s): producing it again until the broker takes it; nothing is "
                        "committed meanwhile", output[0], err)

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

    def owned_score_partitions(self) -> set[int]:
        """The partitions of the enriched topic, and of the score stage's tables, that this worker is active for."""
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.settings.topic_enriched}

    def release_heap(self) -> None:
        started = time.perf_counter()
        if release_free_heap():
            took = time.perf_counter() - started
            (log.info if took > 0.05 else log.debug)("free heap returned to the system in %.1f ms", took * 1000)

    def evict_idle_state(self) -> None:
        """Cards, standings and merchants idle longer than their longest window leave the tables (a blocked card's
        standing stays until its reissue), once per day of event time: a replay of last year evicts as it goes, by
        the authorizations' ``ts``, not the wall clock. Only between batches: the deletions are written at once."""
        now = max(self.source_marks.values(), default=0)
        if self._busy or not now or now - self._evicted_at < EVICT_EVERY_MS:
            return
        self._evicted_at = now
        scorer = self.scorer
        evicted = scorer.evict_idle(now)
        if evicted:
            scorer.cards.flush()
            scorer.standings.flush()
            scorer.merchants.flush()
            # Caches of the tags written with those states (they read back from the tables when needed).
            self.card_offsets.clear()
            self.merchant_applied.clear()
            self._evicting = True
            self.metrics.evicted.inc(evicted)
            log.info("evicted %d idle card, standing and merchant states (event time %d)", evicted, now)

    def report_gauges(self) -> None:
        m, scorer = self.metrics, self.scorer
        m.cards.set(self.card_table.approx_len())
        m.merchants.set(self.merchant_table.approx_len())
        m.snapshots.set(len(scorer.pending))
        for kind, store in (("card", scorer.cards), ("standing", scorer.standings), ("merchant", scorer.merchants),
                            ("card_transactions", scorer.card_index)):
            m.live_states.labels(kind).set(len(store.live))
        if self.rocksdb_memory is not None:
            m.rocksdb_memory.set(self.rocksdb_memory.usage() + sum(t.rocksdb_readers_memory() for t in self.tables))
        usage = allocator_usage()  # at the same moment: RocksDB's memory is part of what the allocator has in use
        if usage is not None:
            m.allocator.labels("in_use").set(usage.in_use)
            m.allocator.labels("free").set(usage.free)
        unmatched = scorer.counts["unmatched_labels"]
        m.labels.labels("any", "unmatched").inc(unmatched - self._unmatched_reported)
        self._unmatched_reported = unmatched
        m.budget.set(self.settings.alert_budget_per_day)
        for p, policy in scorer.policies.items():
            m.threshold.labels(str(p)).set(policy.threshold.value(policy.threshold.head * HOUR_MS))
        if self.alerts_by_hour:
            newest = max(self.alerts_by_hour)
            for hour in [h for h in self.alerts_by_hour if h <= newest - 24]:
                del self.alerts_by_hour[hour]
        m.alerts_24h.set(sum(self.alerts_by_hour.values()))
        m.model_examples.set(scorer.model.examples)
        for rule_id, stats in scorer.rule_stats.snapshot().items():
            precision = stats["overall"].get("precision")
            if precision is not None:
                m.rule_precision.labels(rule_id).set(precision)
        q = self.quality
        for gauge, value in ((m.alert_precision, q.alert_precision()), (m.fraud_recall, q.fraud_recall()),
                             (m.average_precision, q.average_precision())):
            if value is not None:
                gauge.set(value)
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
        except Exception:  # not yet started
            return
        inputs = {self.settings.topic_authorizations, self.settings.topic_by_merchant, self.settings.topic_enriched,
                  self.settings.topic_labels}
        for tp in assignment:
            if tp.topic not in inputs:
                continue
            # The fetch high-water mark: some brokers (the embedded one) misreport end offsets.
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            done = self.positions.get((tp.topic, tp.partition), -1) + 1
            m.lag.labels(tp.topic, str(tp.partition)).set(max(hw - done, 0))


_POLICY_EXTRA = struct.Struct("<qdq")


def _arrival_ms(msg: Any) -> int:
    """When ``msg`` reached its topic (ms): its record timestamp, the producer's send time or the broker's append
    time as the topic keeps them; now, for a record without one."""
    ts = msg.timestamp
    return int(ts * 1000.0) if ts and ts > 0 else int(time.time() * 1000.0)


def _pack_policy(policy: Any, decisions: int) -> bytes:
    """A partition's adaptive threshold, with its cached value so a restored one decides exactly the same, and
    the number of decisions it has taken."""
    t = policy.threshold
    return zlib.compress(_POLICY_EXTRA.pack(decisions, t._cached, t._stale) + t.to_bytes(), 1)


def _unpack_policy(policy: Any, raw: bytes) -> int:
    data = zlib.decompress(raw)
    t = policy.threshold
    t.load_bytes(data[_POLICY_EXTRA.size :])
    decisions, t._cached, t._stale = _POLICY_EXTRA.unpack_from(data)
    return int(decisions)


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
