"""The simulator's outputs: JSON-lines files, and Kafka topics on the real embedded broker.

Kafka orders messages only within a partition, so the Kafka tests check per-card order (the key fixes the partition),
``ts`` fields, and broker timestamps. Where the exact send order across the two streams matters, the test points
authorizations and labels at one single-partition topic, in which the broker keeps the producer's order.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition

from fraudstream.broker import EmbeddedBroker
from fraudstream.config import Settings
from fraudstream.contracts import Rejection, decode, decode_authorization, decode_card_reissue, decode_label, encode
from fraudstream.kafka.topics import create_topics
from fraudstream.simulate import HandbookSimulator, LabelDelays, produce, time_offset_ms, write_jsonl
from fraudstream.simulate.reissues import REISSUE_AFTER_DAYS

from ..conftest import isolated_settings, read_topic
from ..conftest import produce as produce_raw

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def _read_jsonl(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_write_jsonl_writes_contract_events_and_sorted_labels(small_sim: HandbookSimulator, tmp_path: Path) -> None:
    events_path, labels_path = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    n_events, n_labels = write_jsonl(events_path, labels_path, small_sim, LabelDelays(seed=1))
    events, labels = _read_jsonl(events_path), _read_jsonl(labels_path)
    assert (len(events), len(labels)) == (n_events, n_labels) == (len(small_sim.transactions()), n_labels)
    assert n_labels > 0
    auths = small_sim.authorizations()
    for raw, auth in zip(events, auths, strict=True):
        assert raw == encode(auth.as_event())
        assert not isinstance(decode_authorization(raw, auth.card_id.encode()), Rejection)
    decoded_labels = [decode(raw) for raw in labels]
    assert decoded_labels == LabelDelays(seed=1).labels(small_sim)
    for label, raw in zip(decoded_labels, labels, strict=True):
        assert not isinstance(decode_label(raw, label["card_id"].encode()), Rejection)


def test_time_offset_moves_the_first_event_or_day_zero(small_sim: HandbookSimulator) -> None:
    first = int(small_sim.transactions().ts[0])
    assert time_offset_ms(small_sim) == 0
    assert first + time_offset_ms(small_sim, shift_to_now=True, now_ms=1_700_000_000_000) == 1_700_000_000_000
    assert time_offset_ms(small_sim, start="2018-04-02") == DAY_MS  # the small simulator starts 2018-04-01
    with pytest.raises(ValueError):
        time_offset_ms(small_sim, start="2020-01-01", shift_to_now=True)


# --- on the embedded broker ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One message as the broker returns it."""

    partition: int
    offset: int
    created_ms: int  # the producer's CreateTime: when produce() was called
    key: bytes | None
    raw: bytes | None
    value: Any


