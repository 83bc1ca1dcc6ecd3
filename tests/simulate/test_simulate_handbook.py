from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from fraudstream.contracts import Rejection, decode_authorization, encode
from fraudstream.simulate import HandbookSimulator, SimulatedTransactions, to_epoch_ms
from fraudstream.simulate.handbook import DAY_MS, _money

COLUMNS = ("ts", "day", "customer", "terminal", "amount", "is_fraud", "scenario")


def test_constructor_parameters_are_stored_under_their_names() -> None:
    params: dict[str, Any] = {
        "n_customers": 12,
        "n_terminals": 34,
        "n_days": 5,
        "start": "2021-02-03",
        "radius": 7.5,
        "seed": 9,
        "compromised_terminals_per_day": 1,
        "terminal_compromise_days": 10,
        "compromised_customers_per_day": 2,
        "customer_compromise_days": 4,
        "customer_fraud_share": 0.5,
        "customer_fraud_amount_factor": 3,
        "amount_fraud_threshold": 150,
    }
    sim = HandbookSimulator(**params)
    assert {name: getattr(sim, name) for name in params} == params


def test_defaults_are_the_handbook_sizes() -> None:
    sim = HandbookSimulator()
    assert (sim.n_customers, sim.n_terminals, sim.n_days, sim.radius) == (5000, 10000, 183, 5.0)
    assert sim.start_ms == to_epoch_ms("2018-04-01") == 1_522_540_800_000
    assert (sim.compromised_terminals_per_day, sim.terminal_compromise_days) == (2, 28)
    assert (sim.compromised_customers_per_day, sim.customer_compromise_days) == (3, 14)
    assert sim.customer_fraud_share == pytest.approx(1 / 3)
    assert (sim.customer_fraud_amount_factor, sim.amount_fraud_threshold) == (5, 220)


@pytest.mark.parametrize(
    "params",
    [{"n_customers": 0}, {"n_days": 0}, {"n_terminals": 1}, {"customer_fraud_share": 1.5}],
)
def test_impossible_sizes_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        HandbookSimulator(**params)


def test_same_seed_same_transactions() -> None:
    a = HandbookSimulator(n_customers=80, n_terminals=300, n_days=15, seed=5)
    b = HandbookSimulator(n_customers=80, n_terminals=300, n_days=15, seed=5)
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(a.transactions(), name), getattr(b.transactions(), name))
    assert a.authorizations() == b.authorizations()


def test_other_seed_other_transactions() -> None:
    a = HandbookSimulator(n_customers=80, n_terminals=300, n_days=15, seed=5).transactions()
    b = HandbookSimulator(n_customers=80, n_terminals=300, n_days=15, seed=6).transactions()
    assert len(a) != len(b) or not np.array_equal(a.amount, b.amount)


def test_more_days_keep_the_same_customers_and_terminals() -> None:
    short = HandbookSimulator(n_customers=50, n_terminals=100, n_days=3, seed=1).transactions()
    long = HandbookSimulator(n_customers=50, n_terminals=100, n_days=30, seed=1).transactions()
    np.testing.assert_array_equal(short.customer_mean_amount, long.customer_mean_amount)
    np.testing.assert_array_equal(short.terminal_xy, long.terminal_xy)


def test_ids_are_unique_padded_and_in_event_order(small_sim: HandbookSimulator) -> None:
    auths = small_sim.authorizations()
    tx_ids = [a.tx_id for a in auths]
    assert len(set(tx_ids)) == len(tx_ids)
    assert tx_ids == sorted(tx_ids)
    assert {len(t) for t in tx_ids} == {len("tx-0000001234")}
    assert all(a.card_id.startswith("card-") and len(a.card_id) == len("card-000123") for a in auths)
    assert all(a.merchant_id.startswith("term-") and len(a.merchant_id) == len("term-00456") for a in auths)
    keys = [(a.ts, a.tx_id) for a in auths]
    assert keys == sorted(keys)


