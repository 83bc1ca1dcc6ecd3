"""Labels and card reissues: validated and re-keyed at intake, then applied where the card's alerts are decided.

fraud.labels and fraud.card-reissues may be produced by any client (KafkaJS, a case-management system), with any
partitioner: :meth:`CardEventStage.intake` validates them (bad ones dead-lettered) and re-keys them onto
fraud.card-events with ours, so that :meth:`CardEventStage.batch` finds them on the partition that holds the card's
snapshots and standing. A label's outcome (training examples, its merchant's news, detection metrics) is published by
:class:`LabelOutcomes`, which the score stage shares for early labels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fraudstream.config import Settings
from fraudstream.contracts import CardReissue, Label, Rejection, decode, decode_card_reissue, decode_label, encode
from fraudstream.core.model.quality import QualityWindow
from fraudstream.core.scorer import FraudScorer
from fraudstream.metrics import Metrics
from fraudstream.stream.stages.base import DeadLetters, Sink, Stage
from fraudstream.stream.stages.partials import OwnMerchants
from fraudstream.stream.stages.tables import CardTables

__all__ = ["CardEventStage", "LabelOutcomes"]

Produce = Callable[..., None]


class LabelOutcomes:
    """What a label brings: model quality (``quality``), label and detection delays, fraud amounts, training
    examples on fraud.training-examples, and its merchant's news to the labelled card's partition's own merchant state
    (``merchants``, which publishes it to the other workers' replicas)."""

    def __init__(self, settings: Settings, metrics: Metrics, outputs: Sink, merchants: OwnMerchants) -> None:
        self.settings = settings
        self.metrics = metrics
        self.outputs = outputs
        self.merchants = merchants
        self.quality = QualityWindow()

    def publish(self, outcome: Any, source: str, is_fraud: bool | None = None, produce: Produce | None = None, *,
                at: tuple[str, int]) -> None:
        """``produce``: where the records go (default the sink; the score stage's outbox for early labels). ``at``:
        the merchant event's kind and input offset (`OwnMerchants.label`): ("l", its offset in fraud.card-events),
        or ("e", that of the authorization that found it waiting)."""
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
        kind, offset = at
        for upd in outcome.merchant_updates:
            self.merchants.label(upd, kind, offset)


class CardStage(Stage):
    """A stage where a card's state lives (its partition): the scorer, the card tables, what labels teach."""

    def __init__(self, settings: Settings, metrics: Metrics, outputs: Sink, dead_letters: DeadLetters, scorer: FraudScorer,
                 tables: CardTables, outcomes: LabelOutcomes, positions: dict[tuple[str, int], int] | None = None) -> None:
        super().__init__(settings, metrics, outputs, dead_letters, positions)
        self.scorer = scorer
        self.tables = tables
        self.outcomes = outcomes


class CardEventStage(CardStage):
    """fraud.labels and fraud.card-reissues -> fraud.card-events (by card) -> the card's standing and snapshots."""

    def intake(self, messages: list[Any], kind: str) -> None:
        """Labels (``kind`` "label") or reissues ("reissue"), validated and re-keyed with our partitioner.

        Whatever client produced them, they then reach the partition that holds
        the card's snapshots and standing.
        """
        self.each(messages, lambda msg: self._intake_one(msg, kind))
        self.outputs.poll()

    def _intake_one(self, msg: Any, kind: str) -> None:
        record = decode_label(msg.value, msg.key) if kind == "label" else decode_card_reissue(msg.value, msg.key)
        if isinstance(record, Rejection):
            self.dead_letters.send(record, msg)
            if kind == "label":
                self.metrics.labels.labels("invalid", "rejected").inc()
            return
        self.outputs.produce(self.settings.topic_card_events, encode({"kind": kind, "record": record}), record.card_id.encode())

    def batch(self, messages: list[Any]) -> None:
        """fraud.card-events: each label or reissue applied to the card's standing (then written in order
        by ``Flusher.durable``)."""
        self.each(messages, self._one)
        self.scorer.standings.flush()
        self.tables.standings.clear_routes()
        # Before the standings and snapshots the labels changed (the worker awaits them after these): a label read
        # again finds its news in the merchant's state, not lost with it (`OwnMerchants`).
        self.outcomes.merchants.publish(self.outputs, self.settings.topic_merchant_partials)
        self.outputs.poll()

    def _one(self, msg: Any) -> None:
        d = decode(msg.value)
        card_id = d["record"]["card_id"]
        self.tables.standings.route(card_id, msg.partition)
        self.tables.set_partition(msg.partition)
        if d["kind"] == "reissue":
            self.scorer.reissue(CardReissue(**d["record"]))
            return
        label = Label(**d["record"])
        outcome = self.scorer.label(label)
        self.metrics.labels.labels(label.source, outcome.status).inc()
        self.outcomes.publish(outcome, label.source, label.is_fraud, at=("l", msg.offset))
