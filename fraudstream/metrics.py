"""Prometheus metrics of a worker. No card, transaction or merchant ids as labels."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics", "LATENCY_BUCKETS", "DETECTION_BUCKETS", "FOUND", "observe_all", "quantile"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_DELAY_BUCKETS = tuple(h * 3600.0 for h in (0.5, 1, 3, 6, 12, 24, 48, 96, 168, 336, 720, 1440))
_SCORE_BUCKETS = tuple(i / 20 for i in range(1, 21))
#: Time to detection: 0 (the first fraud itself alerted or blocked), minutes, hours, days, up to 30 days.
DETECTION_BUCKETS = (0.0, 60.0, 300.0, 900.0, 1800.0, *(h * 3600.0 for h in (1, 2, 4, 8, 12, 24, 48, 96, 168, 336, 720)))
#: How a card confirmed compromised was found first (fraudstream.core.scorer.LabelOutcome.found).
FOUND = ("model", "label", "missed")


class Metrics:
    """Every metric fraudstream exports, registered once on ``registry``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        r = registry
        self.consumed = Counter("fraudstream_authorizations_consumed", "Authorizations read from the input topic.", registry=r)
        self.scored = Counter("fraudstream_authorizations_scored", "Authorizations scored and written to fraud.scores.", registry=r)
        self.dead_letters = Counter("fraudstream_dead_letters", "Messages sent to the dead-letter topic.", ["topic", "reason"], registry=r)
        self.late = Counter("fraudstream_late_authorizations", "Authorizations older than the grace period: scored, not aggregated.", registry=r)
        self.rerouted = Counter("fraudstream_authorizations_rerouted", "Authorizations found in another partition than their "
                                "card's (a producer not partitioning by Kafka's murmur2): produced again to their card's.", registry=r)
        self.held = Gauge("fraudstream_merchant_held", "Authorizations held in their card's partition until every other card "
                          "partition has passed the minute of merchant partials they read.", registry=r)
        self.duplicates = Counter("fraudstream_duplicate_authorizations", "Redelivered tx_ids answered from their snapshot.", registry=r)
        self.latency = Histogram("fraudstream_end_to_end_latency_seconds", "Arrival on fraud.authorizations (the record's timestamp) to score produced, per authorization; not from its event ts (see fraudstream_last_authorization_timestamp_seconds).", buckets=LATENCY_BUCKETS, registry=r)
        self.processing = Histogram("fraudstream_batch_processing_seconds", "Time to score one batch.", buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("fraudstream_batch_size", "Authorizations per scored batch.", buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000), registry=r)
        self.lag = Gauge("fraudstream_consumer_lag", "Messages behind the fetch high-water mark.", ["topic", "partition"], registry=r)
        self.alerts = Counter("fraudstream_alerts", "Alerts published, by action.", ["action"], registry=r)
        self.threshold = Gauge("fraudstream_alert_threshold", "Current adaptive alert threshold.", ["partition"], registry=r)
        self.alerts_24h = Gauge("fraudstream_alerts_last_24h", "New alerts (not updates) in the last 24 hours of event time (the newest hour and the 23 before it).", registry=r)
        self.budget = Gauge("fraudstream_alert_budget_per_day", "Cards the review team can check a day.", registry=r)
        self.score = Histogram("fraudstream_score", "Model scores of authorizations.", buckets=_SCORE_BUCKETS, registry=r)
        self.labels = Counter("fraudstream_labels", "Labels received, by source and what became of them.", ["source", "status"], registry=r)
        self.label_delay = Histogram("fraudstream_label_delay_seconds", "Authorization ts to label ts.", ["source"], buckets=_DELAY_BUCKETS, registry=r)
        # A fraud center director's figures, counted when a fraud label arrives, in event time (README, Observability).
        self.compromised_cards = Counter("fraudstream_compromised_cards", "Cards confirmed compromised, each once, when "
                                         "its first fraud label arrives, by what had found it by then: model (alerted "
                                         "from its first confirmed fraud to the label), label (blocked by an earlier "
                                         "label), missed (neither).", ["found"], registry=r)
        self.detection_delay = Histogram("fraudstream_detection_delay_seconds", "Time to detection of the cards counted "
                                         "found by the model or a label: their first confirmed fraudulent "
                                         "authorization's ts to their first alert or block (event time).",
                                         buckets=DETECTION_BUCKETS, registry=r)
        self.fraud_amount = Counter("fraudstream_fraud_amount", "Amounts of authorizations confirmed fraudulent, in "
                                    "each authorization's own currency units (summed as they are), when the label "
                                    "arrives: prevented when the card had been alerted or blocked at or before the "
                                    "authorization since its first confirmed fraud, else missed.", ["outcome"], registry=r)
        self.model_examples = Gauge("fraudstream_model_examples_learned", "Training examples the model has learned (its version).", registry=r)
        self.model_learned = Counter("fraudstream_model_learn", "Training examples applied by this worker, by label stream.", ["stream"], registry=r)
        self.checkpoint_ts = Gauge("fraudstream_model_last_checkpoint_timestamp_seconds", "Unix time of the last model checkpoint.", registry=r)
        self.alert_precision = Gauge("fraudstream_model_alert_precision", "Share of labelled alerts that were fraud (recent labels).", registry=r)
        self.fraud_recall = Gauge("fraudstream_model_fraud_recall", "Share of labelled frauds that were alerted (recent labels).", registry=r)
        self.average_precision = Gauge("fraudstream_model_average_precision", "Average precision of scores on recent labels.", registry=r)
        self.rule_hits = Counter("fraudstream_rule_hits", "Rule matches, by rule and mode.", ["rule", "mode"], registry=r)
        self.rule_precision = Gauge("fraudstream_rule_precision", "Confirmed fraud among a rule's labelled hits on this worker since it started, however late the labels (the weekly review: fraudstream rules stats).", ["rule"], registry=r)
        self.rule_rejections = Counter("fraudstream_rule_rejections", "Rule changes refused as malformed.", registry=r)
        self.cards = Gauge("fraudstream_cards_tracked", "Cards whose state this worker holds (RocksDB: its estimate).", registry=r)
        self.merchants = Gauge("fraudstream_merchants_tracked", "Merchant states of this worker's card partitions (one per merchant and partition).", registry=r)
        self.rocksdb_memory = Gauge("fraudstream_rocksdb_memory_bytes", "Memory of the worker's RocksDB tables: their one block "
                                    "cache (data, index and filter blocks, memtables charged to it) and their open files' "
                                    "readers; bounded by FRAUDSTREAM_ROCKSDB_MEMORY_MB for all of them.",
                                    registry=r)
        self.live_states = Gauge("fraudstream_live_states", "States held as Python objects, by kind (card, standing, merchant, "
                                 "card_transactions): bounded by FRAUDSTREAM_LIVE_STATES_MAX, the rest stay in the tables; merchant: the "
                                 "replicas of every card partition, all held.",
                                 ["kind"], registry=r)
        self.allocator = Gauge("fraudstream_allocator_bytes", "The C allocator's memory: in_use (RocksDB's memory included, "
                               "librdkafka, the interpreter's larger objects) and free (held, not in use). Resident memory "
                               "that grows while in_use does not is the allocator's, not a leak.",
                               ["kind"], registry=r)
        self.snapshots = Gauge("fraudstream_snapshots_pending", "Scored authorizations awaiting a label or maturity.", registry=r)
        self.evicted = Counter("fraudstream_state_evicted", "Idle cards and merchants evicted.", registry=r)
        self.broker_errors = Counter("fraudstream_broker_errors", "Errors talking to the broker (a stall shows here).", ["kind"], registry=r)
        self.last_event_ts = Gauge("fraudstream_last_authorization_timestamp_seconds", "Event time of the newest authorization scored.", registry=r)
        self.budget.set(0)
        for found in FOUND:  # every series from the start: shares over a day need their zeros
            self.compromised_cards.labels(found)
        for outcome in ("prevented", "missed"):
            self.fraud_amount.labels(outcome)


