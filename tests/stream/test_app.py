"""The faust wiring around the stages (fraudstream/stream/app.py), built without a broker."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from fraudstream.config import Settings
from fraudstream.metrics import Metrics
from fraudstream.stream.stages import Message


def test_a_revocation_lets_go_of_what_waits_and_an_assignment_seeds_only_its_latest_partitions(tmp_path) -> None:
    from fraudstream.stream.app import FraudApp

    s = Settings.load(env={}).with_overrides(state_dir=str(tmp_path), partitions=3)
    # Port 1: nobody listens. Building the app connects nothing (faust connects when started).
    app = FraudApp(s, "127.0.0.1:1", Metrics(CollectorRegistry()))
    app.rule_follower.consumer.close()
    assert app.score.merchants is app.label_outcomes.merchants and app.scorer.merchant_partials is app.score.book
    app.own_merchants.seed(2)
    auth = b'{"tx_id": "t1", "card_id": "c1", "merchant_id": "m1", "amount": 5.0, "ts": 1700000000000}'
    app.score.batch([Message(s.topic_authorizations, 2, 0, b"c1", auth)])  # the other partitions said nothing: held
    assert len(app.score.waiting[2]) == 1
    asyncio.run(app.app.on_partitions_revoked.send(set()))
    # What waited comes again to the partition's next owner, from the committed offset; nothing is scored here
    # before the partition's merchant events are read to their end again.
    assert not app.score.waiting and not app.own_merchants.seeded
    seeded: list[set[int]] = []
    app._seed = seeded.append  # type: ignore[method-assign]  # reading the partials needs a broker
    from faust.types import TP

    assigned = {TP(s.topic_authorizations, 1), TP(s.topic_labels, 0)}
    asyncio.run(app.app.on_partitions_assigned.send(assigned))
    assert seeded == [{1}] and app._assignments == 1


def test_the_merchant_gauges_count_the_replicas(tmp_path) -> None:
    """Merchant states live in the replicas of every card partition: those of the partitions scored here are the
    worker's to track, all of them are held in memory."""
    from fraudstream.stream.app import FraudApp

    s = Settings.load(env={}).with_overrides(state_dir=str(tmp_path), partitions=3)
    app = FraudApp(s, "127.0.0.1:1", Metrics(CollectorRegistry()))
    app.rule_follower.consumer.close()
    book = app.merchant_partials
    for partition, merchant in ((0, "m1"), (0, "m2"), (1, "m1")):
        book.replica(partition, merchant)
    app.own_merchants.seed(0)
    app.gauges.report()
    registry = app.metrics.registry
    assert registry.get_sample_value("fraudstream_merchants_tracked") == 2
    assert registry.get_sample_value("fraudstream_live_states", {"kind": "merchant"}) == 3
