"""Followers of the single-partition topics every worker reads whole.

- :class:`ModelFollower` applies ``fraud.training-examples`` in order, so every
  worker holds the same model at the same version; it checkpoints the model
  with its offset, to the state dir and to ``fraud.models``, and restores
  from the newer of the two on start.
- :class:`RuleFollower` applies ``fraud.rules`` (compacted, keyed by rule id):
  a malformed rule is refused and the rules in force stay in force.

They read with confluent-kafka by assignment, not in a consumer group:
every worker needs every message.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from fraudstream.contracts import Rejection, decode
from fraudstream.core.features.catalogue import FEATURE_NAMES
from fraudstream.core.model.online import OnlineModel, TrainingExample
from fraudstream.core.rules import Rule, RuleError

if TYPE_CHECKING:
    from fraudstream.stream.app import FraudApp

__all__ = ["ModelFollower", "RuleFollower", "Checkpoint", "RULE_FIELDS"]

log = logging.getLogger("fraudstream.learning")

#: What a rule condition may name: the feature catalogue and the event's fields.
RULE_FIELDS = frozenset(FEATURE_NAMES) | {"amount", "currency", "mcc", "country", "channel", "merchant_id"}

_HEADER = struct.Struct("<qd")  # training offset, unix time of the checkpoint


class Checkpoint:
    """A model and the training offset it has learned up to, as bytes."""

    @staticmethod
    def pack(model: OnlineModel, offset: int) -> bytes:
        return _HEADER.pack(offset, time.time()) + model.to_bytes()

    @staticmethod
    def unpack(raw: bytes) -> tuple[OnlineModel, int, float]:
        offset, at = _HEADER.unpack_from(raw)
        return OnlineModel.from_bytes(raw[_HEADER.size :]), offset, at


def _consumer(client: dict[str, Any], purpose: str) -> Consumer:
    return Consumer({**client, "group.id": f"fraudstream-{purpose}-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "enable.partition.eof": False})


class ModelFollower:
    def __init__(self, owner: FraudApp, client: dict[str, Any]) -> None:
        self.owner = owner
        self.client = client
        self.offset = 0
        self.consumer: Consumer | None = None
        self.ready = False
        self.last_checkpoint = time.monotonic()
        self.path = Path(owner.settings.state_dir) / f"{owner.settings.app_id}.model"

    def restore(self) -> None:
        """Start from the newest checkpoint: the local file or the models topic."""
        best: tuple[OnlineModel, int, float] | None = None
        if self.path.exists():
            try:
                best = Checkpoint.unpack(self.path.read_bytes())
            except Exception as exc:  # a torn file must not stop the worker
                log.warning("ignoring unreadable checkpoint %s: %s", self.path, exc)
        remote = self._latest_published()
        if remote is not None and (best is None or remote[1] > best[1]):
            best = remote
        if best is not None:
            self.owner.scorer.model, self.offset, _ = best
            log.info("model restored at version %s (training offset %d)", best[0].version, best[1])
        caught_up = self._catch_up()
        if caught_up:
            log.info("model caught up on %d training examples since its checkpoint: version %s", caught_up,
                     self.owner.scorer.model.version)
        self.consumer = _consumer(self.client, "model")
        self.consumer.assign([TopicPartition(self.owner.settings.topic_training, 0, self.offset)])
        self.owner.metrics.checkpoint_ts.set(time.time())
        self.ready = True

    def _catch_up(self, timeout: float = 60.0) -> int:
        """Learn the examples since the checkpoint, to the end of the topic, before the worker scores anything:
        a restarted worker never scores with an older model than it had (scoring waits for `ready`)."""
        c = Consumer({**self.client, "group.id": f"fraudstream-model-catchup-{uuid.uuid4().hex[:8]}",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": True,
                      "fetch.wait.max.ms": 10})
        learned = 0
        try:
            c.assign([TopicPartition(self.owner.settings.topic_training, 0, self.offset)])
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msgs = c.consume(2000, 0.5)
                if any(m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF for m in msgs):
                    learned += self._apply([m for m in msgs if m.error() is None])
                    return learned
                learned += self._apply(msgs)
            log.warning("model catch-up stopped after %.0fs at training offset %d", timeout, self.offset)
        except Exception as exc:  # the follower carries on from wherever it got to
            log.warning("model catch-up failed at training offset %d: %s", self.offset, exc)
        finally:
            c.close()
        return learned

    def _latest_published(self) -> tuple[OnlineModel, int, float] | None:
        c = _consumer(self.client, "models-read")
        try:
            topic = self.owner.settings.topic_models
            c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            latest = None
            key = self.owner.settings.app_id.encode()
            idle = 0
            while idle < 3:
                msgs = c.consume(100, 0.3)
                if not msgs:
                    idle += 1
                    continue
                for m in msgs:
                    if m.error() is None and m.key() == key and m.value():
                        latest = m.value()
            return Checkpoint.unpack(latest) if latest else None
        except Exception as exc:
            log.warning("could not read published models: %s", exc)
            return None
        finally:
            c.close()

    def poll(self, max_messages: int = 2000) -> int:
        if not self.ready or self.consumer is None:
            return 0
        n = self._apply(self.consumer.consume(max_messages, 0))
        if time.monotonic() - self.last_checkpoint > self.owner.settings.checkpoint_interval_s:
            self.checkpoint()
        return n

    def _apply(self, msgs: list[Any]) -> int:
        model, metrics = self.owner.scorer.model, self.owner.metrics
        n = 0
        for m in msgs:
            if m.error() is not None:
                if m.error().code() != KafkaError._PARTITION_EOF:
                    metrics.broker_errors.labels("training").inc()
                continue
            try:
                example = TrainingExample.from_dict(decode(m.value()))
            except (ValueError, KeyError, TypeError) as exc:
                self.owner.dead_letter(Rejection("invalid_value", f"training example: {exc}"[:200]), _Msg(m))
            else:
                model.learn(example)
                metrics.model_learned.labels("feedback" if example.source in ("analyst", "investigator") else "delayed").inc()
                n += 1
            self.offset = m.offset() + 1
        return n

    def checkpoint(self) -> None:
        raw = Checkpoint.pack(self.owner.scorer.model, self.offset)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, self.path)  # atomic: a crash leaves the old checkpoint or the new one
        self.owner.outputs.produce(self.owner.settings.topic_models, raw, self.owner.settings.app_id.encode())
        self.last_checkpoint = time.monotonic()
        self.owner.metrics.checkpoint_ts.set(time.time())

    def checkpoint_on_shutdown(self) -> None:
        if self.ready:
            self.checkpoint()
            self.owner.producer.flush(5)


class RuleFollower:
    def __init__(self, owner: FraudApp, client: dict[str, Any]) -> None:
        self.owner = owner
        self.consumer = _consumer(client, "rules")
        self.consumer.assign([TopicPartition(owner.settings.topic_rules, 0, OFFSET_BEGINNING)])

    def poll(self) -> int:
        msgs = self.consumer.consume(500, 0)
        n = 0
        for m in msgs:
            if m.error() is not None:
                continue
            n += self.apply(m)
        return n

    def apply(self, m: Any) -> int:
        scorer = self.owner.scorer
        rule_id = (m.key() or b"").decode("utf-8", "replace")
        try:
            if m.value() is None:
                scorer.rules = scorer.rules.without(rule_id)
                log.info("rule %s removed", rule_id)
                return 1
            rule = Rule.from_dict(decode(m.value()), known_names=RULE_FIELDS)
            if rule.id != rule_id:
                raise RuleError(f"message key {rule_id!r} disagrees with rule id {rule.id!r}")
        except (RuleError, ValueError, TypeError) as exc:
            self.owner.metrics.rule_rejections.inc()
            self.owner.dead_letter(Rejection("invalid_value", f"rule rejected: {exc}"[:300]), _Msg(m))
            log.warning("rule %s rejected, rules in force unchanged: %s", rule_id, exc)
            return 0
        scorer.rules = scorer.rules.with_rule(rule)
        log.info("rule %s applied (%s)", rule.id, rule.mode)
        return 1


class _Msg:
    """A confluent-kafka message with the attribute names faust messages have."""

    def __init__(self, m: Any) -> None:
        self.topic, self.partition, self.offset = m.topic(), m.partition(), m.offset()
        self.key, self.value = m.key(), m.value()