def observe_all(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe`` of each of ``values``, a batch at once: one increment per bucket touched. A score and a
    latency per authorization, each observed alone, took a lock per value and one per bucket (≈ 5 % of a worker's
    CPU in ``bench --profile``). prometheus-client has no bulk observe: this adds to its bucket and sum values.

    >>> h = Histogram("h", "", buckets=(0.1, 0.5), registry=CollectorRegistry())
    >>> observe_all(h, [0.05, 0.1, 0.3, 0.7, 0.7])
    >>> [(s.labels["le"], s.value) for s in h.collect()[0].samples if s.name == "h_bucket"]
    [('0.1', 2.0), ('0.5', 3.0), ('+Inf', 5.0)]
    """
    if not values:
        return
    bounds, buckets = histogram._upper_bounds, histogram._buckets  # the buckets `observe` adds to (amount <= bound)
    for i, n in Tally(bisect_left(bounds, v) for v in values).items():
        buckets[i].inc(n)
    histogram._sum.inc(sum(values))


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of a Prometheus histogram's cumulative ``buckets`` (upper bound -> count), interpolated
    within the bucket as ``histogram_quantile`` does; None without observations.

    >>> quantile(0.5, {0.1: 10.0, 0.5: 20.0, float("inf"): 20.0})
    0.1
    >>> quantile(0.95, {0.1: 10.0, 0.5: 20.0, float("inf"): 20.0})
    0.46
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower  # beyond the last finite bound: say that bound, as Prometheus does
            return round(lower + (bound - lower) * (rank - below) / (count - below), 6) if count > below else bound
        lower, below = bound, count
    return lower
