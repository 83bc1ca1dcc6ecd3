"""Followers of the single-partition topics every worker reads whole.

- :class:`ModelFollower` applies ``fraud.training-examples`` in order, so every
  worker holds the same model at the same version; it checkpoints the model
  with its offset, to the state dir and to ``fraud.models``, and restores
  from the newer of the two on start.
- :func:`publish_checkpoint` puts a model learned elsewhere (``fraudstream
  backtest --save-model``) on ``fraud.models`` as a new *generation*: every
  worker starts from it, running ones switch to it (see :class:`Checkpoint`).
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
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from fraudstream.contracts import Rejection, decode
from fraudstream.core.features.catalogue import FEATURE_NAMES
from fraudstream.core.model.online import OnlineModel, TrainingExample
from fraudstream.core.rules import Rule, RuleError
from fraudstream.stream.stages.base import Message

if TYPE_CHECKING:
    from fraudstream.config import Settings
    from fraudstream.stream.app import FraudApp

__all__ = ["ModelFollower", "RuleFollower", "Checkpoint", "CheckpointHeader", "RULE_FIELDS", "publish_checkpoint",
           "stored_rule", "training_end"]

log = logging.getLogger("fraudstream.learning")

#: What a rule condition may name, with its type: the feature catalogue (numbers) and the event's fields. The types
#: let a rule that compares text with a number (`channel > 5`, never true) be refused when it is applied.
RULE_FIELDS: Mapping[str, str] = MappingProxyType({
    **dict.fromkeys(FEATURE_NAMES, "number"), "amount": "number",
    **dict.fromkeys(("currency", "mcc", "country", "channel", "merchant_id"), "text"),
})



def stored_rule(rule_id: str, value: bytes) -> Rule:
    """The rule a fraud.rules record holds under its key, as the workers read it; RuleError (or ValueError,
    TypeError) says why not."""
    rule = Rule.from_json(value, known_names=RULE_FIELDS)
    if rule.id != rule_id:
        raise RuleError(f"rule {rule.id!r} is stored under the key {rule_id!r}")
    return rule


_HEADER = struct.Struct("<qd")  # training offset, unix time of the checkpoint
# With a generation: _GENERATION_MARK (never a training offset), training offset, unix time, generation.
_GENERATION_HEADER = struct.Struct("<qqdq")
_GENERATION_MARK = -2
#: Key suffix of published checkpoints on ``fraud.models``: no worker writes that key, so none overwrites them.
PUBLISHED_SUFFIX = "/published"


class CheckpointHeader(NamedTuple):
    offset: int  # the training offset learned up to: the next example to learn is at this offset
    at: float  # unix time the checkpoint was written
    generation: int  # 0 for a deployment's own model; each `fraudstream model publish` starts the next one


class Checkpoint:
    """A model and the training offset it has learned up to, as bytes.

    A generation orders lineages of the model: a checkpoint of a higher generation wins over any of a lower one,
    whatever their training offsets, and within a generation the higher training offset wins. Workers learn and
    checkpoint in their model's generation; ``fraudstream model publish`` starts the next one, so an older
    worker's checkpoint, written after the publish, never replaces the published model. Generation 0 is written
    in the original header (training offset, time), so a deployment that never published writes the bytes it
    always wrote, and reads the checkpoints it wrote before generations existed.
    """

    @staticmethod
    def pack(model: OnlineModel, offset: int, generation: int = 0) -> bytes:
        return Checkpoint.header_bytes(offset, generation) + model.to_bytes()

    @staticmethod
    def header_bytes(offset: int, generation: int = 0, at: float | None = None) -> bytes:
        if offset < 0 or generation < 0:
            raise ValueError(f"a checkpoint's offset and generation are not negative ({offset}, {generation})")
        at = time.time() if at is None else at
        if generation == 0:
            return _HEADER.pack(offset, at)
        return _GENERATION_HEADER.pack(_GENERATION_MARK, offset, at, generation)

    @staticmethod
    def header(raw: bytes) -> CheckpointHeader:
        """The header alone, without unpickling the model; ``struct.error`` if ``raw`` is too short."""
        return Checkpoint._split(raw)[0]

    @staticmethod
    def _split(raw: bytes) -> tuple[CheckpointHeader, int]:
        (first,) = struct.unpack_from("<q", raw)
        if first == _GENERATION_MARK:
            _, offset, at, generation = _GENERATION_HEADER.unpack_from(raw)
            return CheckpointHeader(offset, at, generation), _GENERATION_HEADER.size
        offset, at = _HEADER.unpack_from(raw)
        return CheckpointHeader(offset, at, 0), _HEADER.size

    @staticmethod
    def unpack(raw: bytes) -> tuple[OnlineModel, int, float]:
        header, size = Checkpoint._split(raw)
        return OnlineModel.from_bytes(raw[size:]), header.offset, header.at

    @staticmethod
    def restamp(raw: bytes, offset: int, generation: int) -> bytes:
        """The same model (the very bytes) under a new header."""
        return Checkpoint.header_bytes(offset, generation) + raw[Checkpoint._split(raw)[1] :]


def _rank(header: CheckpointHeader) -> tuple[int, int]:
    return header.generation, header.offset


def _models_keys(app_id: str) -> tuple[bytes, bytes]:
    """The workers' key and the published checkpoints' key on ``fraud.models``."""
    return app_id.encode(), f"{app_id}{PUBLISHED_SUFFIX}".encode()


def _best_checkpoint(msgs: list[Any], keys: tuple[bytes, ...], best: bytes | None = None) -> bytes | None:
    """The highest-ranked checkpoint among ``msgs`` with one of ``keys``, or ``best`` if none ranks higher."""
    best_rank = _rank(Checkpoint.header(best)) if best is not None else None
    for m in msgs:
        if m.error() is not None or m.key() not in keys or not m.value():
            continue
        try:
            rank = _rank(Checkpoint.header(m.value()))
        except struct.error:
            log.warning("ignoring a malformed checkpoint at %s[%d]@%d", m.topic(), m.partition(), m.offset())
            continue
        if best_rank is None or rank > best_rank:  # equal rank: the same model; the first one is as good
            best, best_rank = m.value(), rank
    return best


def _at_eof(m: Any) -> bool:
    err = m.error()
    return err is not None and err.code() == KafkaError._PARTITION_EOF


def _consumer(client: dict[str, Any], purpose: str) -> Consumer:
    return Consumer({**client, "group.id": f"fraudstream-{purpose}-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "enable.partition.eof": False})


class ModelFollower:
    def __init__(self, owner: FraudApp, client: dict[str, Any]) -> None:
        self.owner = owner
        self.client = client
        self.offset = 0
        self.generation = 0  # of the model in use (see `Checkpoint`)
        self.consumer: Consumer | None = None
        self.models: Consumer | None = None  # at the end of the models topic, for checkpoints published meanwhile
        self.keys = _models_keys(owner.settings.app_id)
        self.ready = False
        self.last_checkpoint = time.monotonic()
        self.path = Path(owner.settings.state_dir) / f"{owner.settings.app_id}.model"

    def restore(self) -> None:
        """Start from the newest checkpoint (by generation, then training offset): the local file, the workers'
        last one on the models topic, or a published one."""
        candidates: list[tuple[str, bytes]] = []
        if self.path.exists():
            try:
                local = self.path.read_bytes()
                Checkpoint.header(local)
                candidates.append((str(self.path), local))
            except Exception as exc:  # a torn file must not stop the worker
                log.warning("ignoring unreadable checkpoint %s: %s", self.path, exc)
        remote = self._read_models()
        if remote is not None:
            candidates.append((self.owner.settings.topic_models, remote))
        # Stable: at equal rank the local file, as before generations.
        candidates.sort(key=lambda c: _rank(Checkpoint.header(c[1])), reverse=True)
        for where, raw in candidates:
            try:
                model, offset, _ = Checkpoint.unpack(raw)
            except Exception as exc:
                log.warning("ignoring unreadable checkpoint from %s: %s", where, exc)
                continue
            self.owner.scorer.model, self.offset, self.generation = model, offset, Checkpoint.header(raw).generation
            log.info("model restored at version %s (training offset %d) from %s, generation %d", model.version, offset,
                     where, self.generation)
            break
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
                if any(_at_eof(m) for m in msgs):
                    learned += self._apply([m for m in msgs if m.error() is None])
                    return learned
                learned += self._apply(msgs)
            log.warning("model catch-up stopped after %.0fs at training offset %d", timeout, self.offset)
        except Exception as exc:  # the follower carries on from wherever it got to
            log.warning("model catch-up failed at training offset %d: %s", self.offset, exc)
        finally:
            c.close()
        return learned

    def _read_models(self) -> bytes | None:
        """The best checkpoint on the models topic; the consumer stays at the topic's end, for `follow`."""
        c = Consumer({**self.client, "group.id": f"fraudstream-models-read-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest", "enable.partition.eof": True})
        try:
            c.assign([TopicPartition(self.owner.settings.topic_models, 0, OFFSET_BEGINNING)])
            best = _read_to_end(c, self.keys)
        except Exception as exc:
            log.warning("could not read published models: %s", exc)
            c.close()
            return None
        self.models = c
        return best

    def follow(self) -> bool:
        """Switch to a checkpoint of a newer generation, published since (or reached first by another worker):
        its model, generation and training offset; `poll` then learns the examples since that offset on it."""
        if self.models is None:
            return False
        newest = _best_checkpoint(self.models.consume(100, 0), self.keys)
        if newest is None or Checkpoint.header(newest).generation <= self.generation:
            return False
        model, offset, _ = Checkpoint.unpack(newest)
        self.owner.scorer.model, self.offset, self.generation = model, offset, Checkpoint.header(newest).generation
        if self.consumer is not None:
            self.consumer.assign([TopicPartition(self.owner.settings.topic_training, 0, offset)])
        log.info("model switched to generation %d, published at version %s (training offset %d)", self.generation,
                 model.version, offset)
        self.checkpoint()  # this worker's checkpoints are of the new generation from now on
        return True

    def _follow_safely(self) -> None:
        try:
            self.follow()
        except Exception as exc:  # a bad checkpoint on the topic: keep the model in use
            log.warning("could not switch to a published model: %s", exc)

    def poll(self, max_messages: int = 2000) -> int:
        if not self.ready or self.consumer is None:
            return 0
        self._follow_safely()
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
                self.owner.dead_letter(Rejection("invalid_value", f"training example: {exc}"[:200]), Message.of(m))
            else:
                model.learn(example)
                metrics.model_learned.labels("feedback" if example.source in ("analyst", "investigator") else "delayed").inc()
                n += 1
            self.offset = m.offset() + 1
        return n

    def checkpoint(self) -> None:
        raw = Checkpoint.pack(self.owner.scorer.model, self.offset, self.generation)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, self.path)  # atomic: a crash leaves the old checkpoint or the new one
        self.owner.outputs.produce(self.owner.settings.topic_models, raw, self.keys[0])
        self.last_checkpoint = time.monotonic()
        self.owner.metrics.checkpoint_ts.set(time.time())

    def checkpoint_on_shutdown(self) -> None:
        if self.ready:
            self._follow_safely()  # not the old generation's model, if a newer one was published meanwhile
            self.checkpoint()
            self.owner.producer.flush(5)


