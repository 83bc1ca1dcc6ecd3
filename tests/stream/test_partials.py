"""The merchant partials' reader against the embedded broker: every partition's records into the replicas, read to
where each partition ends (the next owner's seed), and a record that is not one dead-lettered, never applied."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer

from fraudstream.contracts import Authorization, MerchantEvents, Rejection, encode
from fraudstream.core.features.merchant import MerchantState, merchant_features
from fraudstream.core.features.partials import MerchantPartials
from fraudstream.kafka.topics import create_topics
from fraudstream.stream.partials import PartialsFollower

from ..conftest import isolated_settings

pytestmark = pytest.mark.broker

T0 = 1_700_000_000_000


def test_every_partitions_records_reach_the_replicas_once_read_to_their_end(broker, tmp_path) -> None:
    s = isolated_settings(broker, tmp_path, partitions=3)
    create_topics(s)
    book = MerchantPartials(3, grace_ms=s.grace_ms, replicated=True)
    letters: list[tuple[Rejection, int]] = []
    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(bootstrap_servers=s.bootstrap_servers, enable_auto_commit=False, fetch_max_wait_ms=50)

    follower = PartialsFollower(book, s.topic_merchant_partials, consumer, s.kafka_client_config(),
                                lambda rejection, msg: letters.append((rejection, msg.offset)))
    producer = Producer(s.producer_config(**{"linger.ms": 50}))  # several records in one produce batch
    own: dict[int, MerchantState] = {p: MerchantState() for p in range(3)}
    for i in range(300):
        p = i % 3
        a = Authorization(f"t{i}", f"c{i}", "m1", 10.0 + i, T0 + i * 1_000)
        merchant_features(own[p], a, s.grace_ms, base_amount=a.amount)
        record = MerchantEvents(p, [("a", i // 3, "m1", a.card_id, a.amount, a.ts)])
        producer.produce(s.topic_merchant_partials, encode(record.as_dict()), None, p)
        if i == 150:  # a batch sent again (redelivered after a crash): applied once
            producer.produce(s.topic_merchant_partials, encode(record.as_dict()), None, p)
    producer.produce(s.topic_merchant_partials, b'{"partition": 1, "events": [["a"]]}', None, 1)
    producer.produce(s.topic_merchant_partials, encode(MerchantEvents(0, []).as_dict()), None, 2)  # not its partition
    assert producer.flush(30) == 0

    async def follow() -> None:
        try:
            await follower.catch_up(range(3))
        finally:
            await follower.stop()

    asyncio.run(follow())
    assert follower.read == {0: 101, 1: 101, 2: 101}
    for p in range(3):
        assert book.replicas[p]["m1"].to_bytes() == own[p].to_bytes()
    assert sorted((r.reason, offset) for r, offset in letters) == [("invalid_value", 100), ("invalid_value", 100)]


def test_the_records_of_partitions_scored_here_are_stepped_over_not_applied_again() -> None:
    """A worker's replicas of its own partitions took their events as it scored them: its own records, read back,
    are not decoded again (nor would a bad one be taken for someone else's), while the read positions move on."""
    from types import SimpleNamespace

    book = MerchantPartials(2, grace_ms=300_000, replicated=True)
    records = {tp: [SimpleNamespace(topic="fraud.merchant-partials", partition=tp, offset=0, key=None, value=value)]
               for tp, value in ((0, encode(MerchantEvents(0, [("a", 5, "m1", "c1", 10.0, T0)]).as_dict())),
                                 (1, encode(MerchantEvents(1, [("a", 9, "m1", "c2", 20.0, T0)]).as_dict())))}

    class Consumer:
        async def getmany(self, timeout_ms: int, max_records: int) -> dict[int, list[SimpleNamespace]]:
            return records

    letters: list[Rejection] = []
    follower = PartialsFollower(book, "fraud.merchant-partials", Consumer, {}, lambda r, m: letters.append(r), scored_here={0})
    follower.consumer = Consumer()
    assert asyncio.run(follower.poll()) == 1
    assert follower.read == {0: 1, 1: 1} and 0 not in book.replicas and book.applied[(1, "a")] == 9 and not letters