def _records(settings: Settings, topic: str, expect: int, timeout: float = 30.0, settle: float = 0.3) -> list[Record]:
    """Every message of ``topic`` in (partition, offset) order: waits for ``expect``, then ``settle`` s for surplus.

    No high watermarks: Tansu answers ListOffsets(latest) with less than the partition holds.
    """
    consumer = Consumer(
        {"bootstrap.servers": settings.bootstrap_servers, "group.id": f"check-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])  # assign: no group join to wait for
    messages: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(messages) < expect and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(1000, 0.2) if m.error() is None]
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            messages += [m for m in consumer.consume(1000, 0.1) if m.error() is None]
    finally:
        consumer.close()
    records = [
        Record(m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(), None if m.value() is None else decode(m.value()))
        for m in messages
    ]
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def _by_key(records: list[Record]) -> dict[bytes | None, list[Record]]:
    """Records grouped by key, each group in partition order, which is the order its key was produced in."""
    groups: dict[bytes | None, list[Record]] = defaultdict(list)
    for r in records:
        groups[r.key].append(r)
    assert all(len({r.partition for r in group}) == 1 for group in groups.values()), "a key spans partitions"
    return groups


def _reissues_after(labels: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(card, ts) of the reissues that ``labels`` call for: a fraud confirmed while the card's reissue is not pending
    schedules one, REISSUE_AFTER_DAYS later."""
    after = round(REISSUE_AFTER_DAYS * DAY_MS)
    out: list[tuple[str, int]] = []
    pending: dict[str, int] = {}
    for label in sorted(labels, key=lambda x: x["ts"]):
        if label["is_fraud"] and label["ts"] >= pending.get(label["card_id"], 0):
            pending[label["card_id"]] = label["ts"] + after
            out.append((label["card_id"], label["ts"] + after))
    return sorted(out)


def _is_label(value: dict[str, Any]) -> bool:
    return "source" in value  # authorizations carry no source


@pytest.fixture
def one_log(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Authorizations and labels both into one single-partition topic, which keeps the producer's send order."""
    settings = isolated_settings(broker, tmp_path, partitions=1)
    create_topics(settings)
    return settings.with_overrides(topic_labels=settings.topic_authorizations)


@pytest.mark.broker
def test_produce_delivers_every_record_keyed_by_card_in_card_order(topics: Settings, small_sim: HandbookSimulator) -> None:
    delays = LabelDelays(seed=2)
    counts = produce(topics, small_sim, delays)
    assert counts.delivery_errors == counts.undelivered == 0
    auths = small_sim.authorizations()
    expected_labels = delays.labels(small_sim)
    events = _records(topics, topics.topic_authorizations, counts.events)
    labels = _records(topics, topics.topic_labels, counts.labels)
    assert counts.events == len(events) == len(auths)
    assert counts.labels == len(labels) == len(expected_labels)
    assert all(r.key == r.value["card_id"].encode() for r in events + labels)
    assert sorted((r.value for r in events), key=lambda e: e["tx_id"]) == [a.as_event() for a in auths]
    assert sorted(r.raw for r in labels) == sorted(encode(x) for x in expected_labels)
    # Per card, the partition holds the events in the simulator's order and the labels by ts.
    events_of: dict[str, list[str]] = defaultdict(list)
    for a in auths:
        events_of[a.card_id].append(a.tx_id)
    for key, group in _by_key(events).items():
        assert [r.value["tx_id"] for r in group] == events_of[key.decode()]
    labels_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for x in expected_labels:
        labels_of[x["card_id"]].append(x)
    for key, group in _by_key(labels).items():
        assert [r.value for r in group] == labels_of[key.decode()]
    # Each card whose fraud is confirmed is reissued, in event time among the authorizations, or after them.
    reissues = _records(topics, topics.topic_card_reissues, counts.reissues)
    assert sorted((r.value["card_id"], r.value["ts"]) for r in reissues) == _reissues_after(expected_labels)
    assert all(r.key == r.value["card_id"].encode() for r in reissues) and 0 < len(reissues) < len(expected_labels)


@pytest.mark.broker
def test_produce_interleaves_labels_after_the_events_they_follow(one_log: Settings, small_sim: HandbookSimulator) -> None:
    delays = LabelDelays(seed=2)
    counts = produce(one_log, small_sim, delays)
    log = _records(one_log, one_log.topic_authorizations, counts.events + counts.labels)
    assert {r.partition for r in log} == {0}
    events = [r.value for r in log if not _is_label(r.value)]
    labels = [r.value for r in log if _is_label(r.value)]
    assert counts.events == len(events) == len(small_sim.transactions())
    assert counts.labels == len(labels) == len(delays.labels(small_sim))
    assert labels == delays.labels(small_sim)
    assert [e["tx_id"] for e in events] == [a.tx_id for a in small_sim.authorizations()]
    assert all(r.key == r.value["card_id"].encode() for r in log)
    # A label goes out right before the first event later than it: prev event ts <= label ts < next event ts.
    next_ts: list[int | None] = [None] * len(log)
    upcoming: int | None = None
    for i in range(len(log) - 1, -1, -1):
        next_ts[i] = upcoming
        if not _is_label(log[i].value):
            upcoming = log[i].value["ts"]
    previous: int | None = None
    interleaved = 0
    for i, r in enumerate(log):
        if not _is_label(r.value):
            previous = r.value["ts"]
            continue
        ts = r.value["ts"]
        assert previous is None or previous <= ts
        assert next_ts[i] is None or ts < next_ts[i]
        interleaved += next_ts[i] is not None
    assert 0 < interleaved < len(labels)  # some labels fall inside the run, the later chargebacks after it


@pytest.mark.broker
def test_produce_labels_never_precede_their_subject(one_log: Settings, small_sim: HandbookSimulator) -> None:
    delays = LabelDelays(seed=2, chargeback_delay_days=(0.0, 1.0), report_delay_hours=(0.0, 1.0))
    counts = produce(one_log, small_sim, delays)
    log = _records(one_log, one_log.topic_authorizations, counts.events + counts.labels)
    assert len(log) == counts.events + counts.labels and counts.labels > 0
    seen_tx: set[str] = set()
    last_ts = 0
    for r in log:
        record = r.value
        if not _is_label(record):
            seen_tx.add(record["tx_id"])
            last_ts = record["ts"]
        elif "tx_id" in record:
            assert record["tx_id"] in seen_tx
        else:
            assert record["since"] <= last_ts


@pytest.mark.broker
def test_produce_max_events_and_shift(topics: Settings, small_sim: HandbookSimulator) -> None:
    delays = LabelDelays(seed=2)
    counts = produce(topics, small_sim, delays, max_events=300, start="2024-01-01")
    events = _records(topics, topics.topic_authorizations, 300)
    labels = [r.value for r in _records(topics, topics.topic_labels, counts.labels)]
    assert counts.events == len(events) == 300
    assert counts.labels == len(labels)
    assert counts.offset_ms == time_offset_ms(small_sim, start="2024-01-01")
    offset = counts.offset_ms
    original = small_sim.authorizations()[:300]
    assert {r.value["tx_id"]: r.value["ts"] for r in events} == {a.tx_id: a.ts + offset for a in original}
    for group in _by_key(events).values():
        ts = [r.value["ts"] for r in group]
        assert ts == sorted(ts)
    last_ts = original[-1].ts + offset
    produced_ids = {a.tx_id for a in original}
    assert all(x["tx_id"] in produced_ids for x in labels if "tx_id" in x)
    assert all(x["since"] <= last_ts for x in labels if "since" in x)
    # Every label is one of the simulator's, moved by the same offset.
    unshifted = [dict(x, ts=x["ts"] - offset, **({"since": x["since"] - offset} if "since" in x else {})) for x in labels]
    assert {encode(x) for x in unshifted} <= {encode(x) for x in delays.labels(small_sim)}


@pytest.mark.broker
def test_produce_shift_to_now_lands_the_first_event_now(topics: Settings, small_sim: HandbookSimulator) -> None:
    before = int(time.time() * 1000)
    counts = produce(topics, small_sim, LabelDelays(), max_events=5, shift_to_now=True, drain_labels=False)
    after = int(time.time() * 1000)
    events = _records(topics, topics.topic_authorizations, 5)
    assert counts.events == len(events) == 5
    first = next(r for r in events if r.value["tx_id"] == small_sim.authorizations()[0].tx_id)
    assert before <= first.value["ts"] <= first.created_ms <= after
    assert not isinstance(decode_authorization(first.raw, first.key), Rejection)
    assert {
        r.value["ts"] - a.ts for r, a in zip(sorted(events, key=lambda r: r.value["tx_id"]), small_sim.authorizations()[:5], strict=True)
    } == {counts.offset_ms}


@pytest.mark.broker
def test_produce_paces_by_rate_factor(topics: Settings) -> None:
    sim = HandbookSimulator(n_customers=30, n_terminals=100, n_days=1, seed=3)
    txs = sim.transactions()
    ts0 = int(txs.ts[0])
    span_s = (int(txs.ts[-1]) - ts0) / 1000
    rate = span_s / 0.5  # the whole day in half a second
    started = time.monotonic()
    counts = produce(topics, sim, LabelDelays(), rate_factor=rate, drain_labels=False)
    elapsed = time.monotonic() - started
    assert counts.events == len(txs)
    assert 0.4 < elapsed < 3.0
    # The broker's CreateTimes show the pace: no event sent ahead of its time, the day spread over half a second.
    events = _records(topics, topics.topic_authorizations, counts.events)
    assert len(events) == len(txs)
    first = next(r for r in events if r.value["tx_id"] == sim.authorizations()[0].tx_id)
    for r in events:
        due_ms = (r.value["ts"] - ts0) / rate
        assert r.created_ms - first.created_ms >= due_ms - 10, (r.value["tx_id"], r.created_ms - first.created_ms, due_ms)
    spread_ms = max(r.created_ms for r in events) - first.created_ms
    assert span_s * 1000 / rate - 10 <= spread_ms <= elapsed * 1000 + 10


@pytest.mark.broker
def test_produce_stops_when_asked(topics: Settings, small_sim: HandbookSimulator) -> None:
    stop = threading.Event()
    stop.set()
    counts = produce(topics, small_sim, LabelDelays(), stop=stop)
    assert counts.events == 0 and counts.labels == 0
    # Mid-run: a run paced to last 5 s, stopped after half a second, ends early and drains no labels.
    txs = small_sim.transactions()
    rate = (int(txs.ts[-1]) - int(txs.ts[0])) / 1000 / 5.0
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    started = time.monotonic()
    timer.start()
    try:
        counts = produce(topics, small_sim, LabelDelays(seed=2), rate_factor=rate, stop=stop)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - started
    assert stop.is_set() and elapsed < 3.0
    assert 0 < counts.events < len(txs)
    assert counts.delivery_errors == counts.undelivered == 0
    events = _records(topics, topics.topic_authorizations, counts.events)  # the stopped-before-starting run sent none
    labels = _records(topics, topics.topic_labels, counts.labels)
    assert len(events) == counts.events and len(labels) == counts.labels
    last_ts = max(r.value["ts"] for r in events)
    assert all(r.value["ts"] < last_ts for r in labels)


@pytest.mark.broker
def test_produce_reissues_the_cards_the_analysts_confirm(topics: Settings, small_sim: HandbookSimulator) -> None:
    """`make run`'s analysts confirm fraud, which blocks the card until it is reissued: the simulated issuer replaces
    it REISSUE_AFTER_DAYS after each confirmation it has not yet answered, in event time, as the backtest does.
    (Only the labels known in advance were followed by reissues: in a 300 s `make run` 824 of 12,570
    authorizations were blocks.)"""
    fraud = small_sim.transactions().fraud_lookup()
    alerts: list[dict[str, Any]] = [{"tx_id": a.tx_id, "card_id": a.card_id, "ts": a.ts, "score": 0.9}
                                    for a in small_sim.authorizations() if fraud[a.tx_id]]
    produce_raw(topics, topics.topic_alerts, [(a["card_id"].encode(), encode(a)) for a in alerts])
    # No customer reports, no chargebacks: every label, and so every reissue, comes from the analysts.
    counts = produce(topics, small_sim, LabelDelays(report_probability=0.0, chargeback_probability=0.0), investigator_k=100,
                     investigator_linger_s=1.0)
    analyst = sorted((v for _, v in read_topic(topics, topics.topic_labels, until=counts.dispositions, timeout=30)),
                     key=lambda v: v["ts"])
    assert counts.labels == 0 and counts.dispositions == len(analyst) > 0
    assert all(v["is_fraud"] and v["source"] == "analyst" for v in analyst)
    records = read_topic(topics, topics.topic_card_reissues, until=counts.reissues, timeout=30)
    assert counts.delivery_errors == counts.undelivered == 0
    assert all(key == v["card_id"].encode() and not isinstance(decode_card_reissue(encode(v), key), Rejection)
               for key, v in records)
    reissued = sorted((v["card_id"], v["ts"]) for _, v in records)
    assert counts.reissues == len(reissued) > 0
    assert reissued == _reissues_after(analyst)
    assert {card for card, _ in reissued} == {v["card_id"] for v in analyst}


@pytest.mark.broker
def test_produce_answers_alerts_with_the_investigator(topics: Settings, small_sim: HandbookSimulator) -> None:
    txs = small_sim.transactions()
    alerts: list[dict[str, Any]] = [
        {"tx_id": a.tx_id, "card_id": a.card_id, "ts": a.ts, "score": 0.9} for a in small_sim.authorizations()[:400]
    ]
    # Read but unanswerable: a transaction the simulator never made, a ts that is not epoch ms.
    unanswerable: list[dict[str, Any]] = [
        {"tx_id": "tx-9999999999", "card_id": "card-000001", "ts": alerts[0]["ts"], "score": 0.9},
        {"tx_id": alerts[1]["tx_id"], "card_id": alerts[1]["card_id"], "ts": "yesterday", "score": 0.9},
    ]
    unreadable: list[tuple[bytes | None, bytes | None]] = [(b"card-x", b"not json"), (b"card-x", b"[1, 2]"), (b"card-x", None)]
    produce_raw(topics, topics.topic_alerts, [(a["card_id"].encode(), encode(a)) for a in alerts + unanswerable] + unreadable)
    counts = produce(
        topics,
        small_sim,
        LabelDelays(),
        investigator_k=3,
        max_events=50,
        drain_labels=False,
        investigator_linger_s=1.5,  # counted from the group join (~3 s here), and the alerts are there already
    )
    # Produced before the investigator's consumer existed, so read from the earliest offset; the unreadable skipped.
    assert counts.alerts_seen == len(alerts) + len(unanswerable)
    assert counts.delivery_errors == counts.undelivered == 0
    labels = read_topic(topics, topics.topic_labels, until=counts.labels + counts.dispositions, timeout=30)
    assert len(labels) == counts.labels + counts.dispositions
    assert all(key == value["card_id"].encode() for key, value in labels)
    analyst = [value for _, value in labels if value["source"] == "analyst"]
    assert counts.dispositions == len(analyst) > 0
    fraud = txs.fraud_lookup()
    alert_of = {a["tx_id"]: a for a in alerts}
    for label in analyst:
        assert label["is_fraud"] is fraud[label["tx_id"]]
        assert not isinstance(decode_label(encode(label), label["card_id"].encode()), Rejection)
        assert HOUR_MS <= label["ts"] - alert_of[label["tx_id"]]["ts"] <= 6 * HOUR_MS
    per_day = Counter(alert_of[x["tx_id"]]["ts"] // DAY_MS for x in analyst)
    assert max(per_day.values()) == 3
    assert len({(alert_of[x["tx_id"]]["ts"] // DAY_MS, x["card_id"]) for x in analyst}) == len(analyst)
    # Its consumer group is its own: the worker's group (app_id) has committed nothing on the alerts topic.
    consumer = Consumer({"bootstrap.servers": topics.bootstrap_servers, "group.id": topics.app_id, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topics.topic_alerts, p) for p in range(topics.partitions)], timeout=10)
    finally:
        consumer.close()
    assert [tp.offset for tp in committed] == [OFFSET_INVALID] * topics.partitions
