"""The online model: learning direction, versions, checkpoints, label streams, cold start, explanations."""

from __future__ import annotations

import pickle
import random
import zlib

import pytest

from fraudstream.core.model.factory import make_model, squash
from fraudstream.core.model.online import (
    FEEDBACK_SOURCES,
    OnlineModel,
    TrainingExample,
    cold_start_score,
    keep_legitimate,
)

PROBES = [
    {"amount": 100.0, "card_amount_ratio_30d": 1.0, "card_count_1h": 1.0, "is_night": 0.0},
    {"amount": 900.0, "card_amount_ratio_30d": 9.0, "card_count_1h": 4.0, "is_night": 1.0},
    {"amount": 40.0, "card_amount_ratio_30d": 0.7, "card_count_1h": 2.0, "is_night": 1.0},
]


def example(rng: random.Random, i: int, fraud: bool, source: str = "customer_report") -> TrainingExample:
    """Fraud buys big for the card (ratio 4-12), legitimate traffic near the card's mean."""
    ratio = rng.uniform(4, 12) if fraud else rng.uniform(0.5, 1.5)
    x = {
        "amount": rng.uniform(10, 200) * (ratio if fraud else 1.0),
        "card_amount_ratio_30d": ratio,
        "card_count_1h": float(rng.randint(1, 3)),
        "is_night": float(rng.random() < 0.2),
    }
    return TrainingExample(f"t{i}", x, fraud, 1.0, source, 1_700_000_000_000 + i)


def trained(streams: str = "pooled", n: int = 1500, seed: int = 1, source: str = "customer_report") -> OnlineModel:
    rng = random.Random(seed)
    m = OnlineModel("logistic", streams, min_per_class=5)
    for i in range(n):
        m.learn(example(rng, i, i % 5 == 0, source))
    return m


def test_learning_moves_scores_in_the_right_direction() -> None:
    m = trained()
    assert m.score(PROBES[1]) > 0.9 and m.score(PROBES[0]) < 0.3  # 20% of the examples were fraud
    x = {"amount": 150.0, "card_amount_ratio_30d": 3.0, "card_count_1h": 2.0, "is_night": 1.0}  # in between
    before = m.score(x)
    for _ in range(5):
        m.learn(TrainingExample("f", x, True, 1.0, "analyst", 0))
    raised = m.score(x)
    assert raised > before
    for _ in range(10):
        m.learn(TrainingExample("g", x, False, 1.0, "analyst", 0))
    assert m.score(x) < raised


def test_version_counts_examples() -> None:
    m = OnlineModel("logistic", "separate")
    assert m.version == "logistic-0"
    rng = random.Random(2)
    for i in range(7):
        m.learn(example(rng, i, i % 2 == 0, "analyst" if i < 3 else "chargeback"))
    assert m.version == "logistic-7"
    assert m.learned == {"feedback": 3, "delayed": 4}
    assert m.classes == {"feedback": [1, 2], "delayed": [2, 2]}


def test_checkpoint_round_trip_gives_identical_scores() -> None:
    m = trained("separate", seed=3)
    rng = random.Random(9)
    for i in range(40):
        m.learn(example(rng, 1000 + i, i % 4 == 0, "analyst"))
    copy = OnlineModel.from_bytes(m.to_bytes())
    assert copy.version == m.version and copy.streams == "separate"
    for x in PROBES:
        assert copy.score(x) == m.score(x)
        assert copy.explain(x) == m.explain(x)
    # Both go on learning the same way.
    for i in range(20):
        ex = example(rng, 2000 + i, i % 3 == 0, "chargeback")
        m.learn(ex)
        copy.learn(ex)
    assert [copy.score(x) for x in PROBES] == [m.score(x) for x in PROBES]


def test_a_checkpoint_must_hold_a_model() -> None:
    with pytest.raises(ValueError, match="OnlineModel"):
        OnlineModel.from_bytes(zlib.compress(pickle.dumps({"not": "a model"})))


def test_separate_streams_average_a_feedback_and_a_delayed_model() -> None:
    rng = random.Random(4)
    feedback = [example(rng, i, i % 4 == 0, "analyst") for i in range(200)]
    delayed = [example(rng, 500 + i, i % 6 == 0, "chargeback") for i in range(200)]
    separate, pooled, only_feedback = (OnlineModel("logistic", s, min_per_class=5) for s in ("separate", "pooled", "pooled"))
    for ex in feedback:
        separate.learn(ex)
        pooled.learn(ex)
        only_feedback.learn(ex)
    # Only feedback so far: the delayed model has learned nothing, the score is the feedback model's.
    assert separate.learned == {"feedback": 200, "delayed": 0}
    for x in PROBES:
        assert separate.score(x) == pytest.approx(only_feedback.score(x), abs=1e-12)
    for ex in delayed:
        separate.learn(ex)
        pooled.learn(ex)
    assert separate.learned == {"feedback": 200, "delayed": 200} and pooled.learned == {"pooled": 400}
    for x in PROBES:
        fb = separate.models["feedback"].predict_proba_one(separate.model_input(x))[True]
        dl = separate.models["delayed"].predict_proba_one(separate.model_input(x))[True]
        assert separate.score(x) == pytest.approx((fb + dl) / 2, abs=1e-12)
    assert [separate.score(x) for x in PROBES] != [pooled.score(x) for x in PROBES]


