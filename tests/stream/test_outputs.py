"""Outputs the broker did not take are produced again, never dropped (fraudstream.stream.outputs).

A real producer against a real broker: first one that is not there yet, then the embedded broker started on
that port."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraudstream.broker import EmbeddedBroker, free_port
from fraudstream.processes import isolated_settings
from fraudstream.stream.outputs import Outputs


def deliver(outputs: Outputs, timeout: float) -> None:
    """What the worker's ``flush`` does: wait until nothing is queued and nothing waits to be produced again."""
    deadline = time.monotonic() + timeout
    while outputs.producer.flush(0) + outputs.undelivered:
        assert time.monotonic() < deadline, f"{len(outputs.producer)} queued, {outputs.undelivered} undelivered"
        outputs.retry()
        time.sleep(0.01)


def read_all(bootstrap: str, topic: str, partitions: int, n: int) -> dict[int, list[bytes]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-outputs", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: dict[int, list[bytes]] = {}
    deadline = time.monotonic() + 30
    try:
        while sum(map(len, got.values())) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.setdefault(msg.partition(), []).append(msg.value())
    finally:
        consumer.close()
    return got


def test_outputs_made_while_the_broker_is_away_all_arrive_in_order(tmp_path: Path) -> None:
    port = free_port()
    topic = isolated_settings(f"kafka://127.0.0.1:{port}", tmp_path / "state").topic_scores
    failures: list[tuple[str, int]] = []
    # A short message timeout makes librdkafka give up on them while the broker is away, as it would (after
    # 5 minutes, or on an error it does not retry) without `Outputs`' default of never.
    outputs = Outputs({"bootstrap.servers": f"127.0.0.1:{port}", "message.timeout.ms": 1000, "linger.ms": 2,
                       "max.in.flight.requests.per.connection": 1, "reconnect.backoff.max.ms": 200,
                       "partitioner": "murmur2_random"},
                      on_failed=lambda output, err: failures.append((output[0], err.code())), retry_every_s=0.2)
    sent = [(b"card-%d" % (i % 7), b"%d" % i) for i in range(200)]
    for key, value in sent[:100]:
        outputs.produce(topic, value, key)
    for partition in range(3):  # explicit partitions are kept when produced again
        outputs.produce(topic, b"mark-%d" % partition, None, partition)
    deadline = time.monotonic() + 20
    while not outputs.undelivered:  # librdkafka gives up on them: what used to be the loss
        assert time.monotonic() < deadline
        outputs.producer.poll(0.1)
    for key, value in sent[100:]:  # behind the failed ones, not before them
        outputs.produce(topic, value, key)

    with EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log") as broker:
        # The producer's metadata request may have created it already (the embedded broker creates topics on use).
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        try:
            admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(15)
        except KafkaException as exc:
            assert exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
        assert failures and {code for _, code in failures} == {KafkaError._MSG_TIMED_OUT}
        partitions = len(admin.list_topics(topic, timeout=15).topics[topic].partitions)
        assert partitions >= 3
        deliver(outputs, timeout=60)
        got = read_all(broker.bootstrap_servers, topic, partitions, len(sent) + 3)

    assert sum(map(len, got.values())) == len(sent) + 3, "every output, once"
    assert sorted(int(v) for vs in got.values() for v in vs if not v.startswith(b"mark")) == list(range(200))
    for partition, values in got.items():
        # As produced: a partition's share of the first 100, its mark, then its share of the rest.
        order = [-1 if v.startswith(b"mark") else int(v) for v in values]
        if partition < 3:
            expected = sorted(n for n in order if n >= 0 and n < 100) + [-1] + sorted(n for n in order if n >= 100)
            assert order == expected and values[order.index(-1)] == b"mark-%d" % partition
        else:
            assert order == sorted(order), f"partition {partition} out of order"
