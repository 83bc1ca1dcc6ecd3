"""The worker and the backtest run the same core: same events in, same features and scores out."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from fraudstream.contracts import Authorization, encode
from fraudstream.core.features.catalogue import FEATURE_NAMES
from fraudstream.core.scorer import FraudScorer
from fraudstream.kafka.topics import create_topics
from fraudstream.simulate import HandbookSimulator

from ..conftest import WorkerProcess, isolated_settings, produce, read_distinct, read_topic

pytestmark = pytest.mark.broker

CARD_FEATURES = [n for n in FEATURE_NAMES if not n.startswith("merchant_")]


def simulated_day(seed: int = 3) -> list[Authorization]:
    """One simulated day in event-time order (ties by tx_id): the order the backtest replays."""
    sim = HandbookSimulator(n_customers=2000, n_terminals=1500, n_days=1, seed=seed)
    return sorted((Authorization(**a.as_event()) for a in sim.iter_authorizations()), key=lambda a: (a.ts, a.tx_id))


def reference(settings, events):
    """The backtest's path: the pure core, in event-time order, one partition."""
    scorer = FraudScorer(settings.with_overrides(partitions=1), partitions=1)
    return {a.tx_id: scorer.process(a) for a in events}


def live(broker, tmp_path, events, partitions: int, workers: int, name: str, store: str = "memory://"):
    s = isolated_settings(broker, tmp_path / name, partitions=partitions, store=store)
    create_topics(s)
    # Produced before any worker starts: a card partition found empty is announced idle, and merchant features
    # stop waiting for it (FRAUDSTREAM_SOURCE_IDLE_S); its authorizations, arriving after the others were released,
    # would then come late for their merchants. That is live processing's trade-off (README, "Merchant features in
    # event-time order"); what these tests check is that workers joining, partitions moving and stores do not
    # change a feature.
    produce(s, s.topic_authorizations, [(a.card_id.encode(), encode(a.as_dict())) for a in events])
    procs = [WorkerProcess(s, tmp_path / f"{name}-{i}.log") for i in range(workers)]
    try:
        out = read_distinct(s, s.topic_scores, len(events), timeout=240)
    finally:
        for p in procs:
            p.stop()
    assert len(out) == len(events), f"{len(events) - len(out)} authorizations were not scored"
    return s, out


def test_a_simulated_day_replays_exactly_as_live(broker, tmp_path):
    events = simulated_day()
    assert len(events) > 3000
    s, scored = live(broker, tmp_path, events, partitions=1, workers=1, name="live")
    expected = reference(s, events)
    mismatched = [tx for tx, v in scored.items()
                  if v["features"] != expected[tx].features or v["score"] != expected[tx].score
                  or v["decision"] != expected[tx].decision.as_dict()]
    assert not mismatched, f"{len(mismatched)} of {len(events)} differ, e.g. {mismatched[:3]}"
    # The internal topics carry what their contracts in topics/ say.
    for topic, name in ((s.topic_by_merchant, "fraud.authorizations-by-merchant"), (s.topic_enriched, "fraud.authorizations-enriched")):
        schema = json.loads((Path(__file__).parents[2] / "topics" / f"{name}.json").read_text())["value_schema"]
        records = read_topic(s, topic, idle=2.0)
        assert len(records) >= len(events)
        kinds = {("marks" in v, "idle" in v, "auth" in v) for _, v in records}
        if topic == s.topic_by_merchant:
            assert (True, False, False) in kinds and (False, False, True) in kinds  # progress marks and authorizations
        validator = jsonschema.Draft202012Validator(schema)
        for _, value in records:
            validator.validate(value)


@pytest.mark.parametrize(("partitions", "workers", "store"), [
    (3, 3, "memory://"),  # three workers joining while authorizations flow: partitions move twice
    (8, 1, "rocksdb://"),  # the production store: one RocksDB database per table and partition
])
def test_features_do_not_depend_on_workers_or_partitions(broker, tmp_path, partitions, workers, store):
    """Card features are computed where the card's authorizations arrive in order; merchant features where the
    merchant's arrive from every card partition, put back in event-time order (EventTimeOrder)."""
    events = simulated_day(seed=4)
    s, scored = live(broker, tmp_path, events, partitions=partitions, workers=workers, name=f"p{partitions}w{workers}",
                     store=store)
    expected = reference(s, events)
    differ = [tx for tx, v in scored.items() if any(v["features"][n] != expected[tx].features[n] for n in CARD_FEATURES)]
    assert not differ, f"card features of {len(differ)} authorizations differ, e.g. {differ[:3]}"
    merchant_differ = [tx for tx, v in scored.items() if v["features"] != expected[tx].features]
    assert not merchant_differ, f"merchant features of {len(merchant_differ)} of {len(events)} authorizations differ"