def test_the_ready_models_score_in_one_pass_exactly_as_each_alone() -> None:
    """Scored in one pass over the features (linear.Blend): the same floats as each model's own score, averaged."""
    m = trained("separate", seed=5)
    rng = random.Random(5)
    for i in range(300):
        m.learn(example(rng, 3000 + i, i % 3 == 0, "analyst"))
    for x in [*PROBES, {**PROBES[1], "unknown_feature": 3.0, "is_night": None}]:
        total = 0.0
        total += m.models["feedback"].predict_proba_one(m.model_input(x))[True]
        total += m.models["delayed"].predict_proba_one(m.model_input(x))[True]
        assert m.score(x) == total / 2
    assert "_blend" not in m.__getstate__()  # derived: a checkpoint holds what learned


def test_stream_of_each_source() -> None:
    assert FEEDBACK_SOURCES == {"analyst", "investigator"}
    m = OnlineModel("logistic", "separate")
    assert [m._stream(s) for s in ("analyst", "investigator", "customer_report", "chargeback", "maturity")] == [
        "feedback", "feedback", "delayed", "delayed", "delayed"]
    assert OnlineModel("logistic", "pooled")._stream("analyst") == "pooled"
    ex = TrainingExample("t", {"amount": 1.0}, True, 2.0, "investigator", 5)
    assert ex.as_dict()["stream"] == "feedback"
    assert TrainingExample("t", {}, False, 1.0, "maturity", 5).as_dict()["stream"] == "delayed"
    assert TrainingExample.from_dict(ex.as_dict()) == ex


def test_cold_start_until_both_classes_are_seen() -> None:
    m = OnlineModel("logistic", "pooled", min_per_class=5)
    rng = random.Random(6)
    for i in range(50):  # delayed labels before anything matured: all fraud
        m.learn(example(rng, i, True))
        assert not m.ready
        assert [m.score(x) for x in PROBES] == [cold_start_score(x) for x in PROBES]
    for i in range(4):
        m.learn(example(rng, 100 + i, False))
    assert not m.ready and m.score(PROBES[1]) == cold_start_score(PROBES[1])
    m.learn(example(rng, 200, False))  # the fifth legitimate example
    assert m.ready
    assert m.score(PROBES[1]) == m.models["pooled"].predict_proba_one(m.model_input(PROBES[1]))[True]
    assert m.score(PROBES[1]) != cold_start_score(PROBES[1])


def test_with_separate_streams_the_ready_one_scores_alone() -> None:
    m = OnlineModel("logistic", "separate", min_per_class=3)
    rng = random.Random(7)
    for i in range(20):
        m.learn(example(rng, i, i % 2 == 0, "analyst"))
    for i in range(10):
        m.learn(example(rng, 100 + i, True, "chargeback"))  # delayed: fraud only, not ready
    x = PROBES[2]
    assert m.score(x) == m.models["feedback"].predict_proba_one(m.model_input(x))[True]


def test_cold_start_score_ranks_unusual_authorizations_higher() -> None:
    base = {"card_amount_ratio_30d": 1.0, "card_amount_zscore_30d": 0.0, "card_count_1h": 1.0}
    assert cold_start_score(base) == 0.0
    scores = [cold_start_score({**base, "card_amount_ratio_30d": r}) for r in (1.0, 2.0, 8.0, 50.0)]
    assert scores == sorted(scores) and len(set(scores)) == 4 and scores[-1] < 1.0
    assert cold_start_score({**base, "card_count_1h": 6.0}) > cold_start_score(base)
    assert cold_start_score({**base, "merchant_fraud_rate_30d": 0.2}) > 0.0
    # z/(1+z) of the terms, by hand: 0.5*ln 4 + 3/10 + 2*0.3 + 5*0.1 + 2*0.5
    x = {"card_amount_ratio_30d": 4.0, "card_amount_zscore_30d": 3.0, "card_count_1h": 4.0,
         "merchant_fraud_rate_30d": 0.1, "merchant_cpp_share": 0.5}
    z = 0.5 * 1.3862943611198906 + 0.3 + 0.6 + 0.5 + 1.0
    assert cold_start_score(x) == pytest.approx(z / (1 + z))


def test_explain_names_the_feature_that_drives_the_score() -> None:
    m = trained()
    x = {"amount": 100.0, "card_amount_ratio_30d": 50.0, "card_count_1h": 2.0, "is_night": 0.0}
    top = m.explain(x)
    assert top and top[0].feature == "card_amount_ratio_30d"
    assert top[0].value == 50.0 and top[0].effect > 0.3
    assert all(c.effect > 0 for c in top) and len(top) <= 3
    assert [c.effect for c in top] == sorted((c.effect for c in top), reverse=True)
    # An ordinary authorization has nothing pushing it up much.
    assert all(c.effect < 0.05 for c in m.explain(PROBES[0]))


