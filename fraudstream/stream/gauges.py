"""The worker's gauges: tables and live states, memory, thresholds, alerts of the last 24 hours, model quality, lag.

Counters and histograms are counted where things happen (the stages); the gauges are read here, every few seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fraudstream.config import Settings
from fraudstream.core.features.card import HOUR_MS
from fraudstream.core.model.quality import QualityWindow
from fraudstream.core.scorer import FraudScorer
from fraudstream.metrics import Metrics
from fraudstream.stream.heap import allocator_usage
from fraudstream.stream.stages import ScoreStage
from fraudstream.stream.tables import RocksDBMemory, TableMapping

__all__ = ["Gauges"]


class Gauges:
    """Sets ``metrics``' gauges from the worker's parts. ``consumer()``: faust's consumer (its assignment and
    high-water marks), ``positions``: the offset each stage has reached per input partition."""

    def __init__(self, settings: Settings, metrics: Metrics, scorer: FraudScorer, tables: tuple[TableMapping, ...],
                 card_table: TableMapping, rocksdb_memory: RocksDBMemory | None,
                 score: ScoreStage, quality: QualityWindow, positions: dict[tuple[str, int], int],
                 consumer: Callable[[], Any]) -> None:
        self.settings = settings
        self.metrics = metrics
        self.scorer = scorer
        self.tables = tables
        self.card_table = card_table
        self.rocksdb_memory = rocksdb_memory
        self.score = score
        self.quality = quality
        self.positions = positions
        self.consumer = consumer
        self._unmatched_reported = 0

    def report(self) -> None:
        """Every gauge, now (a timer calls it every few seconds)."""
        m, scorer = self.metrics, self.scorer
        m.cards.set(self.card_table.approx_len())
        # Merchant states are the replicas of every card partition (`fraudstream.stream.partials`): those of the
        # partitions scored here are this worker's to track; all of them are held as objects.
        replicas = scorer.merchant_partials.replicas if scorer.merchant_partials is not None else {}
        m.merchants.set(sum(len(replicas.get(p, ())) for p in self.score.merchants.seeded))
        m.live_states.labels("merchant").set(sum(len(states) for states in replicas.values()))
        m.snapshots.set(len(scorer.pending))
        for kind, store in (("card", scorer.cards), ("standing", scorer.standings), ("card_transactions", scorer.card_index)):
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
        alerts_by_hour = self.score.alerts_by_hour
        if alerts_by_hour:
            newest = max(alerts_by_hour)
            for hour in [h for h in alerts_by_hour if h <= newest - 24]:
                del alerts_by_hour[hour]
        m.alerts_24h.set(sum(alerts_by_hour.values()))
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
        consumer = self.consumer()
        try:
            assignment = consumer.assignment()
        except Exception:  # not yet started
            return
        inputs = {self.settings.topic_authorizations, self.settings.topic_labels}
        for tp in assignment:
            if tp.topic not in inputs:
                continue
            # The fetch high-water mark: some brokers (the embedded one) misreport end offsets.
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            done = self.positions.get((tp.topic, tp.partition), -1) + 1
            m.lag.labels(tp.topic, str(tp.partition)).set(max(hw - done, 0))
