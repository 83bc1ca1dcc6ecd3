import pickle
import random
from typing import Any

import pytest

from fraudstream.core.model.bands import FEATURE, PRIOR_EXAMPLES, AmountBandOdds
from fraudstream.core.model.online import OnlineModel, TrainingExample


def test_a_band_seen_a_few_times_says_little_and_one_seen_often_says_much() -> None:
    odds = AmountBandOdds()
    for i in range(1_000):  # as learned: legitimate examples undersampled, fraud about a third
        odds.learn(2_000.0, False, 1.0) if i % 3 else odds.learn(500.0, True, 1.0)
    odds.learn(40_000.0, True, 1.0)
    few = odds.value(40_000.0)
    for _ in range(30):
        odds.learn(40_000.0, True, 1.0)
    assert 0.0 < few < 1.0 < odds.value(40_000.0)
    assert odds.value(2_000.0) < 0.0  # all legitimate there


def test_weights_count_as_examples() -> None:
    light, heavy = AmountBandOdds(), AmountBandOdds()
    for odds in (light, heavy):
        for _ in range(500):
            odds.learn(2_000.0, False, 1.0)
    for _ in range(10):
        light.learn(9_000.0, True, 0.2)
    heavy.learn(9_000.0, True, 2.0)
    assert light.value(9_000.0) == pytest.approx(heavy.value(9_000.0))


def test_no_amount_is_neither_learned_nor_scored() -> None:
    odds = AmountBandOdds()
    for amount in (None, 0.0, -5.0):
        odds.learn(amount, True, 1.0)
        assert odds.value(amount) == 0.0
    assert odds.bands == {} and odds.fraud == 0.0


def test_the_prior_keeps_every_value_finite() -> None:
    odds = AmountBandOdds()
    odds.learn(10.0, True, 1.0)  # the only example: fraud
    assert odds.value(10.0) == pytest.approx(0.0, abs=1.0) and PRIOR_EXAMPLES > 0


def _example(i: int, amount: float, fraud: bool) -> TrainingExample:
    return TrainingExample(f"t{i}", {"amount": amount, "is_night": 0.0}, fraud, 1.0, "chargeback", 0)


def test_the_model_ranks_a_fraudulent_middle_band_above_both_ends() -> None:
    """Fraud between ordinary small and large amounts: a shape no weight on log(amount) can draw."""
    rng = random.Random(3)
    m = OnlineModel("logistic", "pooled", min_per_class=5)
    for i in range(3_000):
        kind = rng.random()
        if kind < 0.1:
            m.learn(_example(i, rng.uniform(4_800.0, 5_200.0), True))
        else:
            m.learn(_example(i, rng.choice((rng.uniform(80.0, 120.0), rng.uniform(280_000.0, 320_000.0))), False))
    middle = m.score({"amount": 5_000.0, "is_night": 0.0})
    assert middle > m.score({"amount": 100.0, "is_night": 0.0})
    assert middle > m.score({"amount": 300_000.0, "is_night": 0.0})


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def learn_one(self, x: dict[str, Any], y: bool, w: float = 1.0) -> None:
        self.seen.append(dict(x))


def test_an_example_is_learned_with_the_odds_before_its_own_label_counts() -> None:
    m = OnlineModel("logistic", "pooled")
    recorder = _Recorder()
    m.models["pooled"] = recorder
    for i in range(20):
        m.learn(_example(i, 7_000.0, True))
    # Its own label never in its feature: the first saw an unknown band, each next one what came before it.
    assert recorder.seen[0][FEATURE] == 0.0
    values = [x[FEATURE] for x in recorder.seen]
    assert values == sorted(values) and values[-1] < m.model_input({"amount": 7_000.0})[FEATURE]


def test_scoring_leaves_the_features_as_they_were() -> None:
    m = OnlineModel("logistic", "pooled", min_per_class=2)
    for i in range(10):
        m.learn(_example(i, 100.0 if i % 2 else 9_000.0, bool(i % 2 == 0)))
    features = {"amount": 9_000.0, "is_night": 1.0}
    m.score(features)
    m.explain(features)
    assert features == {"amount": 9_000.0, "is_night": 1.0}


def test_checkpoints_keep_the_bands_and_older_ones_start_them_empty() -> None:
    m = OnlineModel("logistic", "pooled")
    for i in range(10):
        m.learn(_example(i, 9_000.0, True))
    again = OnlineModel.from_bytes(m.to_bytes())
    assert again.model_input({"amount": 9_000.0}) == m.model_input({"amount": 9_000.0})
    state = m.__getstate__()
    del state["amount_bands"]  # a checkpoint written before the band odds
    older = OnlineModel.__new__(OnlineModel)
    older.__setstate__(pickle.loads(pickle.dumps(state)))
    assert older.amount_bands.bands == {} and older.model_input({"amount": 9_000.0})[FEATURE] == 0.0


def test_a_bands_value_follows_every_example_learned() -> None:
    """Values are kept between examples (every authorization asks): each one learned changes them all."""
    odds, fresh = AmountBandOdds(), AmountBandOdds()
    for i in range(40):
        fraud = i % 4 == 0
        for o in (odds, fresh):
            o.learn(100.0 if fraud else 3_000.0, fraud, 1.0)
        assert odds.value(100.0) == pickle.loads(pickle.dumps(fresh)).value(100.0)  # a checkpoint keeps no values
        assert odds.value(3_000.0) == pickle.loads(pickle.dumps(fresh)).value(3_000.0)
