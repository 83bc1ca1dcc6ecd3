"""The worker's outputs reach the broker, or the worker keeps waiting and says so: none is lost unseen.

Every stage produces its outputs (records for the next stage, scores, alerts, dead letters, training examples,
model checkpoints) with one confluent-kafka producer, and acknowledges a batch only once ``flush`` finds nothing
left in the producer. But librdkafka also removes a message from its queue when it gives up on it (after
``message.timeout.ms``, 5 minutes by default, or at once on an error it does not retry): without a delivery report
for it, the batch's offsets were committed over outputs that never existed.

So `Outputs` builds the producer with ``message.timeout.ms=0`` (retry until the broker answers: a broker stall is
a wait, which the stall metric shows, never a loss) and with itself as the default delivery report. A message that
fails anyway (an unknown topic, missing authorization, ...) is kept and produced again until the broker takes it,
and so is one that a full local queue refused; what is produced meanwhile waits behind them, so each partition
keeps the order in which its outputs were made. `undelivered` counts them, and the worker's ``flush`` waits for it
to be zero as it waits for the producer's queue. A message the broker can never take (too large) is not produced
again: it goes to ``on_rejected`` (the worker dead-letters its first bytes), not out of ``produce`` as an
exception in the middle of a batch.

Changelog writes pass their own delivery report (`fraudstream.stream.tables.ChangelogWriter`), which replaces
this one for them.

>>> rejected = []
>>> outputs = Outputs({"bootstrap.servers": "127.0.0.1:9", "message.max.bytes": 1000,
...                    "log_level": 0},  # no broker there: its connection errors would only be noise
...                   on_rejected=lambda output, err: rejected.append((output[0], err.code())))
>>> outputs.produce("fraud.scores", b"{}", b"card-1")  # queued: delivered once a broker answers
>>> outputs.produce("fraud.scores", b"x" * 5000, b"card-2")  # no broker would take it: rejected at once
>>> rejected == [("fraud.scores", KafkaError.MSG_SIZE_TOO_LARGE)], outputs.undelivered
(True, 0)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

__all__ = ["Outputs", "Output"]

log = logging.getLogger(__name__)

# (topic, value, key, partition or None)
Output = tuple[str, bytes | None, bytes | None, int | None]

# Errors that producing the same bytes again cannot mend.
NEVER_ACCEPTED = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.RECORD_LIST_TOO_LARGE})


class Outputs:
    """A confluent-kafka producer whose failed messages are produced again instead of dropped.

    ``config``: the producer's configuration (``Settings.producer_config``); ``message.timeout.ms`` defaults to 0.
    ``on_failed(output, error)``: each failure report, before the message is kept to be produced again.
    ``on_rejected(output, error)``: a message the broker cannot take, never produced again.
    ``retry_every_s``: failed messages are produced again at most this often, so a lasting error does not spin.
    """

    def __init__(
        self,
        config: dict[str, Any],
        on_failed: Callable[[Output, KafkaError], None] | None = None,
        on_rejected: Callable[[Output, KafkaError], None] | None = None,
        retry_every_s: float = 1.0,
    ) -> None:
        self.config = {"message.timeout.ms": 0, **config, "on_delivery": self._delivered}
        self.on_failed = on_failed
        self.on_rejected = on_rejected
        self.retry_every_s = retry_every_s
        self.producer = Producer(self.config)
        # Both in the order produced, per partition: every failed one was queued before anything now waiting.
        self.failed: list[Output] = []  # reported failed by the producer
        self.waiting: list[Output] = []  # produced since, or refused by a full queue: never queued
        self._retried_at = 0.0

    @property
    def undelivered(self) -> int:
        """Messages that wait to be produced (again), not counting those in the producer's queue."""
        return len(self.failed) + len(self.waiting)

    def produce(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None) -> None:
        # Behind any failed or waiting ones, so a partition's outputs keep their order; the tuple only then.
        if self.failed or self.waiting or not self._produce(topic, value, key, partition):
            self.waiting.append((topic, value, key, partition))

    def poll(self) -> None:
        """Serve the producer's delivery reports now, without waiting."""
        self.producer.poll(0)

    def retry(self, now: float | None = None) -> int:
        """Produce the failed and waiting messages, if ``retry_every_s`` has passed since the last try; how many."""
        now = time.monotonic() if now is None else now
        if not (self.failed or self.waiting) or now - self._retried_at < self.retry_every_s:
            return 0
        self._retried_at = now
        pending, self.failed, self.waiting = self.failed + self.waiting, [], []
        for i, output in enumerate(pending):
            if not self._produce(*output):
                self.waiting = pending[i:]  # the rest wait their turn, in order
                return i
        return len(pending)

    def _produce(self, topic: str, value: bytes | None, key: bytes | None, partition: int | None) -> bool:
        """Into the producer's queue; False if it was not taken and should be produced again."""
        try:
            if partition is None:
                self.producer.produce(topic, value, key)
            else:
                self.producer.produce(topic, value, key, partition)
        except BufferError:  # the local queue is full (a long stall)
            return False
        except KafkaException as exc:
            return not self._failed((topic, value, key, partition), exc.args[0])
        return True

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            return
        partition = msg.partition()
        output: Output = (msg.topic(), msg.value(), msg.key(), None if partition is None or partition < 0 else partition)
        if self._failed(output, err):
            self.failed.append(output)

    def _failed(self, output: Output, err: KafkaError) -> bool:
        """A failure, refused at once or reported later: True if it is to be produced again, False if rejected."""
        if err.code() in NEVER_ACCEPTED:
            self._reject(output, err)
            return False
        if self.on_failed is not None:
            self.on_failed(output, err)
        return True

    def _reject(self, output: Output, err: KafkaError) -> None:
        if self.on_rejected is not None:
            self.on_rejected(output, err)
        else:
            log.error("%s rejected a %d-byte output: %s", output[0], len(output[1] or b""), err)