def test_explain_before_the_model_is_ready_uses_the_cold_start_terms() -> None:
    m = OnlineModel("logistic", "pooled")
    x = {"card_amount_ratio_30d": 40.0, "card_amount_zscore_30d": 2.0, "card_count_1h": 3.0, "merchant_cpp_share": 0.0}
    top = m.explain(x)
    assert [c.feature for c in top] == ["card_amount_ratio_30d", "card_count_1h", "card_amount_zscore_30d"]
    assert top[0].effect == pytest.approx(0.5 * 3.6888794541139363)
    assert m.explain({"card_amount_ratio_30d": 1.0}) == []  # nothing unusual, nothing to say


def test_usual_values_come_from_every_example() -> None:
    m = OnlineModel("logistic", "pooled")
    assert m.usual("amount") is None
    for i, a in enumerate((10.0, 20.0, 60.0)):
        m.learn(TrainingExample(f"t{i}", {"amount": a}, i == 2, 1.0, "analyst", 0))
    assert m.usual("amount") == pytest.approx(30.0)


def test_keep_legitimate_is_a_deterministic_share() -> None:
    ids = [f"tx-{i:06d}" for i in range(20_000)]
    kept = [t for t in ids if keep_legitimate(t, 0.1)]
    assert 0.09 < len(kept) / len(ids) < 0.11
    assert kept == [t for t in ids if keep_legitimate(t, 0.1)]
    assert kept == [t for t in ids if zlib.crc32(t.encode()) < 0.1 * 2**32]
    assert not any(keep_legitimate(t, 0.0) for t in ids[:1000])
    assert all(keep_legitimate(t, 1.0) for t in ids[:1000])
    assert set(kept) <= {t for t in ids if keep_legitimate(t, 0.5)}  # a higher rate keeps a superset


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="streams"):
        OnlineModel("logistic", "mixed")
    with pytest.raises(ValueError, match="unknown model"):
        make_model("svm")


def test_squash_logs_heavy_tails_only() -> None:
    out = squash({"amount": 99.0, "card_count_1h": 0.0, "card_amount_ratio_30d": 9.0, "card_amount_zscore_30d": 3.0,
                  "is_night": 1.0, "card_seconds_since_prev": -1.0, "gone": None})
    assert out == pytest.approx({"amount": 4.605170185988092, "card_count_1h": 0.0, "card_amount_ratio_30d": 9.0,
                                 "card_amount_zscore_30d": 3.0, "is_night": 1.0, "card_seconds_since_prev": -1.0})


def test_the_forest_model_learns_and_checkpoints() -> None:
    rng = random.Random(8)
    m = OnlineModel("forest", "pooled", min_per_class=5)
    for i in range(120):
        m.learn(example(rng, i, i % 3 == 0))
    assert m.version == "forest-120" and m.ready
    assert m.score(PROBES[1]) > m.score(PROBES[0])
    assert OnlineModel.from_bytes(m.to_bytes()).score(PROBES[1]) == m.score(PROBES[1])


def test_scoring_the_callers_own_dict_gives_the_same_float_and_leaves_it_as_it_was() -> None:
    """``copy=False`` (the scorer's path): the band's feature added for the call only, the dict unchanged after."""
    m = trained("separate", seed=7)
    rng = random.Random(7)
    for i in range(300):
        m.learn(example(rng, 3000 + i, i % 3 == 0, "analyst"))
    for x in [*PROBES, {**PROBES[1], "unknown_feature": 3.0}, {"is_night": 1.0}]:
        own = {**x, "late": 0.0}
        del own["late"]  # a dict with a deleted entry, as the scorer's (card_features' "late" removed)
        before = list(own.items())
        assert m.score(own, copy=False) == m.score(own)
        assert list(own.items()) == before


def test_explain_occludes_each_feature_as_scoring_a_copy_would() -> None:
    """Each effect is the score's drop with that feature at its usual value, the amount's band following the amount."""
    m = trained("separate", seed=9)
    for x in PROBES:
        base = m.score(x)
        expected = {}
        for name in x:
            usual = m.usual(name)
            if usual is not None:
                expected[name] = base - m.score({**x, name: usual})
        got = {c.feature: c.effect for c in m.explain(x, top=len(x))}
        # One step from the sums, not a score per feature (Blend.occluded): the same to rounding.
        assert {k for k, v in got.items() if v > 1e-12} == {k for k, v in expected.items() if v > 1e-12}
        assert all(abs(got[k] - expected[k]) < 1e-12 for k in got)
        assert set(got) <= {k for k, v in expected.items() if v > 0 or abs(v) < 1e-12}


def test_explain_of_a_feature_at_its_usual_value_is_exactly_nothing() -> None:
    m = trained("separate", seed=9)
    x = {name: m.usual(name) for name in PROBES[0] if m.usual(name) is not None}
    assert m.explain(x, top=len(x)) == []
