"""The worker and the backtest run the same core: same events in, same features and scores out."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from fraudstream.contracts import Authorization, encode
from fraudstream.core.features.catalogue import FEATURE_NAMES
from fraudstream.core.features.partials import MerchantPartials
from fraudstream.core.partitioner import partition_of
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
    """The backtest's path: the pure core, in event-time order, each card on its partition with the merchant partials
    of `settings.partitions` card partitions (as ``Backtest`` replays)."""
    n = settings.partitions
    scorer = FraudScorer(settings, partitions=n, merchant_partials=MerchantPartials(n, grace_ms=settings.grace_ms))
    return {a.tx_id: scorer.process(a, partition_of(a.card_id, n)) for a in events}


def live(broker, tmp_path, events, partitions: int, workers: int, name: str, store: str = "memory://"):
    s = isolated_settings(broker, tmp_path / name, partitions=partitions, store=store)
    create_topics(s)
    # Produced before any worker starts: a card partition found empty is announced idle, and the others stop waiting
    # for its merchant partials (FRAUDSTREAM_SOURCE_IDLE_S); its authorizations, arriving after the others went on,
    # would then count later for their merchants. That is live processing's trade-off (README, "Merchant features
    # from every card partition"); what these tests check is that workers joining, partitions moving and stores do
    # not change a feature.
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
    # The merchant partials carry what their contract in topics/ says: every authorization's event, once.
    schema = json.loads((Path(__file__).parents[2] / "topics" / "fraud.merchant-partials.json").read_text())["value_schema"]
    records = read_topic(s, s.topic_merchant_partials, idle=2.0)
    validator = jsonschema.Draft202012Validator(schema)
    for _, value in records:
        validator.validate(value)
    taken = [e for _, v in records for e in v["events"] if e[0] == "a"]
    assert len(taken) == len({e[1] for e in taken}) == len(events)


@pytest.mark.parametrize(("partitions", "workers", "store"), [
    (3, 3, "memory://"),  # three workers joining while authorizations flow: partitions move twice
    (8, 1, "rocksdb://"),  # the production store: one RocksDB database per table and partition
])
def test_features_do_not_depend_on_workers_or_partitions(broker, tmp_path, partitions, workers, store):
    """Card and merchant features are computed where the card's authorizations arrive in order, the merchant's from
    its own partition's and every other partition's merchant partials as of a minute back: the same for any number
    of workers (for a given number of partitions, as the backtest replays them)."""
    events = simulated_day(seed=4)
    s, scored = live(broker, tmp_path, events, partitions=partitions, workers=workers, name=f"p{partitions}w{workers}",
                     store=store)
    expected = reference(s, events)
    differ = [tx for tx, v in scored.items() if any(v["features"][n] != expected[tx].features[n] for n in CARD_FEATURES)]
    assert not differ, f"card features of {len(differ)} authorizations differ, e.g. {differ[:3]}"
    merchant_differ = [tx for tx, v in scored.items() if v["features"] != expected[tx].features]
    assert not merchant_differ, f"merchant features of {len(merchant_differ)} of {len(events)} authorizations differ"
