"""The adaptive threshold keeps alerts near the budget; the policy's cool-down, blocks and rule alerts; card standings."""

from __future__ import annotations

import random

import pytest

from fraudstream.contracts import alert_id_for
from fraudstream.core.decision import AdaptiveThreshold, CardStanding, Decision, DecisionPolicy
from fraudstream.core.features.card import DAY_MS as DAY
from fraudstream.core.features.card import HOUR_MS as HOUR
from fraudstream.core.features.card import MINUTE_MS as MIN
from fraudstream.core.features.card import NO_TIME

T0 = 1_700_438_400_000  # 2023-11-20T00:00:00Z


# --- AdaptiveThreshold ---------------------------------------------------------------------


def simulate_day(t: AdaptiveThreshold, rng: random.Random, start: int, n: int = 20_000) -> int:
    """n scores spread over 24 hours in event-time order; returns how many reached the threshold."""
    alerts = 0
    for ts in sorted(start + rng.randrange(DAY) for _ in range(n)):
        score = rng.betavariate(2, 20)  # mostly low, a thin tail: the top 100 sit near 0.3
        if score >= t.value(ts):
            alerts += 1
        t.observe(ts, score)
    return alerts


def test_alert_volume_stays_near_the_budget() -> None:
    rng = random.Random(3)
    t = AdaptiveThreshold(budget_per_day=100, floor=0.05, ceiling=0.98, warmup=1000)
    first = simulate_day(t, rng, T0)
    second = simulate_day(t, rng, T0 + DAY)
    assert 70 <= first <= 130, first
    assert 70 <= second <= 130, second
    assert 0.05 < t.value(T0 + 2 * DAY - 1) < 0.98  # set by the scores, not by a bound


def test_the_budget_scales_the_volume() -> None:
    rng = random.Random(4)
    t = AdaptiveThreshold(budget_per_day=400, floor=0.05, ceiling=0.98, warmup=1000)
    simulate_day(t, rng, T0)
    assert 280 <= simulate_day(t, rng, T0 + DAY) <= 520


def test_the_floor_holds_on_a_quiet_day() -> None:
    t = AdaptiveThreshold(budget_per_day=100, floor=0.2, ceiling=0.98, warmup=10)
    for i in range(500):
        t.observe(T0 + i * MIN, 0.01)
    assert t.value(T0 + 500 * MIN) == 0.2  # the top 100 scored 0.01: never alert below the floor


def test_the_ceiling_holds_in_a_fraud_wave() -> None:
    t = AdaptiveThreshold(budget_per_day=100, floor=0.2, ceiling=0.9, warmup=10)
    for i in range(5000):
        t.observe(T0 + i * 10_000, 0.999)
    assert t.value(T0 + DAY) == 0.9  # above the ceiling, everything alerts whatever the budget


def test_warmup_uses_the_ceiling() -> None:
    t = AdaptiveThreshold(budget_per_day=1, floor=0.1, ceiling=0.9, warmup=50)
    for i in range(49):
        t.observe(T0 + i, 0.3)
        assert t.value(T0 + i) == 0.9
    t.observe(T0 + 49, 0.3)
    assert t.value(T0 + 49) == pytest.approx(0.3)


def test_scores_older_than_24_hours_stop_counting() -> None:
    t = AdaptiveThreshold(budget_per_day=100, floor=0.05, ceiling=0.98, warmup=10)
    for i in range(2000):
        t.observe(T0 + i, 0.9)
    for i in range(2000):
        t.observe(T0 + 10 * HOUR + i, 0.3)
    assert t.value(T0 + 10 * HOUR + 2000) == pytest.approx(0.9)  # the high scores are still in the day
    for i in range(2000):
        t.observe(T0 + 25 * HOUR + i, 0.3)
    assert t.value(T0 + 25 * HOUR + 2000) == pytest.approx(0.3)  # hour 0 left the 24-hour window


def test_threshold_round_trips() -> None:
    rng = random.Random(5)
    t = AdaptiveThreshold(budget_per_day=50, floor=0.05, ceiling=0.98, warmup=100)
    for i in range(3000):
        t.observe(T0 + i * 30_000, rng.random() ** 4)
    copy = AdaptiveThreshold(budget_per_day=50, floor=0.05, ceiling=0.98, warmup=100)
    copy.load_bytes(t.to_bytes())
    assert copy.to_bytes() == t.to_bytes()
    assert copy.value(T0 + 3000 * 30_000) == t.value(T0 + 3000 * 30_000)
    for i in range(3000, 3500):
        score = rng.random() ** 4
        t.observe(T0 + i * 30_000, score)
        copy.observe(T0 + i * 30_000, score)
    t._stale = copy._stale = 1 << 30  # compare fresh scans, not the caches' timing
    assert copy.value(T0 + 3500 * 30_000) == t.value(T0 + 3500 * 30_000)


