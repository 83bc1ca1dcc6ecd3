"""The review team's side, against a real worker: budget, cool-down, blocking, rules, reasons."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from fraudstream.contracts import encode
from fraudstream.kafka.topics import create_topics

from ..conftest import isolated_settings, produce, read_topic, wait_for

pytestmark = pytest.mark.broker

DAY = 86_400_000
T0 = 1_700_000_000_000 - (1_700_000_000_000 % DAY)  # a midnight, UTC


def auth(tx: str, card: str, amount: float, ts: int, merchant: str = "m-shop") -> tuple[bytes, bytes]:
    return card.encode(), encode({"tx_id": tx, "card_id": card, "merchant_id": merchant, "amount": amount, "ts": ts, "currency": "JPY"})


def background(n: int, start: int, span: int, seed: int = 0, cards: int = 200) -> list[tuple[bytes, bytes]]:
    """Ordinary traffic: many cards, amounts around ¥1,000-5,000, spread evenly over ``span`` ms."""
    rnd = random.Random(seed)
    return [auth(f"bg-{seed}-{i}", f"card-bg{rnd.randrange(cards):04d}", round(rnd.uniform(1000, 5000)), start + i * span // n,
                 merchant=f"m-{rnd.randrange(50)}") for i in range(n)]


@pytest.fixture(scope="module")
def pipeline(broker, tmp_path_factory):
    from ..conftest import WorkerProcess

    tmp = tmp_path_factory.mktemp("alerts")
    # One partition: the hand-built cases arrive in exactly the order written here.
    s = isolated_settings(broker, tmp, partitions=1, alert_budget_per_day=20, cooldown_ms=3_600_000, threshold_floor=0.05)
    create_topics(s)
    worker = WorkerProcess(s, tmp / "worker.log")
    yield s, worker
    worker.stop()


def scores_by_tx(s, until=None, timeout=60.0):
    return {v["tx_id"]: v for _, v in read_topic(s, s.topic_scores, until=until, timeout=timeout, idle=None if until else 3)}


def test_budget_cooldown_reasons_blocking_and_rules(pipeline):
    s, worker = pipeline
    # Two days of ordinary traffic: the threshold learns what the top 20 a day look like.
    traffic = background(6000, T0, 2 * DAY)
    produce(s, s.topic_authorizations, traffic)
    produced = len(traffic)
    scored = scores_by_tx(s, until=produced, timeout=90)
    day2 = [v for v in scored.values() if v["ts"] >= T0 + DAY and v["decision"]["action"] == "alert"]
    assert 5 <= len(day2) <= 60, f"{len(day2)} new alerts on day 2 against a budget of 20"

    # A card with a steady history, then ¥180,000 at a new merchant: an alert that says why.
    t = T0 + 2 * DAY
    history = [auth(f"x-{i}", "card-X", 2000 + 10 * i, t + i * 3_600_000) for i in range(20)]
    t += 21 * 3_600_000
    big = auth("x-big", "card-X", 180_000, t, merchant="m-new")
    again = auth("x-again", "card-X", 150_000, t + 600_000, merchant="m-new2")  # 10 minutes later: same open alert
    produce(s, s.topic_authorizations, [*history, big, again])
    produced += len(history) + 2
    scored = scores_by_tx(s, until=produced, timeout=60)
    first, second = scored["x-big"], scored["x-again"]
    assert first["decision"]["action"] == "alert", first["decision"]
    assert first["decision"]["alert_id"] == "alert-x-big"
    assert second["decision"]["action"] == "update" and second["decision"]["alert_id"] == "alert-x-big"
    alerts = {v["tx_id"]: v for _, v in read_topic(s, s.topic_alerts, idle=2, timeout=30)}
    reasons = alerts["x-big"]["reasons"]
    # The amount against the card's mean: one reason, as a ratio or a z-score (the stronger), with its number.
    against_mean = [r for r in reasons if "this card's 30-day mean" in r]
    assert len(against_mean) == 1, reasons
    mean = sum(2000 + 10 * i for i in range(20)) / 20
    std = max(statistics.pstdev(2000 + 10 * i for i in range(20)), 0.1 * mean)
    assert against_mean[0] in (f"amount is {180_000 / mean:.1f}× this card's 30-day mean",
                               f"amount is {(180_000 - mean) / std:.1f} standard deviations above this card's 30-day mean"), \
        (against_mean, mean, std)
    assert reasons[-1].startswith("model score ")

    # A confirmed fraud blocks the card whatever the score, until it is reissued.
    label = {"tx_id": "x-big", "card_id": "card-X", "is_fraud": True, "ts": t + 3_600_000, "source": "analyst"}
    produce(s, s.topic_labels, [(b"card-X", encode(label))])
    wait_for(lambda: worker.metric("fraudstream_labels_total", 'source="analyst",status="learned"') >= 1, timeout=30)
    produce(s, s.topic_authorizations, [auth("x-after", "card-X", 1500, t + 2 * 3_600_000)])
    produce(s, s.topic_card_reissues, [(b"card-X", encode({"card_id": "card-X", "ts": t + 3 * 3_600_000}))])
    wait_for(lambda: worker.metric("fraudstream_authorizations_scored_total") >= produced + 1, timeout=30)
    produce(s, s.topic_authorizations, [auth("x-reissued", "card-X", 1500, t + 4 * 3_600_000)])
    produced += 2
    scored = scores_by_tx(s, until=produced, timeout=60)
    assert scored["x-after"]["decision"]["action"] == "block"
    assert scored["x-reissued"]["decision"]["action"] != "block"

    # Rules applied while the worker runs: an active one alerts, a shadow one only counts.
    rules = [
        {"id": "R-HUGE", "description": "Amount above ¥900,000", "condition": "amount > 900000", "mode": "active", "action": "alert"},
        {"id": "R-SHADOW", "description": "Amount above ¥400,000", "condition": "amount > 400000", "mode": "shadow", "action": "alert"},
    ]
    produce(s, s.topic_rules, [(r["id"].encode(), encode(r)) for r in rules])
    t += 5 * 3_600_000
    # Give the workers' rule follower a moment: it polls every 0.2 s.
    wait_for(lambda: True, timeout=1)
    import time

    time.sleep(1.5)
    produce(s, s.topic_authorizations, [auth("y-huge", "card-Y", 950_000, t), auth("z-mid", "card-Z", 500_000, t + 1000)])
    produced += 2
    scored = scores_by_tx(s, until=produced, timeout=60)
    huge, mid = scored["y-huge"], scored["z-mid"]
    assert "R-HUGE" in huge["decision"]["rules"] and huge["decision"]["action"] == "alert"
    assert "R-SHADOW" in huge["rule_hits"] and "R-SHADOW" not in huge["decision"]["rules"]
    assert "R-SHADOW" in mid["rule_hits"] and "R-SHADOW" not in mid["decision"]["rules"]
    alerts = {v["tx_id"]: v for _, v in read_topic(s, s.topic_alerts, idle=2, timeout=30)}
    assert any(r == "rule R-HUGE: Amount above ¥900,000" for r in alerts["y-huge"]["reasons"])

    # Rule precision from confirmed labels.
    labels = [{"tx_id": "y-huge", "card_id": "card-Y", "is_fraud": True, "ts": t + DAY // 2, "source": "analyst"},
              {"tx_id": "z-mid", "card_id": "card-Z", "is_fraud": False, "ts": t + DAY // 2, "source": "analyst"}]
    produce(s, s.topic_labels, [(v["card_id"].encode(), encode(v)) for v in labels])
    wait_for(lambda: worker.metric("fraudstream_rule_precision", 'rule="R-SHADOW"') == 0.5, timeout=30)
    assert worker.metric("fraudstream_rule_precision", 'rule="R-HUGE"') == 1.0
    hits = Counter()
    for line in worker.metrics().splitlines():
        if line.startswith("fraudstream_rule_hits_total{"):
            hits[line.split('rule="')[1].split('"')[0]] += float(line.rsplit(" ", 1)[1])
    assert hits["R-SHADOW"] == 2 and hits["R-HUGE"] == 1
