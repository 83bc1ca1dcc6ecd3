"""The Kafka edge of the console: one thread reads its topics from the beginning and feeds the view.

Topics are read by assignment, with no consumer group (the console commits nothing, and a restart reads them again:
its view is rebuilt from the topics, which are the truth). Every message goes to
:meth:`PipelineView.apply <fraudstream.console.view.PipelineView.apply>` under the view's lock.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from fraudstream.config import Settings
from fraudstream.console.view import PipelineView

__all__ = ["TopicFeed"]

log = logging.getLogger(__name__)


class TopicFeed(threading.Thread):
    """Reads the scores, alerts, labels, reissues, rules and audit topics into ``view``; ``stop()`` ends it."""

    def __init__(self, settings: Settings, view: PipelineView, lock: threading.Lock) -> None:
        super().__init__(name="console-feed", daemon=True)
        self.settings = settings
        self.view = view
        self.lock = lock
        self.kinds = {settings.topic_scores: "scores", settings.topic_alerts: "alerts", settings.topic_labels: "labels",
                      settings.topic_card_reissues: "reissues", settings.topic_rules: "rules", settings.topic_audit: "audit"}
        self._stopping = threading.Event()
        self.assigned = threading.Event()
        self.error: str | None = None  # the latest trouble reading, shown on the pages

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        consumer = Consumer({**self.settings.kafka_client_config(), "group.id": f"fraudstream-console-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
                             "topic.metadata.refresh.interval.ms": 5000})
        try:
            self._assign(consumer)
            while not self._stopping.is_set():
                msgs = consumer.consume(2000, 0.2)
                if not msgs:
                    continue
                with self.lock:
                    for m in msgs:
                        err = m.error()
                        if err is not None:
                            if err.code() != KafkaError._PARTITION_EOF:
                                self.error = f"reading {m.topic()}: {err.str()}"
                            continue
                        self.view.apply(self.kinds.get(m.topic() or "", "unknown"), m.key(), m.value(), m.partition())
                self.error = None
        except Exception as exc:  # shown on every page: a console that silently shows stale data would mislead
            self.error = f"the console stopped reading the topics: {exc}"
            log.exception("console feed failed")
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> None:
        """Every partition of every topic, once they exist (the console may start before `topics create`)."""
        while not self._stopping.is_set():
            try:
                metadata = consumer.list_topics(timeout=5)
            except Exception as exc:
                self.error = f"cannot reach the brokers at {self.settings.bootstrap_servers}: {exc}"
                time.sleep(1)
                continue
            missing = [t for t in self.kinds if t not in metadata.topics or metadata.topics[t].error is not None]
            if missing:
                self.error = f"waiting for the topics {', '.join(missing)} (fraudstream topics create)"
                time.sleep(1)
                continue
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in self.kinds for p in metadata.topics[t].partitions])
            self.error = None
            self.assigned.set()
            return
