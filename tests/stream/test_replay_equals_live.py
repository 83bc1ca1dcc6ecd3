"""The worker and the backtest run the same core: same events in, same features and scores out."""

from __future__ import annotations

import pytest

from fraudstream.contracts import Authorization, encode
from fraudstream.core.features.catalogue import FEATURE_NAMES
from fraudstream.core.scorer import FraudScorer
from fraudstream.kafka.topics import create_topics
from fraudstream.simulate import HandbookSimulator

from ..conftest import WorkerProcess, isolated_settings, produce, read_distinct

pytestmark = pytest.mark.broker

CARD_FEATURES = [n for n in FEATURE_NAMES if not n.startswith("merchant_")]


def simulated_day(seed: int = 3) -> list[Authorization]:
    sim = HandbookSimulator(n_customers=2000, n_terminals=1500, n_days=1, seed=seed)
    return [Authorization(**a.as_event()) for a in sim.iter_authorizations()]


def reference(settings, events):
    """The backtest's path: the pure core, in event-time order, one partition."""
    scorer = FraudScorer(settings.with_overrides(partitions=1), partitions=1)
    return {a.tx_id: scorer.process(a) for a in events}


def live(broker, tmp_path, events, partitions: int, workers: int, name: str):
    s = isolated_settings(broker, tmp_path / name, partitions=partitions)
    create_topics(s)
    procs = [WorkerProcess(s, tmp_path / f"{name}-{i}.log") for i in range(workers)]
    try:
        produce(s, s.topic_authorizations, [(a.card_id.encode(), encode(a.as_dict())) for a in events])
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


@pytest.mark.parametrize(("partitions", "workers"), [
    pytest.param(3, 3, marks=pytest.mark.xfail(strict=False, reason=(
        "seen on a loaded machine: with three workers joining while traffic flows, hundreds of authorizations "
        "were never scored after partitions moved; crash and rebalance safety (the reliability issue) is not "
        "landed yet, so this case is not yet a guarantee"))),
    (8, 1),
])
def test_card_features_do_not_depend_on_workers_or_partitions(broker, tmp_path, partitions, workers):
    events = simulated_day(seed=4)
    s, scored = live(broker, tmp_path, events, partitions=partitions, workers=workers, name=f"p{partitions}w{workers}")
    expected = reference(s, events)
    differ = [tx for tx, v in scored.items() if any(v["features"][n] != expected[tx].features[n] for n in CARD_FEATURES)]
    assert not differ, f"card features of {len(differ)} authorizations differ, e.g. {differ[:3]}"
    merchant_differ = [tx for tx, v in scored.items() if v["features"] != expected[tx].features]
    if merchant_differ:
        pytest.xfail(
            f"merchant features of {len(merchant_differ)} of {len(events)} authorizations depend on the order in which "
            "authorizations from several card partitions reach a merchant partition; making them exact needs "
            "event-time ordering (watermarks) at the merchant stage, not built yet"
        )