# --- DecisionPolicy ------------------------------------------------------------------------

COOLDOWN = HOUR


def policy() -> DecisionPolicy:
    # A warm-up longer than any test: the threshold is the ceiling, 0.9.
    return DecisionPolicy(budget_per_day=100, floor=0.2, ceiling=0.9, cooldown_ms=COOLDOWN, warmup=10**9)


def test_alert_id_derives_from_tx_id() -> None:
    assert alert_id_for("tx-42") == "alert-tx-42"
    a = policy().decide(CardStanding(), "tx-42", T0, 0.95)
    b = policy().decide(CardStanding(), "tx-42", T0 + DAY, 0.99)
    assert a.alert_id == b.alert_id == "alert-tx-42"


def test_below_the_threshold_nothing_happens() -> None:
    card = CardStanding()
    d = policy().decide(card, "t1", T0, 0.5)
    assert d == Decision("none", 0.9, None, ())
    assert (card.open_alert_id, card.open_alert_until) == (None, NO_TIME)


def test_cooldown_turns_new_alerts_into_updates() -> None:
    p, card = policy(), CardStanding()
    first = p.decide(card, "t1", T0, 0.95)
    assert (first.action, first.alert_id, first.threshold) == ("alert", "alert-t1", 0.9)
    assert (card.open_alert_id, card.open_alert_until) == ("alert-t1", T0 + COOLDOWN)
    second = p.decide(card, "t2", T0 + 10 * MIN, 0.97)
    assert (second.action, second.alert_id) == ("update", "alert-t1")
    quiet = p.decide(card, "t3", T0 + 20 * MIN, 0.1)
    assert (quiet.action, quiet.alert_id) == ("none", None)
    last = p.decide(card, "t4", T0 + COOLDOWN - 1, 0.99)
    assert (last.action, last.alert_id) == ("update", "alert-t1")
    # An update does not extend the cool-down; at its end a new alert opens.
    after = p.decide(card, "t5", T0 + COOLDOWN, 0.95)
    assert (after.action, after.alert_id) == ("alert", "alert-t5")
    assert (card.open_alert_id, card.open_alert_until) == ("alert-t5", T0 + 2 * COOLDOWN)


def test_cooldown_is_per_card() -> None:
    p, c1, c2 = policy(), CardStanding(), CardStanding()
    assert p.decide(c1, "a", T0, 0.95).action == "alert"
    assert p.decide(c2, "b", T0 + MIN, 0.95).action == "alert"


def test_rule_alerts_bypass_the_threshold() -> None:
    p, card = policy(), CardStanding()
    d = p.decide(card, "t1", T0, 0.01, ("R-7",))
    assert (d.action, d.alert_id, d.rules) == ("alert", "alert-t1", ("R-7",))
    d = p.decide(card, "t2", T0 + MIN, 0.01, ("R-8",))
    assert (d.action, d.alert_id, d.rules) == ("update", "alert-t1", ("R-8",))


def test_a_compromised_card_is_blocked_until_reissued() -> None:
    p, card = policy(), CardStanding()
    card.compromised_since = T0 + HOUR
    before = p.decide(card, "t0", T0, 0.1)
    assert before.action == "none"  # authorized before the fraud was confirmed
    for i, score in enumerate((0.0, 0.5, 0.99)):
        d = p.decide(card, f"t{i + 1}", T0 + HOUR + i * MIN, score)
        assert (d.action, d.alert_id) == ("block", f"alert-t{i + 1}")
    assert card.open_alert_id is None  # a block is not an alert to review again
    assert p.decide(card, "r", T0 + 2 * HOUR, 0.1, ("R-1",)) == Decision("block", 0.9, "alert-r", ("R-1",))
    card.compromised_since = NO_TIME  # what a reissue does
    assert p.decide(card, "t9", T0 + 3 * HOUR, 0.1).action == "none"


def test_decision_as_dict() -> None:
    assert Decision("alert", 0.5, "alert-x", ("R-1", "R-2")).as_dict() == {
        "action": "alert", "threshold": 0.5, "alert_id": "alert-x", "rules": ["R-1", "R-2"]}


def test_the_decision_reports_the_threshold_before_this_score() -> None:
    p = DecisionPolicy(budget_per_day=1, floor=0.1, ceiling=0.9, cooldown_ms=COOLDOWN, warmup=3)
    card = CardStanding()
    for i, s in enumerate((0.2, 0.3, 0.4)):
        assert p.decide(card, f"t{i}", T0 + i, s).threshold == 0.9  # warming up
    d = p.decide(card, "t3", T0 + 3, 0.85)
    assert d.threshold == pytest.approx(0.4)  # top 1 of the three before it
    assert d.action == "alert"