def _read_to_end(c: Consumer, keys: tuple[bytes, ...], timeout: float = 30.0) -> bytes | None:
    """Read the models topic (assigned to ``c``, partition EOF on) to its end; the best checkpoint with ``keys``."""
    best = None
    deadline = time.monotonic() + timeout
    idle = 0
    while idle < 3 and time.monotonic() < deadline:
        msgs = c.consume(100, 0.3)
        idle = 0 if msgs else idle + 1
        best = _best_checkpoint(msgs, keys, best)
        if any(_at_eof(m) for m in msgs):
            break
    return best


def training_end(client: dict[str, Any], topic: str, timeout: float = 10.0) -> int:
    """The offset after the last example on the training topic (one partition), found by fetching: the embedded
    broker reports a lower end offset after a multi-record batch."""
    c = Consumer({**client, "group.id": f"fraudstream-training-end-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "latest", "fetch.wait.max.ms": 10})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout)
        if high <= 0:
            return 0
        c.assign([TopicPartition(topic, 0, high - 1)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in c.consume(1000, 0.2):
                if _at_eof(m):
                    return int(m.offset() or 0)
        raise TimeoutError(f"could not find the end of {topic} within {timeout:.0f}s")
    finally:
        c.close()


def publish_checkpoint(settings: Settings, raw: bytes, timeout: float = 30.0) -> tuple[OnlineModel, CheckpointHeader]:
    """Publish the checkpoint ``raw`` (a file of ``fraudstream backtest --save-model``, or a worker's) to the
    models topic, for every worker of ``settings.app_id`` to start from; returns its model and its new header.

    - Its training offset becomes the end of ``fraud.training-examples`` now: the model learned its history
      elsewhere, so the examples the deployment produced so far are not learned on it a second time (they
      describe the same period, mostly); every example from now on is.
    - Its generation is one more than any on the topic, and it goes under a key no worker writes: a worker
      starting or restarting chooses it over every checkpoint of an older generation (its own file included,
      however far it has learned), a running worker switches to it within a second (`ModelFollower.follow`),
      and an older worker's checkpoint written meanwhile neither replaces it (another key, which compaction
      keeps apart) nor outranks it.
    """
    model, _, _ = Checkpoint.unpack(raw)  # what a worker could not load is refused here
    client = settings.kafka_client_config()
    keys = _models_keys(settings.app_id)
    c = Consumer({**client, "group.id": f"fraudstream-models-publish-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})
    try:
        for topic in (settings.topic_models, settings.topic_training):
            if c.list_topics(topic, timeout=timeout).topics[topic].error is not None:
                raise LookupError(f"topic {topic} does not exist: create the topics first (`fraudstream topics create`)")
        c.assign([TopicPartition(settings.topic_models, 0, OFFSET_BEGINNING)])
        newest = _read_to_end(c, keys, timeout)
    finally:
        c.close()
    generation = 1 + (Checkpoint.header(newest).generation if newest is not None else 0)
    stamped = Checkpoint.restamp(raw, training_end(client, settings.topic_training), generation)
    failures: list[Any] = []
    producer = Producer(settings.producer_config())
    producer.produce(settings.topic_models, stamped, keys[1], on_delivery=lambda err, _msg: failures.append(err) if err else None)
    if producer.flush(timeout) or failures:
        raise KafkaException(failures[0] if failures else KafkaError(KafkaError._MSG_TIMED_OUT))
    return model, Checkpoint.header(stamped)


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
            rule = stored_rule(rule_id, m.value())
        except (RuleError, ValueError, TypeError) as exc:
            self.owner.metrics.rule_rejections.inc()
            self.owner.dead_letter(Rejection("invalid_value", f"rule rejected: {exc}"[:300]), Message.of(m))
            log.warning("rule %s rejected, rules in force unchanged: %s", rule_id, exc)
            return 0
        scorer.rules = scorer.rules.with_rule(rule)
        log.info("rule %s applied (%s)", rule.id, rule.mode)
        return 1
