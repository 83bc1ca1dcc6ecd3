"""The director's figures as the core counts them when a fraud label arrives: how a compromised card was found, its
time to detection, and the fraudulent amount prevented or missed (LabelOutcome.found, detection_ms, amount_*)."""

from __future__ import annotations

from fraudstream.contracts import CardReissue
from fraudstream.core.decision import CardStanding
from fraudstream.core.features.card import NO_TIME
from fraudstream.core.rules import Rule, RuleSet
from fraudstream.core.scorer import FraudScorer, LabelOutcome
from tests.core.test_scorer import DAY, HOUR, MIN, T0, auth, label, settings

#: An amount above 1000 is alerted, whatever the model says: the tests choose which authorization alerts.
BIG = 5000.0


def scorer() -> FraudScorer:
    return FraudScorer(settings(), rules=RuleSet([Rule("R-1", "big ticket", "amount > 1000", "active", "alert")]))


def figures(out: LabelOutcome) -> tuple[str | None, int | None, float, float]:
    return out.found, out.detection_ms, out.amount_prevented, out.amount_missed


def test_a_card_alerted_two_hours_after_its_first_fraud_was_found_by_the_model_in_two_hours() -> None:
    s = scorer()
    assert s.process(auth("t1", "c1", T0, 40.0)).decision.action == "none"
    assert s.process(auth("t2", "c1", T0 + HOUR, 60.0)).decision.action == "none"
    assert s.process(auth("t3", "c1", T0 + 2 * HOUR, BIG)).decision.action == "alert"
    assert s.process(auth("t4", "c1", T0 + 2 * HOUR + MIN, 2000.0)).decision.action == "update"
    # The chargeback of the first fraud, weeks later: alerted 2 h after it, before the label; its own amount missed.
    assert figures(s.label(label("c1", T0 + 30 * DAY, "t1"))) == ("model", 2 * HOUR, 0.0, 40.0)
    assert s.standings.get("c1").fraud_from == T0
    # The card's later chargebacks: not counted again; amounts at or after the alert prevented, before it missed.
    assert figures(s.label(label("c1", T0 + 31 * DAY, "t2"))) == (None, None, 0.0, 60.0)
    assert figures(s.label(label("c1", T0 + 31 * DAY, "t3"))) == (None, None, BIG, 0.0)
    assert figures(s.label(label("c1", T0 + 31 * DAY, "t4"))) == (None, None, 2000.0, 0.0)
    # The same chargeback again counts nothing.
    again = s.label(label("c1", T0 + 32 * DAY, "t3"))
    assert again.status == "duplicate" and figures(again) == (None, None, 0.0, 0.0)


def test_an_alert_before_the_first_fraud_or_after_its_label_does_not_detect_it() -> None:
    s = scorer()
    assert s.process(auth("t0", "c1", T0 - DAY, BIG)).decision.action == "alert"  # an alert of the day before
    s.process(auth("t1", "c1", T0, 40.0))
    # The label at T0 + 1h; an authorization after it in event time, scored before the label was processed.
    assert s.process(auth("t2", "c1", T0 + 2 * HOUR, BIG)).decision.action == "alert"
    assert figures(s.label(label("c1", T0 + HOUR, "t1", source="analyst"))) == ("missed", None, 0.0, 40.0)


def test_a_card_never_alerted_before_its_chargeback_is_missed_and_so_is_its_amount() -> None:
    s = scorer()
    for i, amount in enumerate((40.0, 70.0)):
        assert s.process(auth(f"t{i}", "c1", T0 + i * HOUR, amount)).decision.action == "none"
    assert figures(s.label(label("c1", T0 + 40 * DAY, "t1"))) == ("missed", None, 0.0, 70.0)
    assert figures(s.label(label("c1", T0 + 41 * DAY, "t0"))) == (None, None, 0.0, 40.0)
    assert s.standings.get("c1").fraud_from == T0  # the earlier fraud, confirmed later, starts the compromise


