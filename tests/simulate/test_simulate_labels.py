from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pytest

from fraudstream.contracts import LABEL_SOURCES, Rejection, decode_label, encode
from fraudstream.simulate import HandbookSimulator, Investigator, LabelDelays, SimulatedTransactions

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@pytest.fixture(scope="module")
def labels(medium: SimulatedTransactions) -> list[dict[str, Any]]:
    return LabelDelays(seed=3).labels(medium)


def _split(labels: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return [x for x in labels if x["source"] == "chargeback"], [x for x in labels if x["source"] == "customer_report"]


def test_parameters_are_stored_under_their_names() -> None:
    params: dict[str, Any] = {
        "report_probability": 0.5,
        "report_delay_hours": (1.0, 2.0),
        "chargeback_probability": 0.25,
        "chargeback_delay_days": (3.0, 4.0),
        "episode_gap_days": 9.0,
        "seed": 42,
    }
    delays = LabelDelays(**params)
    assert {name: getattr(delays, name) for name in params} == params


@pytest.mark.parametrize(
    "params", [{"report_probability": 1.2}, {"chargeback_probability": -0.1}, {"report_delay_hours": (5.0, 1.0)}]
)
def test_impossible_delays_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LabelDelays(**params)


def test_same_seed_same_labels(medium: SimulatedTransactions, labels: list[dict[str, Any]]) -> None:
    assert LabelDelays(seed=3).labels(medium) == labels
    assert LabelDelays(seed=4).labels(medium) != labels


def test_labels_accept_the_simulator_itself(medium_sim: HandbookSimulator, labels: list[dict[str, Any]]) -> None:
    assert LabelDelays(seed=3).labels(medium_sim) == labels


def test_sorted_by_ts_and_only_delayed_sources(labels: list[dict[str, Any]]) -> None:
    ts = [x["ts"] for x in labels]
    assert ts == sorted(ts)
    assert {x["source"] for x in labels} == {"chargeback", "customer_report"}  # maturity is the model's to infer


def test_every_label_passes_the_contract(labels: list[dict[str, Any]]) -> None:
    for label in labels:
        decoded = decode_label(encode(label), label["card_id"].encode())
        assert not isinstance(decoded, Rejection), (label, decoded)
        assert decoded.source in LABEL_SOURCES


def test_chargebacks_follow_fraud_within_20_to_60_days(
    medium: SimulatedTransactions, labels: list[dict[str, Any]]
) -> None:
    chargebacks, _ = _split(labels)
    fraud = medium.fraud_lookup()
    card = medium.card_lookup()
    assert set(chargebacks[0]) == {"tx_id", "card_id", "is_fraud", "ts", "source"}
    for label in chargebacks:
        row = int(label["tx_id"][3:])
        assert fraud[label["tx_id"]] and label["is_fraud"] is True
        assert label["card_id"] == card[label["tx_id"]]
        assert 20 * DAY_MS <= label["ts"] - int(medium.ts[row]) <= 60 * DAY_MS
    assert len({x["tx_id"] for x in chargebacks}) == len(chargebacks)
    n_fraud = int(medium.is_fraud.sum())
    # Binomial(n, 0.9): five standard deviations either side.
    assert abs(len(chargebacks) - 0.9 * n_fraud) < 5 * (n_fraud * 0.09) ** 0.5


def test_customer_reports_are_card_level_and_follow_the_first_fraud(
    medium: SimulatedTransactions, labels: list[dict[str, Any]]
) -> None:
    _, reports = _split(labels)
    first_fraud: dict[str, int] = {}
    for row in np.flatnonzero(medium.is_fraud).tolist():
        first_fraud.setdefault(medium.card_id(int(medium.customer[row])), int(medium.ts[row]))
    assert set(reports[0]) == {"card_id", "is_fraud", "since", "ts", "source"}
    assert Counter(x["card_id"] for x in reports).most_common(1)[0][1] == 1
    for label in reports:
        assert label["is_fraud"] is True
        assert label["since"] == first_fraud[label["card_id"]]
        assert 12 * HOUR_MS <= label["ts"] - label["since"] <= 96 * HOUR_MS
    n = len(first_fraud)
    assert abs(len(reports) - 0.8 * n) < 5 * (n * 0.16) ** 0.5


def test_episodes_get_their_own_report(medium: SimulatedTransactions) -> None:
    once = _split(LabelDelays(report_probability=1.0).labels(medium))[1]
    episodes = _split(LabelDelays(report_probability=1.0, episode_gap_days=2.0).labels(medium))[1]
    assert len(episodes) > len(once)
    fraud_ts: dict[str, set[int]] = defaultdict(set)
    for row in np.flatnonzero(medium.is_fraud).tolist():
        fraud_ts[medium.card_id(int(medium.customer[row]))].add(int(medium.ts[row]))
    for label in episodes:
        assert label["since"] in fraud_ts[label["card_id"]] and label["since"] <= label["ts"]


# --- investigator -----------------------------------------------------------


def _alerts(txs: SimulatedTransactions, seed: int = 0) -> list[dict[str, Any]]:
    """Every fraud and a sample of legitimate transactions, as a scorer would alert on them."""
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(txs.is_fraud | (rng.random(len(txs)) < 0.02))
    return [
        {"tx_id": txs.tx_id(r), "card_id": txs.card_id(int(txs.customer[r])), "ts": int(txs.ts[r])}
        for r in rows.tolist()
    ]


def test_investigator_respects_the_daily_budget_and_tells_the_truth(medium: SimulatedTransactions) -> None:
    k = 15
    inv = Investigator.from_transactions(medium, cards_per_day=k, delay_hours=(1.0, 6.0), seed=1)
    alerts = _alerts(medium)
    fraud = medium.fraud_lookup()
    per_day: dict[int, list[str]] = defaultdict(list)
    out = []
    for alert in alerts:
        dispositions = inv.observe_alert(alert)
        assert len(dispositions) <= 1
        for label in dispositions:
            assert label["source"] == "analyst" and label["tx_id"] == alert["tx_id"]
            assert label["is_fraud"] is fraud[alert["tx_id"]]
            assert HOUR_MS <= label["ts"] - alert["ts"] <= 6 * HOUR_MS
            assert not isinstance(decode_label(encode(label), label["card_id"].encode()), Rejection)
            per_day[alert["ts"] // DAY_MS].append(label["card_id"])
            out.append(label)
    assert out and inv.dispositions == len(out)
    assert max(len(cards) for cards in per_day.values()) == k  # the budget binds on this many alerts
    assert all(len(cards) == len(set(cards)) for cards in per_day.values())  # one disposition per card a day
    assert inv.over_budget > 0
    assert {x["is_fraud"] for x in out} == {True, False}


def test_investigator_is_deterministic(medium: SimulatedTransactions) -> None:
    alerts = _alerts(medium, seed=5)

    def run(seed: int) -> list[dict[str, Any]]:
        inv = Investigator.from_transactions(medium, cards_per_day=10, seed=seed)
        return [label for alert in alerts for label in inv.observe_alert(alert)]

    assert run(0) == run(0)
    assert [x["ts"] for x in run(0)] != [x["ts"] for x in run(1)]


def test_investigator_skips_what_it_cannot_judge() -> None:
    inv = Investigator({"t1": True, "t2": False}, {"t1": "c1", "t2": "c1"}, cards_per_day=5)
    day = 1_600_000_000_000
    assert inv.observe_alert({"tx_id": "unknown", "card_id": "c9", "ts": day}) == []
    assert inv.observe_alert({"tx_id": "t1", "card_id": "c1", "ts": "noon"}) == []
    assert inv.observe_alert({"card_id": "c1", "ts": day}) == []
    assert len(inv.observe_alert({"tx_id": "t1", "card_id": "c1", "ts": day})) == 1
    assert inv.observe_alert({"tx_id": "t2", "card_id": "c1", "ts": day + 1000}) == []  # same card, same day
    assert len(inv.observe_alert({"tx_id": "t2", "card_id": "c1", "ts": day + DAY_MS})) == 1  # a new day
    assert inv.checked_cards(day // DAY_MS) == {"c1"}


def test_investigator_forgets_days_past_its_horizon() -> None:
    truth = {f"t{i}": False for i in range(20)}
    inv = Investigator(truth, {t: "c" + t for t in truth}, cards_per_day=1, horizon_days=3)
    day0 = 1_600_000_000_000 // DAY_MS * DAY_MS
    assert len(inv.observe_alert({"tx_id": "t0", "card_id": "ct0", "ts": day0})) == 1
    assert len(inv.observe_alert({"tx_id": "t1", "card_id": "ct1", "ts": day0 + 5 * DAY_MS})) == 1
    # Day 0 is past the horizon now: a late alert for it is no longer looked at.
    assert inv.observe_alert({"tx_id": "t2", "card_id": "ct2", "ts": day0 + 1}) == []
    assert inv.checked_cards(day0 // DAY_MS) == frozenset()
