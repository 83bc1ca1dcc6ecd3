"""FastLogistic scores as river's own pipeline does, through learning, unseen and absent features, and pickling; a
Blend of two, as the mean of theirs."""

from __future__ import annotations

import pickle
import random

import pytest

from fraudstream.core.features.catalogue import FEATURE_NAMES
from fraudstream.core.model.factory import make_model
from fraudstream.core.model.linear import Blend, FastLogistic


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


def test_a_blend_scores_the_mean_of_its_models_exactly_through_learning() -> None:
    """Two models in one pass (OnlineModel's separate streams): each model's sum takes its own proba_one's steps, so
    the blend is ``(0.0 + p1 + p2) / 2`` of their own scores exactly, and river's mean to 1e-9; one model alone is
    its own score. A model that learns is folded again, and the blend with it."""
    rng = random.Random(9)
    first, second = make_model("logistic"), make_model("logistic")
    both, alone = Blend([first, second]), Blend([second])
    worst = 0.0
    for i in range(600):
        x = random_features(rng)
        if i % 7 == 0:
            x["seen_by_one_model_only"] = rng.random()
        p1, p2 = first.proba_one(x), second.proba_one(x)
        total = 0.0
        total += p1
        total += p2
        assert both.proba_one(x) == total / 2
        assert alone.proba_one(x) == p2
        river = (first.pipeline.predict_proba_one(x)[True] + second.pipeline.predict_proba_one(x)[True]) / 2
        worst = max(worst, abs(both.proba_one(x) - river))
        # They learn apart (a feedback stream and a delayed one): sometimes one, sometimes the other.
        if rng.random() < 0.3:
            (first if rng.random() < 0.5 else second).learn_one(x, rng.random() < 0.3, w=rng.choice((1.0, 0.2)))
    assert worst < 1e-9
    with pytest.raises(ValueError):
        Blend([])


def test_features_in_another_order_or_under_other_name_objects_score_the_same() -> None:
    """The blend knows each feature by its place in the last dict scored (linear._Layout): a dict in another order,
    with names missing, or under equal names that are other string objects, is looked up again."""
    rng = random.Random(10)
    model = make_model("logistic")
    for _ in range(300):
        x = random_features(rng)
        model.learn_one(x, rng.random() < 0.3)
    x = {k: v for k, v in random_features(rng).items() if v is not None}
    expected = model.pipeline.predict_proba_one(x)[True]
    shuffled = list(x.items())
    rng.shuffle(shuffled)
    copies = {"".join(list(k)): v for k, v in x.items()}  # equal names, other objects
    assert all(a is not b for a, b in zip(copies, x, strict=True))
    for variant in (x, dict(shuffled), dict(shuffled[5:]), copies, x):
        want = model.pipeline.predict_proba_one(variant)[True]
        assert abs(model.proba_one(variant) - want) < 1e-12
    assert model.proba_one(x) == model.proba_one(dict(x))
    assert abs(model.proba_one(x) - expected) < 1e-12
