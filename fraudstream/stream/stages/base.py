"""What every stage shares: the messages it takes, the outputs it makes, and bad input dead-lettered, never fatal.

A stage is a plain class: a batch of messages in, outputs out (through a :class:`Sink`), its state in the core's
stores. It knows nothing of faust: the worker (``fraudstream.stream.app``) hands it the messages of a batch and
awaits the broker around it. Tests hand it messages they build, and a list as the sink.

>>> from prometheus_client import CollectorRegistry
>>> from fraudstream.config import Settings
>>> from fraudstream.metrics import Metrics
>>> class Outputs(list):
...     def produce(self, topic, value, key=None, partition=None): self.append((topic, value, key))
...     def poll(self): pass
>>> out, settings = Outputs(), Settings.load(env={})
>>> stage = Stage(settings, Metrics(CollectorRegistry()), out, DeadLetters(settings, Metrics(CollectorRegistry()), out))
>>> stage.each([Message("fraud.authorizations", 0, 7, b"c1", b"{")], lambda msg: 1 / 0)  # a bug: dead-lettered
>>> [(topic, stage.positions) for topic, _value, _key in out]
[('fraud.dead-letter', {('fraud.authorizations', 0): 7})]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from fraudstream.config import Settings
from fraudstream.contracts import DeadLetter, Rejection, encode
from fraudstream.logs import mask
from fraudstream.metrics import Metrics

__all__ = ["DeadLetters", "Message", "Sink", "Stage", "arrival_ms"]

log = logging.getLogger("fraudstream.worker")


class Sink(Protocol):
    """Where a stage's outputs go: ``fraudstream.stream.outputs.Outputs`` in the worker, a list in tests."""

    def produce(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None) -> None: ...

    def poll(self) -> None: ...


@dataclass(slots=True)
class Message:
    """A record as a stage reads it: faust's messages have these attributes too (and more)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None
    refcount: int = 1  # who holds it (`fraudstream.stream.delivery.hold`), as a fetched record counts them

    def incref(self) -> None:
        self.refcount += 1

    @classmethod
    def of(cls, m: Any) -> Message:
        """A confluent-kafka message (what the followers read) as a stage's, for its dead letter."""
        return cls(m.topic() or "", m.partition() or 0, m.offset() or 0, m.key(), m.value())


def arrival_ms(msg: Any) -> int:
    """When ``msg`` reached its topic (ms): its record timestamp, the producer's send time or the broker's append
    time as the topic keeps them; now, for a record without one."""
    ts = msg.timestamp
    return int(ts * 1000.0) if ts and ts > 0 else int(time.time() * 1000.0)


class DeadLetters:
    """Bad input goes to the dead-letter topic with its reason, and is counted: never dropped, never fatal."""

    def __init__(self, settings: Settings, metrics: Metrics, outputs: Sink) -> None:
        self.settings = settings
        self.metrics = metrics
        self.outputs = outputs

    def send(self, rejection: Rejection, msg: Any) -> None:
        letter = DeadLetter.of(rejection, msg.value, msg.key, msg.topic, msg.partition, msg.offset)
        self.outputs.produce(self.settings.topic_dead_letter, encode(letter))
        self.metrics.dead_letters.labels(msg.topic, rejection.reason).inc()
        log.warning("dead-lettered %s[%d]@%d: %s (%s)", msg.topic, msg.partition, msg.offset, rejection.reason,
                    mask(rejection.detail))


class Stage:
    """A stage's settings, metrics, sink and dead letters, and the offset it has reached per input partition."""

    def __init__(self, settings: Settings, metrics: Metrics, outputs: Sink, dead_letters: DeadLetters,
                 positions: dict[tuple[str, int], int] | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.outputs = outputs
        self.dead_letters = dead_letters
        #: (topic, partition) -> offset of the last message handled: the worker's lag gauges read it.
        self.positions: dict[tuple[str, int], int] = {} if positions is None else positions

    def each(self, messages: Iterable[Any], handle: Callable[[Any], None]) -> None:
        """Run ``handle`` on every message; one that raises is dead-lettered, never the end of the agent."""
        positions = self.positions
        for msg in messages:
            positions[(msg.topic, msg.partition)] = msg.offset
            try:
                handle(msg)
            except Exception as exc:  # a bug or an input no validator foresaw: keep going, keep the evidence
                self._failed(msg, exc)

    def guarded(self, msg: Any, handle: Callable[[], None]) -> None:
        """``handle()`` on behalf of ``msg``: if it raises, ``msg`` is dead-lettered."""
        try:
            handle()
        except Exception as exc:  # a bug or an input no validator foresaw: keep going, keep the evidence
            self._failed(msg, exc)

    def _failed(self, msg: Any, exc: Exception) -> None:
        log.exception("could not process %s[%d]@%d", msg.topic, msg.partition, msg.offset)
        self.dead_letters.send(Rejection("processing_error", f"{type(exc).__name__}: {exc}"[:300]), msg)