def test_the_decision_advances_the_standing_clock() -> None:
    """The standing's clock is what its eviction reads: the newest decided event time, never moved back."""
    p, card = policy(), CardStanding()
    p.decide(card, "t1", T0 + HOUR, 0.1)
    assert card.clock == T0 + HOUR
    p.decide(card, "t0", T0, 0.1)  # an older authorization decided later
    assert card.clock == T0 + HOUR


# --- CardStanding --------------------------------------------------------------------------


def test_a_standing_round_trips() -> None:
    card = CardStanding()
    card.clock, card.compromised_since = T0 + 3 * DAY, T0 + DAY
    card.open_alert_id, card.open_alert_until = "alert-tx-7", T0 + 2 * DAY
    copy = CardStanding.from_bytes(card.to_bytes())
    assert copy.to_bytes() == card.to_bytes()
    assert (copy.clock, copy.compromised, copy.compromised_since, copy.open_alert_id, copy.open_alert_until) == (
        T0 + 3 * DAY, True, T0 + DAY, "alert-tx-7", T0 + 2 * DAY)
    # The copy decides exactly as the original would.
    p, q = policy(), policy()
    assert p.decide(copy, "t9", T0 + 4 * DAY, 0.1) == q.decide(card, "t9", T0 + 4 * DAY, 0.1) == Decision("block", 0.9, "alert-t9", ())


def test_a_fresh_standing_round_trips() -> None:
    card = CardStanding()
    copy = CardStanding.from_bytes(card.to_bytes())
    assert (copy.clock, copy.compromised, copy.compromised_since, copy.open_alert_id, copy.open_alert_until) == (
        NO_TIME, False, NO_TIME, None, NO_TIME)
    assert copy.to_bytes() == card.to_bytes()


def test_only_the_open_alert_id_grows_a_standing() -> None:
    card = CardStanding()
    size = len(card.to_bytes())
    card.clock, card.compromised_since, card.open_alert_until = T0, T0, T0 + DAY
    assert len(card.to_bytes()) == size
    card.open_alert_id = "alert-t99999"
    assert len(card.to_bytes()) == size + len("alert-t99999")


def test_blocking_follows_event_time_not_arrival_order() -> None:
    """A reissue that arrives before a late authorization still leaves that authorization blocked."""
    from fraudstream.core.decision import CardStanding

    s = CardStanding()
    assert s.confirm_fraud(1_000)
    s.reissue(3_000)
    assert s.blocks(2_000) and not s.blocks(500) and not s.blocks(3_000)
    assert not s.compromised
    # Fraud confirmed again on the new card blocks again, from its own time.
    assert s.confirm_fraud(5_000) and s.compromised
    assert s.blocks(6_000) and not s.blocks(4_000)
    assert CardStanding.from_bytes(s.to_bytes()).blocks(6_000)


# --- DecisionPolicy.replay: crash replay re-applies a decision, with the same code -------------------------------


def test_replaying_every_decision_ends_in_the_same_threshold_and_standings() -> None:
    # The worker's crash replay: each decision's snapshot (action, alert id, score) applied to a policy and standings
    # that missed it. Blocks, alerts, updates and rule alerts all occur; the threshold moves past its warm-up.
    rng = random.Random(7)
    live, again = DecisionPolicy(20, 0.05, 0.95, HOUR, warmup=50), DecisionPolicy(20, 0.05, 0.95, HOUR, warmup=50)
    cards = {c: (CardStanding(), CardStanding()) for c in ("c1", "c2", "c3")}
    cards["c3"][0].confirm_fraud(T0 + 6 * HOUR)
    cards["c3"][1].confirm_fraud(T0 + 6 * HOUR)
    actions = set()
    for i in range(3000):
        ts = T0 + i * 20 * MIN // 7
        card_id = rng.choice(sorted(cards))
        score = rng.betavariate(2, 8)
        rules = ("velocity",) if rng.random() < 0.01 else ()
        standing, copy = cards[card_id]
        d = live.decide(standing, f"tx-{i}", ts, score, rules)
        actions.add(d.action)
        again.replay(copy, ts, score, d.action, d.alert_id)
        assert again.threshold.value(ts) == live.threshold.value(ts)
    assert actions == {"none", "alert", "update", "block"}
    assert again.threshold.to_bytes() == live.threshold.to_bytes()
    for standing, copy in cards.values():
        assert copy.to_bytes() == standing.to_bytes()
