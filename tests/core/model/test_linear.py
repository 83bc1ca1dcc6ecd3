"""FastLogistic scores as river's own pipeline does, through learning, unseen and absent features, and pickling."""

from __future__ import annotations

import pickle
import random

from fraudstream.core.features.catalogue import FEATURE_NAMES
from fraudstream.core.model.factory import make_model
from fraudstream.core.model.linear import FastLogistic


def random_features(rng: random.Random) -> dict[str, float | None]:
    x: dict[str, float | None] = {}
    for name in FEATURE_NAMES:
        r = rng.random()
        if r < 0.03:
            continue  # absent
        x[name] = None if r < 0.05 else (0.0 if r < 0.1 else rng.lognormvariate(2, 2) * rng.choice((1, 1, 1, -1)))
    x["constant"] = 7.0  # no variance: river's scaler maps it to 0.0
    return x


def test_the_folded_score_equals_rivers_through_learning() -> None:
    rng = random.Random(7)
    model = make_model("logistic")
    assert isinstance(model, FastLogistic)
    worst = 0.0
    for i in range(1000):
        x = random_features(rng)
        if i % 10 == 0:
            x["unseen_so_far"] = rng.random()  # a feature river has no weight for yet
        fast, slow = model.proba_one(x), model.pipeline.predict_proba_one(x)[True]
        worst = max(worst, abs(fast - slow))
        if rng.random() < 0.3:
            model.learn_one(x, rng.random() < 0.2 + 0.1 * (x.get("amount") or 0 > 50), w=rng.choice((1.0, 0.2)))
    assert worst < 1e-9


def test_a_checkpoint_holds_the_pipeline_and_scores_the_same_after_loading() -> None:
    rng = random.Random(8)
    model = make_model("logistic")
    for _ in range(200):
        model.learn_one(random_features(rng), rng.random() < 0.3)
    x = random_features(rng)
    before = model.proba_one(x)
    loaded = pickle.loads(pickle.dumps(model))
    assert loaded.proba_one(x) == before and loaded.predict_proba_one(x) == {False: 1.0 - before, True: before}
