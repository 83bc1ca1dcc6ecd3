"""A worker evicts cards and merchants idle for longer than their longest window, by event time."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from fraudstream.contracts import encode
from fraudstream.core.features.card import DAY_MS

from ..conftest import produce, read_distinct, wait_for

pytestmark = pytest.mark.broker


def changelog(settings, table: str) -> dict[bytes, bytes | None]:
    """The newest value of each key in a table's changelog (None: a tombstone)."""
    topic = f"{settings.app_id}-{table}-changelog"
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: dict[bytes, bytes | None] = {}
        quiet = time.monotonic()
        while time.monotonic() - quiet < 2.0:
            for m in c.consume(1000, 0.3):
                if m.error() is None:
                    out[m.key()] = m.value()
                    quiet = time.monotonic()
        return out
    finally:
        c.close()


def auth(tx_id: str, card_id: str, merchant_id: str, ts: int) -> tuple[bytes, bytes]:
    return card_id.encode(), encode({"tx_id": tx_id, "card_id": card_id, "merchant_id": merchant_id, "amount": 25.0,
                                     "ts": ts, "channel": "pos"})


def test_a_card_idle_for_a_month_leaves_the_tables_by_event_time(topics, start_worker):
    s = topics
    worker = start_worker(s)
    start = int(time.time() * 1000) - 60 * DAY_MS
    produce(s, s.topic_authorizations, [auth("t-old", "card-idle", "term-idle", start),
                                        auth("t-busy-1", "card-busy", "term-busy", start + DAY_MS)])
    read_distinct(s, s.topic_scores, 2, timeout=60)
    assert worker.metric("fraudstream_state_evicted_total") == 0  # a day later: nothing is idle yet

    # 40 days of event time later (a replay: seconds of wall clock), another card's authorization.
    produce(s, s.topic_authorizations, [auth("t-busy-2", "card-busy", "term-busy", start + 40 * DAY_MS)])
    read_distinct(s, s.topic_scores, 3, timeout=60)
    # The card, from its table; its merchant, from the replicas of every card partition's merchant states.
    wait_for(lambda: worker.metric("fraudstream_state_evicted_total") >= 2, timeout=30)

    cards = changelog(s, "cards")
    assert cards[b"card-idle"] is None and cards[b"card-busy"] is not None
    assert changelog(s, "card-standings").get(b"card-idle") is None  # deleted, if it was ever written
    assert worker.alive()
