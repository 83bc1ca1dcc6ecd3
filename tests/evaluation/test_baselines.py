"""The Handbook baselines: feature windows by hand and by brute force, the protocol, and an end-to-end run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest

from fraudstream.evaluation import (
    DAY_MS,
    FEATURES,
    PUBLISHED,
    Protocol,
    Transactions,
    baseline_features,
    baseline_reports,
    evaluate,
    known_by_label,
    run_baselines,
)

H = 3_600_000
D0 = 1_533_686_400_000  # Wednesday 2018-08-08T00:00Z
COL = {name: i for i, name in enumerate(FEATURES)}

# (tx_id, card_id, merchant_id, amount, ts, is_fraud), in time order
TINY = [
    ("t1", "c1", "m1", 10.0, D0 - 10 * DAY_MS + 1 * H, 1),  # Sunday 01:00
    ("t2", "c2", "m1", 20.0, D0 - 9 * DAY_MS + 7 * H - 1000, 0),  # Monday 06:59:59
    ("t3", "c1", "m2", 30.0, D0 - 8 * DAY_MS + 12 * H, 0),
    ("tA", "c2", "m1", 25.0, D0 - 3 * DAY_MS + 2 * H, 0),  # Sunday 02:00
    ("t4", "c1", "m1", 40.0, D0 + 10 * H, 0),
    ("t5", "c1", "m1", 50.0, D0 + 20 * H, 0),
    ("t6", "c1", "m1", 60.0, D0 + DAY_MS + 11 * H, 0),
    ("t7", "c1", "m1", 70.0, D0 + DAY_MS + 20 * H, 0),  # exactly one day after t5
]


@pytest.fixture(scope="module")
def tiny() -> dict[str, dict[str, float]]:
    x = baseline_features(TINY)
    return {row[0]: dict(zip(FEATURES, x[i].tolist(), strict=True)) for i, row in enumerate(TINY)}


def test_feature_names_follow_the_handbook_order() -> None:
    assert len(FEATURES) == 15
    assert FEATURES[:5] == ("amount", "weekend", "night", "card_count_1d", "card_mean_amount_1d")
    assert FEATURES[-2:] == ("terminal_count_30d", "terminal_fraud_rate_30d")


def test_amount_weekend_and_night_flags(tiny: dict[str, dict[str, float]]) -> None:
    assert [tiny[t]["amount"] for t in ("t1", "t4")] == [10.0, 40.0]
    assert [tiny[t]["weekend"] for t in ("t1", "t2", "tA", "t4")] == [1.0, 0.0, 1.0, 0.0]
    assert [tiny[t]["night"] for t in ("t1", "t2", "t3", "t4")] == [1.0, 1.0, 0.0, 0.0]  # hour <= 6


def test_card_windows_include_the_current_transaction(tiny: dict[str, dict[str, float]]) -> None:
    one_day = {t: (tiny[t]["card_count_1d"], tiny[t]["card_mean_amount_1d"]) for t in tiny}
    assert one_day["t1"] == (1, 10.0)
    assert one_day["t3"] == (1, 30.0)  # t1 is two days back
    assert one_day["t5"] == (2, 45.0)  # t4, t5
    assert one_day["t6"] == (2, 55.0)  # t5, t6; t4 is 25 h back
    assert one_day["t7"] == (2, 65.0)  # t6, t7; t5 is exactly 24 h back and the window is (t - 1d, t]
    assert (tiny["t3"]["card_count_7d"], tiny["t3"]["card_mean_amount_7d"]) == (2, 20.0)
    assert (tiny["t4"]["card_count_7d"], tiny["t4"]["card_mean_amount_7d"]) == (1, 40.0)
    assert tiny["t4"]["card_count_30d"] == 3
    assert tiny["t4"]["card_mean_amount_30d"] == pytest.approx(80 / 3)
    assert (tiny["tA"]["card_count_30d"], tiny["tA"]["card_mean_amount_30d"]) == (2, 22.5)  # c2 is separate


def test_terminal_windows_sit_behind_the_delay(tiny: dict[str, dict[str, float]]) -> None:
    # tA: window (t-8d, t-7d] holds t1 (fraud) only.
    assert (tiny["tA"]["terminal_count_1d"], tiny["tA"]["terminal_fraud_rate_1d"]) == (1, 1.0)
    assert (tiny["tA"]["terminal_count_7d"], tiny["tA"]["terminal_fraud_rate_7d"]) == (1, 1.0)
    # t4: nothing in (t-8d, t-7d]; t1 and t2 in (t-14d, t-7d]; tA is too recent to have a label.
    assert (tiny["t4"]["terminal_count_1d"], tiny["t4"]["terminal_fraud_rate_1d"]) == (0, 0.0)
    assert (tiny["t4"]["terminal_count_7d"], tiny["t4"]["terminal_fraud_rate_7d"]) == (2, 0.5)
    assert (tiny["t4"]["terminal_count_30d"], tiny["t4"]["terminal_fraud_rate_30d"]) == (2, 0.5)
    # Other terminal, and a terminal's own recent fraud never leaks into its features.
    assert tiny["t3"]["terminal_count_30d"] == 0
    assert tiny["t1"]["terminal_fraud_rate_30d"] == 0.0


def _brute_force(cols: dict[str, np.ndarray], windows: tuple[int, ...] = (1, 7, 30), delay: int = 7) -> np.ndarray:
    card, terminal, amount, ts, fraud = (cols[c] for c in ("card_id", "merchant_id", "amount", "ts", "is_fraud"))
    out = []
    for i in range(ts.size):
        row = [amount[i], float(dt.datetime.fromtimestamp(ts[i] / 1000, dt.UTC).weekday() >= 5)]
        row.append(float(dt.datetime.fromtimestamp(ts[i] / 1000, dt.UTC).hour <= 6))
        for w in windows:
            mine = [j for j in range(i + 1) if card[j] == card[i] and ts[j] > ts[i] - w * DAY_MS]
            row += [len(mine), float(np.mean(amount[mine]))]
        for w in windows:
            lo, hi = ts[i] - (delay + w) * DAY_MS, ts[i] - delay * DAY_MS
            seen = [j for j in range(ts.size) if terminal[j] == terminal[i] and lo < ts[j] <= hi]
            row += [len(seen), float(np.mean(fraud[seen])) if seen else 0.0]
        out.append(row)
    return np.array(out)


def test_features_match_brute_force_with_tied_timestamps() -> None:
    rng = np.random.default_rng(3)
    n = 400
    ts = np.sort(D0 + rng.integers(0, 60, n) * (DAY_MS // 2))  # coarse times: many exact ties and edges
    cols = {
        "card_id": rng.integers(0, 8, n),
        "merchant_id": rng.choice(["x", "y", "z"], n),
        "amount": rng.uniform(1, 100, n).round(2),
        "ts": ts,
        "is_fraud": rng.random(n) < 0.3,
    }
    np.testing.assert_allclose(baseline_features(cols), _brute_force(cols), rtol=1e-9)


def test_transactions_accept_tuples_objects_and_unsorted_rows() -> None:
    from_tuples = baseline_features(TINY)
    names = ("tx_id", "card_id", "merchant_id", "amount", "ts", "is_fraud")
    objects = [SimpleNamespace(**dict(zip(names, row, strict=True))) for row in TINY]
    np.testing.assert_array_equal(baseline_features(objects), from_tuples)
    shuffled = TINY[::-1]
    tx = Transactions.of(shuffled)
    assert tx.ts.tolist() == sorted(r[4] for r in TINY)
    np.testing.assert_array_equal(baseline_features(tx), from_tuples)
    assert baseline_features([]).shape == (0, 15)


def test_protocol_weeks() -> None:
    p = Protocol.ending("2018-08-08")
    assert p.train_start == dt.date(2018, 7, 25)
    assert p.test_dates == tuple(dt.date(2018, 8, d) for d in range(8, 15))
    ts = np.array([D0 - 14 * DAY_MS - 1, D0 - 14 * DAY_MS, D0 - 7 * DAY_MS - 1, D0 - 7 * DAY_MS, D0, D0 + 7 * DAY_MS])
    assert p.train_mask(ts).tolist() == [False, True, True, False, False, False]
    assert p.test_mask(ts).tolist() == [False, False, False, False, True, False]


def test_labels_are_known_delay_days_later_from_the_training_week_on() -> None:
    p = Protocol.ending("2018-08-08")
    train0 = D0 - 14 * DAY_MS
    rows = [
        ("t0", "old", "m", 1.0, train0 - 1, 1),  # before the training week: the Handbook ignores it
        ("t1", "a", "m", 1.0, train0 + 23 * H, 1),  # day 07-25, so known from 08-02 on
        ("t2", "a", "m", 1.0, train0 + 30 * H, 1),  # a later fraud does not move the first
        ("t3", "b", "m", 1.0, train0 + 3 * DAY_MS, 0),
    ]
    tx = Transactions.of(rows)
    known = known_by_label(tx, p)
    assert {tx.cards[c]: at for c, at in known.items()} == {"a": train0 + 23 * H + 7 * DAY_MS}
    # Day 07-25 + 7 = 08-01 still counts "a"; 08-02 drops it.
    a = int(np.flatnonzero(tx.cards == "a")[0])
    day = train0 + 7 * DAY_MS
    records = [(a, day, 0.9, 1), (a, day + DAY_MS, 0.9, 1)]
    assert [r.transactions for r in evaluate(records, k=1, fraud_known_at=known).days] == [1, 0]


def test_published_figures() -> None:
    assert PUBLISHED["logistic_regression"] == {"auc": 0.871, "ap": 0.606, "cp100": 0.291}
    assert PUBLISHED["random_forest"] == {"auc": 0.867, "ap": 0.658, "cp100": 0.287}
    assert PUBLISHED["xgboost"] == {"auc": 0.862, "ap": 0.639, "cp100": 0.273}
    assert PUBLISHED["xgboost_selected"] == {"auc": 0.869, "ap": 0.687, "cp100": 0.303}
    assert PUBLISHED["random"] == {"auc": 0.5, "ap": 0.007, "cp100": 0.017}


def test_run_baselines_end_to_end(handbook_data: Callable[..., dict[str, np.ndarray]]) -> None:
    pytest.importorskip("sklearn")
    # Planted signal: terminals compromised until day 40 stay so through the test week (days 49-55),
    # long enough for their delayed fraud rate to show; customers' x5 frauds add a weaker one.
    data = handbook_data(
        n_customers=600,
        n_terminals=1_200,
        n_days=60,
        terminals_per_day=1,
        customers_per_day=1,
        terminal_compromise_days=60,
        last_compromise_day=40,
    )
    results = run_baselines(data, test_start="2018-05-20", k=20)
    assert set(results) == {"logistic_regression", "random_forest", "random"}
    for name in ("logistic_regression", "random_forest"):
        assert results[name]["auc"] > 0.8, results
        assert results[name]["ap"] > 10 * results["random"]["ap"], results
        assert results[name]["cp20"] > 2 * results["random"]["cp20"], results
    assert 0.35 < results["random"]["auc"] < 0.65
    assert set(results["random"]) == {"auc", "ap", "cp20"}

    report = baseline_reports(data, test_start="2018-05-20", k=20, models=("logistic_regression",))
    lr = report["logistic_regression"]
    assert [r.day for r in lr.days] == [dt.date(2018, 5, d) for d in range(20, 27)]
    assert lr.cp_at_k > 0.8 * lr.cp_ceiling  # most not-yet-known compromised cards are found


def test_run_baselines_rejects_an_empty_week() -> None:
    pytest.importorskip("sklearn")
    with pytest.raises(ValueError, match="no transactions"):
        run_baselines(TINY, test_start="2020-01-01", models=("random",))
    with pytest.raises(ValueError, match="unknown models"):
        run_baselines(TINY, models=("xgboost",))
