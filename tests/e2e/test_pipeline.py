"""The whole pipeline on the embedded broker: authorizations in, scores and alerts out, labels learned."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from fraudstream.contracts import encode
from fraudstream.simulate import HandbookSimulator, LabelDelays, produce

from ..conftest import produce as produce_raw
from ..conftest import read_topic, wait_for

pytestmark = pytest.mark.broker


def test_pipeline_end_to_end(topics, start_worker):
    s = topics.with_overrides(alert_budget_per_day=10)  # 150 cards: a team checking 10 a day
    worker = start_worker(s)
    bad = [(b"card-x", b"{not json"), (b"card-y", encode({"tx_id": "t-bad", "card_id": "card-y", "amount": -5}))]
    produce_raw(s, s.topic_authorizations, bad[:1])

    sim = HandbookSimulator(n_customers=150, n_terminals=300, n_days=25, seed=7)
    truth = sim.transactions()
    counts = produce(s, sim, LabelDelays(seed=7), investigator_k=30, investigator_linger_s=5.0)
    produce_raw(s, s.topic_authorizations, bad[1:])
    n = len(truth)
    assert n > 2000 and counts.events == n and counts.labels > 0

    scores = read_topic(s, s.topic_scores, until=n, timeout=180)
    seen = Counter(v["tx_id"] for _, v in scores)
    assert len(seen) == n, f"{n - len(seen)} authorizations never scored"
    assert max(seen.values()) == 1, "an authorization was scored twice without a crash"
    assert all(0.0 <= v["score"] <= 1.0 and v["features"]["card_count_30d"] >= 1 for _, v in scores)

    alerts = read_topic(s, s.topic_alerts, idle=3, timeout=30)
    assert alerts, "no alert raised on traffic with fraud"
    actions = Counter(v["action"] for _, v in alerts)
    # A replay at this speed teaches the model in big steps, and each step shifts the scores the
    # adaptive threshold has seen; the budget itself is tested in event time in tests/core/test_decision.py.
    days = 25
    assert 0 < actions["alert"] <= 5 * s.alert_budget_per_day * days, actions
    assert all(v["reasons"] for _, v in alerts if v["action"] != "update")
    fraud_alerts = sum(1 for _, v in alerts if truth.fraud_lookup()[v["tx_id"]])
    assert fraud_alerts > 0

    # Labels change the model: later scores carry a newer version than the first ones.
    wait_for(lambda: worker.metric("fraudstream_model_examples_learned") > 0, timeout=60)
    versions = {v["model_version"] for _, v in scores}
    assert len(versions) > 1, f"every score came from one model version: {versions}"
    assert worker.metric("fraudstream_labels_total") >= counts.labels

    # The malformed messages went to the dead-letter topic, and the worker kept going.
    letters = read_topic(s, s.topic_dead_letter, until=2, timeout=30)
    reasons = sorted(v["reason"] for _, v in letters)
    assert reasons == ["amount_out_of_range", "not_json"] or reasons == ["missing_field", "not_json"]
    assert {v["topic"] for _, v in letters} == {s.topic_authorizations}
    assert worker.alive()
    assert worker.metric("fraudstream_dead_letters_total") == 2
    time.sleep(0.1)
