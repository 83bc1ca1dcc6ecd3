"""The worker's stages: plain classes, a batch of messages in, outputs out, no faust in them.

Data path (each arrow is a Kafka topic, so state is partitioned by its key):

    fraud.authorizations (card) ─ score ─▶ fraud.scores, fraud.alerts, fraud.merchant-partials

    fraud.labels, fraud.card-reissues ─ card events (intake) ─▶ fraud.card-events (card) ─ card events ─▶
    fraud.training-examples, fraud.merchant-partials

- :mod:`~fraudstream.stream.stages.score`: :class:`ScoreStage`, one pass per authorization: validation, card and
  merchant features, score, rules and decision.
- :mod:`~fraudstream.stream.stages.partials`: :class:`OwnMerchants`, the merchant states of this worker's card
  partitions and the events they publish for every worker's replicas.
- :mod:`~fraudstream.stream.stages.labels`: :class:`CardEventStage`, labels and reissues; :class:`LabelOutcomes`.
- :mod:`~fraudstream.stream.stages.base`: what they share (:class:`Stage`, :class:`DeadLetters`, :class:`Sink`).

The worker (``fraudstream.stream.app``) wires them to faust's agents and awaits the broker between a stage's
steps: when its outputs, and when its state, must be on the broker is written in each stage's doc.
"""

from fraudstream.stream.stages.base import DeadLetters, Message, Sink, Stage
from fraudstream.stream.stages.labels import CardEventStage, LabelOutcomes
from fraudstream.stream.stages.partials import OwnMerchants
from fraudstream.stream.stages.score import ScoreStage
from fraudstream.stream.stages.tables import CardTables

__all__ = ["CardEventStage", "CardTables", "DeadLetters", "LabelOutcomes", "Message", "OwnMerchants", "ScoreStage", "Sink",
           "Stage"]
