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
import time
from typing import Any

import faust
from confluent_kafka import Producer

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
from fraudstream.core.features.card import CardState
from fraudstream.core.features.merchant import MerchantState
from fraudstream.core.model.quality import QualityWindow
from fraudstream.core.scorer import FraudScorer, MerchantLabel
from fraudstream.core.state import StateStore
from fraudstream.logs import mask
from fraudstream.metrics import Metrics
from fraudstream.stream.learning import ModelFollower, RuleFollower
from fraudstream.stream.tables import TableMapping

__all__ = ["FraudApp"]

log = logging.getLogger("fraudstream.worker")


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
        )
        connected = s.with_overrides(broker=f"kafka://{bootstrap}")
        client = connected.kafka_client_config()
        self.producer = Producer(connected.producer_config(**{"linger.ms": 2}))
        self._define_topics()
        self._define_tables()
        self.scorer = FraudScorer(
            s,
            cards=StateStore(CardState, CardState.from_bytes, self.card_table),
            standings=StateStore(CardStanding, CardStanding.from_bytes, self.standing_table),
            merchants=StateStore(MerchantState, MerchantState.from_bytes, self.merchant_table),
            snapshots=self.snapshot_table,
            card_index=self.index_table,
            early_labels=self.early_label_table,
            learn_inline=False,
        )
        self.model_follower = ModelFollower(self, client)
        self.rule_follower = RuleFollower(self, client)
        self.positions: dict[tuple[str, int], int] = {}
        self.alert_times: list[int] = []
        self.quality = QualityWindow()
        self._unmatched_reported = 0
        self._newest = 0
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
        self.card_table = TableMapping(app.Table("cards", **kw))
        self.standing_table = TableMapping(app.Table("card-standings", **kw))
        self.merchant_table = TableMapping(app.Table("merchants", **kw))
        self.snapshot_table = TableMapping(app.Table("snapshots", **kw))
        self.index_table = TableMapping(app.Table("card-transactions", **kw))
        self.early_label_table = TableMapping(app.Table("early-labels", **kw))

    def _define_agents(self) -> None:
        s, app = self.settings, self.app

        @app.agent(self.t_auth, name="intake")
        async def intake(stream: Any) -> None:
            async for events in stream.take_events(s.batch_size, within=s.batch_window_s):
                self.intake_batch(events)
                await self.flush()

        @app.agent(self.t_by_merchant, name="merchant-features")
        async def merchant_stage(stream: Any) -> None:
            async for events in stream.take_events(s.batch_size, within=s.batch_window_s):
                self.merchant_batch(events)
                await self.flush()

        @app.agent(self.t_enriched, name="score")
        async def score_stage(stream: Any) -> None:
            async for events in stream.take_events(s.batch_size, within=s.batch_window_s):
                self.score_batch(events)
                await self.flush()

        @app.agent(self.t_labels, name="labels")
        async def label_intake(stream: Any) -> None:
            async for events in stream.take_events(s.batch_size, within=s.batch_window_s):
                self.card_event_intake(events, "label")
                await self.flush()

        @app.agent(self.t_reissues, name="card-reissues")
        async def reissue_intake(stream: Any) -> None:
            async for events in stream.take_events(s.batch_size, within=s.batch_window_s):
                self.card_event_intake(events, "reissue")
                await self.flush()

        @app.agent(self.t_card_events, name="card-events")
        async def card_event_stage(stream: Any) -> None:
            async for events in stream.take_events(s.batch_size, within=s.batch_window_s):
                self.card_event_batch(events)
                await self.flush()

        @app.agent(self.t_merchant_labels, name="merchant-labels")
        async def merchant_label_stage(stream: Any) -> None:
            async for events in stream.take_events(s.batch_size, within=s.batch_window_s):
                self.merchant_label_batch(events)

        self.agents = (intake, merchant_stage, score_stage, label_intake, reissue_intake, card_event_stage, merchant_label_stage)

        @app.on_partitions_revoked.connect
        async def on_revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
            # Cached state objects may belong to partitions that move away:
            # forget them all; they reload from the tables on next use.
            self.scorer.cards.drop_live(lambda k: False)
            self.scorer.standings.drop_live(lambda k: False)
            self.scorer.card_index.drop_live()
            self.scorer.merchants.drop_live(lambda k: False)
            self.scorer.pending.clear()
            self._pending_rebuilt = False

        self._pending_rebuilt = False

    def _define_timers(self) -> None:
        app = self.app

        # A timer that raises would crash the whole worker: log and carry on.
        @app.timer(interval=5.0)
        async def report() -> None:
            _guarded(self.report_gauges)

        @app.timer(interval=0.2)
        async def follow() -> None:
            _guarded(self.model_follower.poll)
            _guarded(self.rule_follower.poll)

        @app.task
        async def bootstrap_model() -> None:
            await asyncio.get_running_loop().run_in_executor(None, self.model_follower.restore)

        @app.on_before_shutdown.connect
        async def on_shutdown(app: Any, **kwargs: Any) -> None:
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
        """Validate, then the card's features: here the card's authorizations arrive in order."""
        self.metrics.consumed.inc(len(events))
        self.each(events, self._intake_one)
        self.scorer.cards.flush()
        self.card_table.clear_routes()
        self.producer.poll(0)

    def _intake_one(self, msg: Any) -> None:
        auth = decode_authorization(msg.value, msg.key)
        if isinstance(auth, Rejection):
            self.dead_letter(auth, msg)
            return
        self.card_table.route(auth.card_id, msg.partition)
        step = self.scorer.card_stage(auth)
        value = encode({"auth": auth.as_dict(), "features": step.features, "late": step.late, "duplicate": step.duplicate})
        self.producer.produce(self.settings.topic_by_merchant, value, auth.merchant_id.encode())

    def merchant_batch(self, events: list[Any]) -> None:
        """The merchant's features, then back to the card's partition for the decision."""
        self.each(events, self._merchant_one)
        self.scorer.merchants.flush()
        self.merchant_table.clear_routes()
        self.producer.poll(0)

    def _merchant_one(self, msg: Any) -> None:
        d = decode(msg.value)
        auth = Authorization(**d["auth"])
        self.merchant_table.route(auth.merchant_id, msg.partition)
        feats = d["features"]
        feats.update(self.scorer.enrich_merchant(auth, d["duplicate"]))
        self.producer.produce(self.settings.topic_enriched, encode({"auth": d["auth"], "features": feats, "late": d["late"]}),
                              auth.card_id.encode())

    def score_batch(self, events: list[Any]) -> None:
        if not self._pending_rebuilt:
            self._rebuild_pending()
        s, m, scorer = self.settings, self.metrics, self.scorer
        started = time.perf_counter()
        self._newest = 0
        self.each(events, self._score_one)
        m.scored.inc(len(events))
        newest = self._newest
        if newest:
            m.latency.observe(max(0.0, time.time() - newest / 1000.0))
            m.last_event_ts.set(newest / 1000.0)
            for ex in scorer.mature(newest):
                self.producer.produce(s.topic_training, encode(ex.as_dict()))
        scorer.standings.flush()
        scorer.card_index.flush()
        self.standing_table.clear_routes()
        self.index_table.clear_routes()
        m.processing.observe(time.perf_counter() - started)
        m.batch_size.observe(len(events))
        self.producer.poll(0)

    def _score_one(self, msg: Any) -> None:
        s, m, scorer, produce = self.settings, self.metrics, self.scorer, self.producer.produce
        d = decode(msg.value)
        auth = Authorization(**d["auth"])
        late = d["late"] is True
        self.standing_table.route(auth.card_id, msg.partition)
        self.index_table.route(auth.card_id, msg.partition)
        self.set_partition(msg.partition)
        scored = scorer.score(auth, d["features"], late, msg.partition)
        # Everything that can fail comes before the first output: a message is either scored or dead-lettered.
        key = auth.card_id.encode()
        score_value = encode(scored.score_record())
        alert_value = encode(scored.alert_record()) if scored.alerted else None
        if scored.label_outcome is not None:
            self.publish_label_outcome(scored.label_outcome, "early")
        produce(s.topic_scores, score_value, key)
        if alert_value is not None:
            produce(s.topic_alerts, alert_value, key)
            if not scored.duplicate:
                m.alerts.labels(scored.decision.action).inc()
                if scored.decision.action in ("alert", "block"):
                    self.alert_times.append(auth.ts)
        if scored.rule_hits and not scored.duplicate:
            modes = scorer.rules.modes
            for rule_id in scored.rule_hits:
                m.rule_hits.labels(rule_id, modes.get(rule_id, "unknown")).inc()
        m.score.observe(scored.score)
        m.late.inc(scored.late)
        m.duplicates.inc(scored.duplicate)
        if auth.ts > self._newest:
            self._newest = auth.ts

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
        self.producer.produce(self.settings.topic_card_events, encode({"kind": kind, "record": record}), record.card_id.encode())

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

    def publish_label_outcome(self, outcome: Any, source: str, is_fraud: bool | None = None) -> None:
        s, m = self.settings, self.metrics
        if outcome.score is not None and is_fraud is not None:
            self.quality.add(outcome.score, outcome.alerted, is_fraud)
        if outcome.delay_ms is not None:
            m.label_delay.labels(source).observe(max(outcome.delay_ms, 0) / 1000.0)
        for ex in outcome.examples:
            self.producer.produce(s.topic_training, encode(ex.as_dict()))
        for upd in outcome.merchant_updates:
            self.producer.produce(s.topic_merchant_labels, encode(upd.as_dict()), upd.merchant_id.encode())

    def dead_letter(self, rejection: Rejection, msg: Any) -> None:
        letter = DeadLetter.of(rejection, msg.value, msg.key, msg.topic, msg.partition, msg.offset)
        self.producer.produce(self.settings.topic_dead_letter, encode(letter))
        self.metrics.dead_letters.labels(msg.topic, rejection.reason).inc()
        log.warning("dead-lettered %s[%d]@%d: %s (%s)", msg.topic, msg.partition, msg.offset, rejection.reason,
                    mask(rejection.detail))

    async def flush(self) -> None:
        """Wait until every output of the batch is on the broker."""
        remaining = self.producer.flush(0)
        while remaining:
            await asyncio.sleep(0.001)
            remaining = self.producer.flush(0)

    def _rebuild_pending(self) -> None:
        """After a rebalance: the maturity queue of the snapshots this worker now owns."""
        entries = []
        for tx_id in self.snapshot_table:
            raw = self.snapshot_table.get(tx_id)
            if raw is not None:
                entries.append((decode(raw)["a"]["ts"], tx_id))
        entries.sort()
        self.scorer.pending.clear()
        self.scorer.pending.extend(entries)
        self._pending_rebuilt = True

    def report_gauges(self) -> None:
        m, scorer = self.metrics, self.scorer
        m.cards.set(len(scorer.cards.durable))
        m.merchants.set(len(scorer.merchants.durable))
        m.snapshots.set(len(scorer.pending))
        unmatched = scorer.counts["unmatched_labels"]
        m.labels.labels("any", "unmatched").inc(unmatched - self._unmatched_reported)
        self._unmatched_reported = unmatched
        m.budget.set(self.settings.alert_budget_per_day)
        for p, policy in scorer.policies.items():
            m.threshold.labels(str(p)).set(policy.threshold.value(policy.threshold.head * 3_600_000))
        if self.alert_times:
            newest = max(self.alert_times)
            self.alert_times = [t for t in self.alert_times if t > newest - 86_400_000]
        m.alerts_24h.set(len(self.alert_times))
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
