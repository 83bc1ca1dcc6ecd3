"""LegitimateTails: hinges at the legitimate examples' high percentiles, none for flags, none before warm-up; and
FastLogistic scoring both pipelines, with and without it, as river does."""

from __future__ import annotations

import math
import random

from river import compose, linear_model, optim, preprocessing

from fraudstream.core.model.linear import FastLogistic
from fraudstream.core.model.squash import squash
from fraudstream.core.model.tails import WARMUP, LegitimateTails, hinge_name


def test_the_knots_come_from_legitimate_examples_only() -> None:
    tails = LegitimateTails()
    rng = random.Random(1)
    for _ in range(2000):
        tails.learn_one({"amount": rng.uniform(0, 100)}, False)
        tails.learn_one({"amount": 10_000.0}, True)  # frauds far out: they must not move the knots
    knots = dict(tails.knots()["amount"])
    assert 97 < knots[hinge_name("amount", 0.99)] <= 100
    assert knots[hinge_name("amount", 0.99)] <= knots[hinge_name("amount", 0.999)] <= 100
    x = tails.transform_one({"amount": 150.0})
    assert 49 < x["amount>q99"] < 53 and x["amount>q99.9"] <= x["amount>q99"]
    assert tails.transform_one({"amount": 50.0})["amount>q99"] == 0.0


def test_only_amount_and_pace_have_tails_and_no_hinge_before_warm_up() -> None:
    tails = LegitimateTails()
    for i in range(WARMUP - 1):
        tails.learn_one({"amount": float(i), "is_atm": float(i % 2)}, False)
    assert tails.transform_one({"amount": 500.0, "is_atm": 1.0}) == {"amount": 500.0, "is_atm": 1.0}
    tails.learn_one({"amount": 1.0, "is_atm": 0.0}, False)
    assert set(tails.transform_one({"amount": 500.0, "is_atm": 1.0})) == {"amount", "amount>q99", "amount>q99.9", "is_atm"}
    assert tails.transform_one({"is_atm": 1.0}) == {"is_atm": 1.0}  # an absent feature gets no hinge either


def test_a_ratio_is_measured_on_a_log_scale() -> None:
    # squash leaves a ratio as it is: its tail is measured on log1p of it, as squash's log-scaled features are.
    tails = LegitimateTails()
    for i in range(1000):
        tails.learn_one({"card_amount_ratio_30d": 0.5 + (i % 100) / 100}, False)  # 0.5 .. 1.49
    x = tails.transform_one({"card_amount_ratio_30d": 30.0})
    assert abs(x["card_amount_ratio_30d>q99"] - (math.log1p(30.0) - math.log1p(1.48))) < 0.02


def _pipeline(with_tails: bool) -> compose.Pipeline:
    steps = [compose.FuncTransformer(squash), *([LegitimateTails()] if with_tails else []), preprocessing.StandardScaler(),
             linear_model.LogisticRegression(optimizer=optim.SGD(0.05))]
    return compose.Pipeline(*steps)


def test_fast_scoring_equals_rivers_with_and_without_tails() -> None:
    # Without: the pipeline of checkpoints written before LegitimateTails.
    for with_tails in (True, False):
        rng = random.Random(3)
        model = FastLogistic(_pipeline(with_tails))
        worst = 0.0
        for i in range(1500):
            fraud = rng.random() < 0.1
            x = {"amount": rng.lognormvariate(3 + 2 * fraud, 1), "card_count_24h": float(rng.randint(1, 9)),
                 "card_amount_ratio_30d": rng.lognormvariate(fraud, 1), "is_night": float(rng.random() < 0.2)}
            if i % 7 == 0:
                del x["card_count_24h"]
            worst = max(worst, abs(model.proba_one(x) - model.pipeline.predict_proba_one(x)[True]))
            model.learn_one(x, fraud)
        assert worst < 1e-9
        assert model.proba_one({"amount": 5000.0}) > model.proba_one({"amount": 20.0})
        # The regression learned the hinges: river passed them on while learning, not only while predicting.
        hinges = {name for name in model.pipeline.steps["LogisticRegression"].weights if ">q" in name}
        assert hinges == ({"amount>q99", "amount>q99.9", "card_count_24h>q99", "card_count_24h>q99.9", "card_amount_ratio_30d>q99",
                           "card_amount_ratio_30d>q99.9"} if with_tails else set())
