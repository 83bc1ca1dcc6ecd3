"""An alert's reasons read right to an analyst (issue 19, finding 6): each points the way that raises risk, differs
from the usual it names, compares with a history the card has, says something no other reason says, and agrees
in number ("1 transaction"). Through :meth:`FraudScorer.reasons` with real models, no broker."""

from __future__ import annotations

import pytest

from fraudstream.config import Settings
from fraudstream.core.decision import Decision
from fraudstream.core.model.online import OnlineModel, TrainingExample
from fraudstream.core.scorer import FraudScorer

ALERT = Decision("alert", 0.5)


def scorer(model: OnlineModel | None = None) -> FraudScorer:
    return FraudScorer(Settings.load(env={}), model=model)


def trained(legitimate: dict[str, float], fraud: dict[str, float], n: int = 60) -> OnlineModel:
    """A model that has learned, from ``n`` examples of each, that ``fraud`` looks like fraud."""
    m = OnlineModel("logistic")
    for i in range(n):
        m.learn(TrainingExample(f"l{i}", legitimate, False, 1.0, "analyst", i))
        m.learn(TrainingExample(f"f{i}", fraud, True, 1.0, "analyst", i))
    assert m.ready
    return m


def model_reasons(reasons: list[str]) -> list[str]:
    """The reasons from the model's contributions: not the score line."""
    return [r for r in reasons if not r.startswith("model score")]


def first_day(**feats: float) -> dict[str, float]:
    """A card seen for the first time today: its 30 days are its last 24 hours."""
    return {"amount": 30.0, "card_count_1h": 1.0, "card_count_24h": 3.0, "card_count_30d": 3.0, "card_amount_mean_30d": 17.0,
            "card_amount_sum_30d": 51.0, **feats}


def test_no_z_score_or_ratio_from_a_card_with_no_history():
    """The first day: "7.2 standard deviations above this card's 30-day mean" beside "1.7× this card's 30-day
    mean" compares with a history the card does not have."""
    reasons = scorer().reasons(first_day(card_amount_ratio_30d=1.7, card_amount_zscore_30d=7.2), 0.6, ALERT)
    assert not any("standard deviations" in r or "30-day mean" in r for r in reasons), reasons


def test_a_z_score_and_a_ratio_say_the_same_thing_once():
    feats = {"amount": 170.0, "card_count_24h": 1.0, "card_count_30d": 40.0, "card_amount_mean_30d": 17.0,
             "card_amount_sum_30d": 680.0, "card_amount_ratio_30d": 10.0, "card_amount_zscore_30d": 30.0}
    reasons = model_reasons(scorer().reasons(feats, 0.9, ALERT))
    said = [r for r in reasons if "this card's 30-day mean" in r]
    assert len(said) == 1, reasons


def test_a_value_below_its_usual_is_no_reason_and_nouns_agree_with_their_number():
    """A model that learned that few merchants go with fraud: "1 different merchants in 24 hours (usual: 3.89)" is
    no reason an analyst can read (and not English)."""
    legit = {"card_distinct_merchants_24h": 5.0, "card_count_1h": 1.0}
    model = trained(legit, {"card_distinct_merchants_24h": 1.0, "card_count_1h": 4.0})
    reasons = model_reasons(scorer(model).reasons({"card_distinct_merchants_24h": 1.0, "card_count_1h": 4.0}, 0.9, ALERT))
    assert not any("different merchant" in r for r in reasons), reasons
    assert reasons and all("1 transactions" not in r and "1 different merchants" not in r for r in reasons), reasons
    # Above the usual, it is a reason, in the right number.
    model = trained({"card_distinct_merchants_24h": 1.0}, {"card_distinct_merchants_24h": 6.0})
    reasons = model_reasons(scorer(model).reasons({"card_distinct_merchants_24h": 6.0}, 0.9, ALERT))
    assert any(r.startswith("6 different merchants in 24 hours") for r in reasons), reasons


def test_singular_nouns():
    model = trained({"card_count_1h": 0.0, "card_atm_count_24h": 0.0}, {"card_count_1h": 1.0, "card_atm_count_24h": 1.0})
    reasons = model_reasons(scorer(model).reasons({"card_count_1h": 1.0, "card_atm_count_24h": 1.0, "card_count_30d": 1.0},
                                                  0.9, ALERT))
    assert "1 ATM withdrawal in 24 hours" in reasons, reasons
    assert any(r.startswith("1 transaction in the last hour") for r in reasons), reasons


def test_a_value_equal_to_its_usual_is_no_reason():
    """The card's mean over 30 days is its own usual: "mean amount 17 in the last 30 days (usual: 17)"."""
    model = trained({"card_amount_mean_30d": 60.0, "amount": 20.0}, {"card_amount_mean_30d": 17.0, "amount": 300.0})
    feats = {"card_amount_mean_30d": 17.0, "amount": 300.0, "card_count_30d": 40.0, "card_count_24h": 1.0,
             "card_amount_sum_30d": 680.0}
    reasons = model_reasons(scorer(model).reasons(feats, 0.9, ALERT))
    assert not any(r.startswith("mean amount 17 ") for r in reasons), reasons
    assert any(r.startswith("amount 300") for r in reasons), reasons