def test_times_fall_inside_their_day(medium: SimulatedTransactions) -> None:
    offset = medium.ts - medium.start_ms
    np.testing.assert_array_equal(offset // DAY_MS, medium.day)
    assert offset.min() >= 0
    assert medium.day.max() < 60
    assert bool((np.diff(medium.ts) >= 0).all())
    # Time of day is N(noon, 20,000 s): most of the mass is between 6:00 and 18:00.
    seconds = (offset % DAY_MS) / 1000
    assert 0.55 < float(((seconds > 6 * 3600) & (seconds < 18 * 3600)).mean()) < 0.85


def test_amounts_are_positive_cents_and_large_ones_are_fraud(medium: SimulatedTransactions) -> None:
    amount = medium.amount
    assert amount.min() >= 0.01
    np.testing.assert_allclose(amount * 100, np.round(amount * 100), atol=1e-6)
    # Scenario 1 makes every amount above 220 fraud; the later scenarios only add fraud.
    assert bool(medium.is_fraud[amount > 220].all())
    assert bool((amount[medium.scenario == 1] > 220).all())
    # Legitimate amounts are N(mean, mean/2) with mean ≤ 100.
    assert amount[~medium.is_fraud].max() <= 220
    assert 40 < float(amount[medium.scenario == 0].mean()) < 65


def test_rounding_never_yields_a_free_authorization() -> None:
    np.testing.assert_array_equal(_money(np.array([0.004, 0.0, 0.005001, 12.345678])), [0.01, 0.01, 0.01, 12.35])


def test_terminals_are_within_radius(medium: SimulatedTransactions) -> None:
    distance = np.linalg.norm(medium.customer_xy[medium.customer] - medium.terminal_xy[medium.terminal], axis=1)
    assert float(distance.max()) < 5.0


def test_customers_without_terminal_in_range_do_not_transact() -> None:
    sim = HandbookSimulator(n_customers=200, n_terminals=20, n_days=5, radius=4.0, seed=2)
    txs = sim.transactions()
    d = np.linalg.norm(txs.customer_xy[:, None, :] - txs.terminal_xy[None, :, :], axis=2)
    has_terminal = (d < 4.0).any(axis=1)
    assert not has_terminal.all()  # the setup really has isolated customers
    assert set(np.unique(txs.customer).tolist()) <= set(np.flatnonzero(has_terminal).tolist())
    assert len(txs) > 0


def test_transactions_per_day_follow_the_customer_rate(medium: SimulatedTransactions) -> None:
    per_customer = np.bincount(medium.customer, minlength=500) / 60
    # Rate U(0,4) less the ~3% of times drawn outside the day.
    expected = medium.customer_tx_rate * 0.969
    assert abs(float(per_customer.mean()) - float(expected.mean())) < 0.1
    assert float(np.corrcoef(per_customer, expected)[0, 1]) > 0.95


def test_every_scenario_is_present_with_a_plausible_share(medium: SimulatedTransactions) -> None:
    share = np.bincount(medium.scenario, minlength=4) / len(medium)
    assert all(share[1:] > 0)
    # Scenario 2: ~2 new terminals a day, active 28 days, out of 10,000: 2·min(d+1, 28)/10,000 averages 0.43%.
    assert 0.002 < share[2] < 0.008
    # Scenario 3: 3 of 500 customers a day, for 14 days, 1/3 of their transactions (floored): about 2.2%.
    assert 0.012 < share[3] < 0.035
    assert 0.015 < medium.fraud_share < 0.045
    assert medium.fraud_share == pytest.approx(float(share[1:].sum()))


def test_compromises_concentrate_on_few_terminals_and_customers(medium: SimulatedTransactions) -> None:
    assert len(np.unique(medium.terminal[medium.scenario == 2])) <= 2 * 60
    assert len(np.unique(medium.customer[medium.scenario == 3])) <= 3 * 60


def test_scenario_3_multiplies_the_amount_after_scenario_1() -> None:
    params = {"n_customers": 300, "n_terminals": 2000, "n_days": 40, "seed": 4}
    plain = HandbookSimulator(customer_fraud_amount_factor=1, **params).transactions()
    boosted = HandbookSimulator(**params).transactions()
    np.testing.assert_array_equal(plain.scenario, boosted.scenario)
    hit = boosted.scenario == 3
    np.testing.assert_array_equal(plain.amount[~hit], boosted.amount[~hit])
    ratio = boosted.amount[hit] / plain.amount[hit]
    # ×5 once, or ×25 where two compromise windows of one customer overlapped; rounding to cents blurs it slightly.
    assert bool((np.isclose(ratio, 5, rtol=0.01) | np.isclose(ratio, 25, rtol=0.01)).all())
    # A ×5 amount above 220 stays scenario 3: scenario 1 ran before the multiplication.
    assert bool((boosted.amount[hit] > 220).any())


def test_start_moves_the_calendar() -> None:
    txs = HandbookSimulator(n_customers=20, n_terminals=50, n_days=2, start="2024-06-01").transactions()
    assert txs.start_ms == to_epoch_ms("2024-06-01")
    assert txs.start_ms <= int(txs.ts[0]) and int(txs.ts[-1]) < txs.start_ms + 2 * DAY_MS


def test_events_carry_no_truth_and_pass_the_contract(small_sim: HandbookSimulator) -> None:
    auths = small_sim.authorizations()
    assert any(a.is_fraud for a in auths)
    for auth in auths:
        event = auth.as_event()
        assert set(event) == {"tx_id", "card_id", "merchant_id", "amount", "ts", "currency", "channel"}
        decoded = decode_authorization(encode(event), auth.card_id.encode())
        assert not isinstance(decoded, Rejection), decoded
        assert (decoded.tx_id, decoded.amount, decoded.ts, decoded.currency) == (
            auth.tx_id,
            auth.amount,
            auth.ts,
            "EUR",
        )
        assert type(event["amount"]) is float and type(event["ts"]) is int


def test_truth_lookups_agree_with_the_records(small_sim: HandbookSimulator) -> None:
    txs = small_sim.transactions()
    fraud, card = txs.fraud_lookup(), txs.card_lookup()
    auths = small_sim.authorizations()
    assert len(fraud) == len(auths) == len(card)
    assert all(fraud[a.tx_id] == a.is_fraud and card[a.tx_id] == a.card_id for a in auths)
    assert "tx-1" not in fraud and "nope" not in fraud and txs.tx_id(len(txs)) not in fraud
    assert list(fraud)[:2] == [auths[0].tx_id, auths[1].tx_id]
    with pytest.raises(KeyError):
        fraud[txs.tx_id(len(txs))]


def test_full_handbook_size_matches_the_published_figures() -> None:
    started = time.perf_counter()
    txs = HandbookSimulator().transactions()
    elapsed = time.perf_counter() - started
    # Published: about 1.75M transactions and 0.84% fraud.
    assert 1_700_000 < len(txs) < 1_820_000
    assert 0.0070 < txs.fraud_share < 0.0100
    assert elapsed < 60
