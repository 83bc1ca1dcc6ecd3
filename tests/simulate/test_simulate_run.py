from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import confluent_kafka
import pytest

from fraudstream.config import Settings
from fraudstream.contracts import Rejection, decode, decode_authorization, decode_label, encode
from fraudstream.simulate import HandbookSimulator, LabelDelays, produce, time_offset_ms, write_jsonl

SETTINGS = Settings(broker="kafka://broker.invalid:9092")
DAY_MS = 86_400_000


class FakeProducer:
    """Records what would have been produced; one class-level log shared by every instance."""

    log: ClassVar[list[tuple[str, bytes, bytes]]] = []
    configs: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        FakeProducer.configs.append(conf)
        self.lock = threading.Lock()

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        with self.lock:
            FakeProducer.log.append((topic, key, value))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


class FakeMessage:
    def __init__(self, value: bytes) -> None:
        self._value = value

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value


class FakeConsumer:
    """Hands out the alerts queued in ``pending``, then nothing."""

    pending: ClassVar[list[bytes]] = []
    configs: ClassVar[list[dict[str, Any]]] = []
    subscribed: ClassVar[list[list[str]]] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        FakeConsumer.configs.append(conf)

    def subscribe(self, topics: list[str], on_assign: Any = None) -> None:
        FakeConsumer.subscribed.append(topics)
        if on_assign is not None:
            on_assign(self, [])

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        if FakeConsumer.pending:
            batch, FakeConsumer.pending = FakeConsumer.pending[:num_messages], FakeConsumer.pending[num_messages:]
            return [FakeMessage(v) for v in batch]
        time.sleep(min(timeout, 0.01))
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    FakeProducer.log, FakeProducer.configs = [], []
    FakeConsumer.pending, FakeConsumer.configs, FakeConsumer.subscribed = [], [], []
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    return FakeProducer


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


def test_produce_interleaves_labels_after_the_events_they_follow(
    small_sim: HandbookSimulator, fake_kafka: type[FakeProducer]
) -> None:
    delays = LabelDelays(seed=2)
    counts = produce(SETTINGS, small_sim, delays)
    log = fake_kafka.log
    events = [decode(v) for topic, _, v in log if topic == SETTINGS.topic_authorizations]
    labels = [decode(v) for topic, _, v in log if topic == SETTINGS.topic_labels]
    assert counts.events == len(events) == len(small_sim.transactions())
    assert counts.labels == len(labels) == len(delays.labels(small_sim))
    assert [e["tx_id"] for e in events] == [a.tx_id for a in small_sim.authorizations()]
    assert all(key == decode(value)["card_id"].encode() for _, key, value in log)
    # A label goes out right before the first event later than it: prev event ts <= label ts < next event ts.
    event_ts = [decode(v)["ts"] if t == SETTINGS.topic_authorizations else None for t, _, v in log]
    for i, (topic, _, value) in enumerate(log):
        if topic != SETTINGS.topic_labels:
            continue
        ts = decode(value)["ts"]
        before = [x for x in event_ts[:i] if x is not None]
        after = [x for x in event_ts[i + 1 :] if x is not None]
        assert not before or before[-1] <= ts
        assert not after or ts < after[0]
    conf = fake_kafka.configs[0]
    assert conf["bootstrap.servers"] == "broker.invalid:9092" and conf["linger.ms"] == 5


def test_produce_labels_never_precede_their_subject(
    small_sim: HandbookSimulator, fake_kafka: type[FakeProducer]
) -> None:
    produce(SETTINGS, small_sim, LabelDelays(seed=2, chargeback_delay_days=(0.0, 1.0), report_delay_hours=(0.0, 1.0)))
    seen_tx: set[str] = set()
    last_ts = 0
    for topic, _, value in fake_kafka.log:
        record = decode(value)
        if topic == SETTINGS.topic_authorizations:
            seen_tx.add(record["tx_id"])
            last_ts = record["ts"]
        elif "tx_id" in record:
            assert record["tx_id"] in seen_tx
        else:
            assert record["since"] <= last_ts


def test_produce_max_events_and_shift(small_sim: HandbookSimulator, fake_kafka: type[FakeProducer]) -> None:
    counts = produce(SETTINGS, small_sim, LabelDelays(seed=2), max_events=300, start="2024-01-01")
    events = [decode(v) for t, _, v in fake_kafka.log if t == SETTINGS.topic_authorizations]
    labels = [decode(v) for t, _, v in fake_kafka.log if t == SETTINGS.topic_labels]
    assert counts.events == len(events) == 300
    assert counts.offset_ms == time_offset_ms(small_sim, start="2024-01-01")
    original = small_sim.authorizations()[:300]
    assert [e["ts"] for e in events] == [a.ts + counts.offset_ms for a in original]
    produced_ids = {a.tx_id for a in original}
    assert all(x["tx_id"] in produced_ids for x in labels if "tx_id" in x)
    assert all(x["since"] <= events[-1]["ts"] for x in labels if "since" in x)


def test_produce_shift_to_now_lands_the_first_event_now(
    small_sim: HandbookSimulator, fake_kafka: type[FakeProducer]
) -> None:
    before = int(time.time() * 1000)
    produce(SETTINGS, small_sim, LabelDelays(), max_events=5, shift_to_now=True, drain_labels=False)
    first = decode(fake_kafka.log[0][2])
    assert before <= first["ts"] <= int(time.time() * 1000)
    assert not isinstance(decode_authorization(fake_kafka.log[0][2], fake_kafka.log[0][1]), Rejection)