def test_a_block_after_a_customer_report_prevents_the_later_fraud_and_the_card_is_counted_once() -> None:
    s = scorer()
    s.process(auth("t1", "c1", T0 - DAY, 30.0))  # the customer's own, before `since`
    s.process(auth("t2", "c1", T0, 40.0))
    s.process(auth("t3", "c1", T0 + HOUR, 60.0))
    report = s.label(label("c1", T0 + 3 * HOUR, since=T0, source="customer_report"))
    # The report confirms t2 and t3: the card was never alerted, found by the customer.
    assert report.status == "card_level" and figures(report) == ("missed", None, 0.0, 100.0)
    blocked = s.process(auth("t4", "c1", T0 + 5 * HOUR, 80.0))
    assert blocked.decision.action == "block"
    # The chargebacks that follow: the card is not counted again; t4 was blocked, so its amount was prevented.
    assert figures(s.label(label("c1", T0 + 30 * DAY, "t4"))) == (None, None, 80.0, 0.0)
    assert s.label(label("c1", T0 + 30 * DAY, "t3")).status == "duplicate"  # the report confirmed it already
    # The standing remembers it, as written and read back.
    standing = CardStanding.from_bytes(s.standings.get("c1").to_bytes())
    assert standing.fraud_from == T0 and standing.compromised


def test_a_card_blocked_by_a_label_that_counted_nothing_was_found_by_the_label() -> None:
    s = scorer()
    # A report of a compromise from T0, before any authorization since then: nothing to count yet, but a block.
    report = s.label(label("c1", T0, since=T0, source="customer_report"))
    assert figures(report) == (None, None, 0.0, 0.0) and s.standings.get("c1").fraud_from == NO_TIME
    s.process(auth("t1", "c1", T0 + HOUR, 25.0))
    assert figures(s.label(label("c1", T0 + 20 * DAY, "t1"))) == ("label", 0, 25.0, 0.0)


def test_an_early_label_is_counted_when_its_authorization_is_scored() -> None:
    s = scorer()
    assert figures(s.label(label("c1", T0 + HOUR, "t1", source="analyst"))) == (None, None, 0.0, 0.0)  # early
    out = s.process(auth("t1", "c1", T0, BIG)).label_outcome
    assert out is not None and out.status == "learned" and figures(out) == ("model", 0, BIG, 0.0)


def test_a_reissued_card_compromised_again_is_counted_again() -> None:
    s = scorer()
    s.process(auth("t1", "c1", T0, BIG))
    assert figures(s.label(label("c1", T0 + HOUR, "t1", source="analyst"))) == ("model", 0, BIG, 0.0)
    s.reissue(CardReissue("c1", T0 + DAY))
    s.process(auth("t2", "c1", T0 + 2 * DAY, 45.0))
    s.process(auth("t3", "c1", T0 + 2 * DAY + 30 * MIN, BIG))
    assert figures(s.label(label("c1", T0 + 3 * DAY, "t2"))) == ("model", 30 * MIN, 0.0, 45.0)
    assert s.standings.get("c1").fraud_from == T0 + 2 * DAY


def test_a_legitimate_label_counts_nothing() -> None:
    s = scorer()
    s.process(auth("t1", "c1", T0, BIG))
    out = s.label(label("c1", T0 + HOUR, "t1", fraud=False, source="analyst"))
    assert out.status == "learned" and figures(out) == (None, None, 0.0, 0.0)
    assert s.standings.get("c1").fraud_from == NO_TIME
    # Fraud after all (a chargeback contradicts the analyst): now it counts, once.
    assert figures(s.label(label("c1", T0 + 30 * DAY, "t1"))) == ("model", 0, BIG, 0.0)


def test_a_standing_of_the_earlier_layout_reads_as_uncounted_and_an_uncounted_one_keeps_its_bytes() -> None:
    card = CardStanding()
    card.clock, card.compromised_since, card.open_alert_id, card.open_alert_until = T0, T0, "alert-t7", T0 + DAY
    earlier = card.to_bytes()  # nothing counted: the bytes of the earlier layout
    assert earlier[-len("alert-t7"):] == b"alert-t7"
    assert CardStanding.from_bytes(earlier).fraud_from == NO_TIME
    card.fraud_from = T0 - HOUR
    copy = CardStanding.from_bytes(card.to_bytes())
    assert (copy.fraud_from, copy.open_alert_id, copy.open_alert_until) == (T0 - HOUR, "alert-t7", T0 + DAY)
    assert copy.to_bytes() == card.to_bytes()
    card.open_alert_id = None
    assert CardStanding.from_bytes(card.to_bytes()).open_alert_id is None