@pytest.mark.parametrize("feats", [first_day(card_amount_ratio_30d=1.7, card_amount_zscore_30d=7.2, merchant_cpp_share=0.4)])
def test_what_the_card_has_no_history_for_leaves_the_other_reasons(feats):
    reasons = scorer().reasons(feats, 0.6, ALERT)
    assert "40% of recent cards here were later compromised" in reasons, reasons


def test_a_days_worth_of_authorizations_is_a_mean_but_not_a_daily_pace():
    """20 authorizations today, the card's first day: its mean means something, "30× its usual daily pace" not."""
    feats = {"amount": 180_000.0, "card_count_24h": 21.0, "card_count_30d": 21.0, "card_amount_mean_30d": 2100.0,
             "card_amount_ratio_30d": 85.7, "card_count_vs_30d": 30.0, "card_spend_vs_30d": 30.0}
    model = trained({"card_amount_ratio_30d": 1.0, "card_count_vs_30d": 1.0, "card_spend_vs_30d": 1.0, "amount": 2000.0},
                    {"card_amount_ratio_30d": 50.0, "card_count_vs_30d": 20.0, "card_spend_vs_30d": 20.0, "amount": 100_000.0})
    reasons = model_reasons(scorer(model).reasons(feats, 0.9, ALERT))
    assert "amount is 85.7× this card's 30-day mean" in reasons, reasons
    assert not any("daily" in r for r in reasons), reasons
    # With a month behind it, the pace is a reason.
    reasons = model_reasons(scorer(model).reasons({**feats, "card_count_30d": 60.0}, 0.9, ALERT))
    assert "30.0× this card's usual daily pace" in reasons, reasons


def test_a_reason_without_a_usual_value_does_not_say_unknown() -> None:
    """A model that has learned nothing yet has no usual value: "5 transactions in the last hour (usual: unknown)"
    reads as a defect; the reason is said without the comparison."""
    from fraudstream.core.model.online import Contribution
    from fraudstream.core.reasons import say

    feats = {"card_count_1h": 5.0, "card_count_24h": 5.0, "card_count_30d": 6.0}
    assert say([Contribution("card_count_1h", 5.0, 0.3)], feats, usual={}.get) == ["5 transactions in the last hour"]


def test_the_ratio_is_said_rather_than_its_z_score() -> None:
    """Five near-equal amounts (¥2,000-2,400), then ¥950,000: "4308.2 standard deviations above this card's 30-day
    mean" is right, and reads absurd to an analyst; "431.8× this card's 30-day mean" says the same plainly. Through
    the scorer's own features, from a model that has learned nothing yet (its cold-start terms name the z-score)."""
    from fraudstream.contracts import Authorization

    day, t0 = 86_400_000, 1_699_920_000_000
    s = scorer()
    for i, amount in enumerate([2000, 2100, 2400, 2200, 2300]):
        s.process(Authorization(f"h{i}", "card-Y", "m-shop", float(amount), t0 + i * day))
    scored = s.process(Authorization("big", "card-Y", "m-new", 950_000.0, t0 + 5 * day + 3_600_000))
    reasons = model_reasons(scored.reasons)
    assert "amount is 431.8× this card's 30-day mean" in reasons, reasons
    assert not any("standard deviations" in r for r in reasons), reasons


def test_a_huge_z_score_said_alone_reads_as_over_a_bound() -> None:
    """Where the ratio is no reason (not on the card's riskier side), a z-score said alone is not "4308.2"."""
    from fraudstream.core.model.online import Contribution
    from fraudstream.core.reasons import say

    feats = {"card_count_24h": 1.0, "card_count_30d": 40.0, "card_amount_zscore_30d": 4308.2, "card_amount_ratio_30d": 1.0}
    said = say([Contribution("card_amount_zscore_30d", 4308.2, 0.5)], feats, usual={"card_amount_ratio_30d": 1.0}.get)
    assert said == ["amount is over 100 standard deviations above this card's 30-day mean"], said
    feats["card_amount_zscore_30d"] = 7.24
    said = say([Contribution("card_amount_zscore_30d", 7.24, 0.5)], feats, usual={"card_amount_ratio_30d": 1.0}.get)
    assert said == ["amount is 7.2 standard deviations above this card's 30-day mean"], said


def test_the_plain_way_of_a_group_is_said_at_the_strongest_members_place() -> None:
    from fraudstream.core.model.online import Contribution
    from fraudstream.core.reasons import say

    feats = {"card_count_24h": 1.0, "card_count_30d": 40.0, "card_amount_zscore_30d": 30.0, "card_amount_ratio_30d": 10.0,
             "merchant_cpp_share": 0.4}
    contributions = [Contribution("card_amount_zscore_30d", 30.0, 0.5), Contribution("merchant_cpp_share", 0.4, 0.3),
                     Contribution("card_amount_ratio_30d", 10.0, 0.1)]
    said = say(contributions, feats, usual={"card_amount_ratio_30d": 1.0, "merchant_cpp_share": 0.01}.get)
    assert said == ["amount is 10.0× this card's 30-day mean", "40% of recent cards here were later compromised"], said