def test_produce_paces_by_rate_factor(fake_kafka: type[FakeProducer]) -> None:
    sim = HandbookSimulator(n_customers=30, n_terminals=100, n_days=1, seed=3)
    txs = sim.transactions()
    span_s = (int(txs.ts[-1]) - int(txs.ts[0])) / 1000
    rate = span_s / 0.5  # the whole day in half a second
    started = time.monotonic()
    counts = produce(SETTINGS, sim, LabelDelays(), rate_factor=rate, drain_labels=False)
    elapsed = time.monotonic() - started
    assert counts.events == len(txs)
    assert 0.4 < elapsed < 3.0


def test_produce_stops_when_asked(small_sim: HandbookSimulator, fake_kafka: type[FakeProducer]) -> None:
    stop = threading.Event()
    stop.set()
    counts = produce(SETTINGS, small_sim, LabelDelays(), stop=stop)
    assert counts.events == 0 and counts.labels == 0


def test_produce_answers_alerts_with_the_investigator(
    small_sim: HandbookSimulator, fake_kafka: type[FakeProducer]
) -> None:
    txs = small_sim.transactions()
    alerts: list[dict[str, Any]] = [
        {"tx_id": a.tx_id, "card_id": a.card_id, "ts": a.ts, "score": 0.9} for a in small_sim.authorizations()[:400]
    ]
    FakeConsumer.pending = [encode(a) for a in alerts] + [b"not json", b"[1, 2]"]
    counts = produce(
        SETTINGS,
        small_sim,
        LabelDelays(),
        investigator_k=3,
        max_events=50,
        drain_labels=False,
        investigator_linger_s=0.3,
    )
    assert FakeConsumer.subscribed == [[SETTINGS.topic_alerts]]
    consumer_conf = FakeConsumer.configs[0]
    assert consumer_conf["auto.offset.reset"] == "earliest" and consumer_conf["session.timeout.ms"] == 6000
    assert consumer_conf["group.id"] != SETTINGS.app_id
    analyst = [decode(v) for t, _, v in fake_kafka.log if t == SETTINGS.topic_labels and b'"analyst"' in v]
    assert counts.alerts_seen == len(alerts)  # the bad JSON and the JSON array are skipped
    assert counts.dispositions == len(analyst) > 0
    fraud = txs.fraud_lookup()
    alert_day = {a["tx_id"]: a["ts"] // DAY_MS for a in alerts}
    for label in analyst:
        assert label["is_fraud"] is fraud[label["tx_id"]]
    per_day = Counter(alert_day[label["tx_id"]] for label in analyst)
    assert max(per_day.values()) == 3
    assert len({(alert_day[x["tx_id"]], x["card_id"]) for x in analyst}) == len(analyst)


def test_produce_against_the_embedded_broker() -> None:
    """End to end on Tansu, when the machine has it: everything produced is read back, keyed by card."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    broker_module = pytest.importorskip("fraudstream.broker")
    try:
        broker_module.tansu_binary()
    except broker_module.BrokerError as exc:
        pytest.skip(str(exc))
    sim = HandbookSimulator(n_customers=60, n_terminals=200, n_days=10, seed=8)
    with broker_module.EmbeddedBroker() as broker:
        settings = Settings(broker=broker.url)
        conf: dict[str, Any] = dict(settings.kafka_client_config())
        topics = (settings.topic_authorizations, settings.topic_labels, settings.topic_alerts)
        admin = AdminClient(conf)  # held: a collected client cancels its futures
        for future in admin.create_topics([NewTopic(t, 3, 1) for t in topics]).values():
            future.result(10)
        alerts: list[dict[str, Any]] = [
            {"tx_id": a.tx_id, "card_id": a.card_id, "ts": a.ts} for a in sim.authorizations()[:300]
        ]
        producer = Producer(conf)
        for alert in alerts:
            producer.produce(settings.topic_alerts, encode(alert), alert["card_id"].encode())
        assert producer.flush(10) == 0
        counts = produce(settings, sim, LabelDelays(), investigator_k=2, investigator_linger_s=1.0)
        assert counts.delivery_errors == counts.undelivered == 0
        assert counts.alerts_seen == len(alerts) and counts.dispositions > 0

        read: dict[str, list[tuple[bytes | None, dict[str, Any]]]] = {t: [] for t in topics[:2]}
        for topic, records in read.items():
            consumer = Consumer({**conf, "group.id": "simulate-test-check", "enable.auto.commit": False})
            consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
            idle = time.monotonic()
            while time.monotonic() - idle < 2:
                for msg in consumer.consume(1000, 0.2):
                    value = msg.value()
                    if msg.error() is None and value is not None:
                        records.append((msg.key(), decode(value)))
                        idle = time.monotonic()
            consumer.close()
    events, labels = read[settings.topic_authorizations], read[settings.topic_labels]
    assert sorted(e["tx_id"] for _, e in events) == [a.tx_id for a in sim.authorizations()]
    assert len(labels) == counts.labels + counts.dispositions
    assert all(key == record["card_id"].encode() for key, record in events + labels)
