"""Rules, their validation, rule files and evaluation by mode."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from fraudstream.core.rules import Rule, RuleError, RuleOutcome, RuleSet


def rule_obj(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "R-1",
        "description": "Amount above 220",
        "condition": "amount > 220 and card_tx_count_24h >= 3",
        "mode": "active",
        "action": "alert",
    }
    obj.update(changes)
    return {key: value for key, value in obj.items() if value is not _DROP}


_DROP = object()


def rule(rule_id: str, condition: str, mode: str = "active", action: str = "alert", delta: float | None = None) -> Rule:
    return Rule(rule_id, f"rule {rule_id}", condition, mode=mode, action=action, score_delta=delta)


# --- one rule ------------------------------------------------------------------


def test_from_dict_and_to_dict_round_trip() -> None:
    alert = Rule.from_dict(rule_obj())
    assert alert.id == "R-1" and alert.mode == "active" and alert.action == "alert" and alert.score_delta is None
    assert alert.compiled.names == {"amount", "card_tx_count_24h"}
    assert alert.to_dict() == rule_obj()
    assert Rule.from_dict(alert.to_dict()) == alert

    score = Rule.from_dict(rule_obj(id="R_2.b-c", action="score", score_delta=-1))
    assert score.score_delta == -1.0 and isinstance(score.score_delta, float)
    assert score.to_dict()["score_delta"] == -1.0
    assert Rule.from_dict(score.to_dict()) == score


def test_rules_are_frozen_and_compare_by_fields() -> None:
    a = Rule.from_dict(rule_obj())
    with pytest.raises(AttributeError):
        a.mode = "off"  # type: ignore[misc]
    assert a == Rule.from_dict(rule_obj()) and hash(a) == hash(Rule.from_dict(rule_obj()))
    assert a != Rule.from_dict(rule_obj(mode="shadow"))


def test_alert_rule_may_carry_a_null_score_delta() -> None:
    assert Rule.from_dict(rule_obj(score_delta=None)).score_delta is None


def test_description_may_be_empty_as_the_topic_schema_allows() -> None:
    assert Rule.from_dict(rule_obj(description="")).description == ""


INVALID = [
    (["not", "a", "rule"], "a rule must be a JSON object, got list"),
    (rule_obj(sevrity="high"), "rule 'R-1': unknown field 'sevrity'; the fields are action, condition, description"),
    (rule_obj(id=_DROP), "rule: id is required"),
    (rule_obj(condition=_DROP), "rule 'R-1': condition is required"),
    (rule_obj(description=_DROP), "rule 'R-1': description is required"),
    (rule_obj(mode=_DROP), "rule 'R-1': mode is required"),
    (rule_obj(action=_DROP), "rule 'R-1': action is required"),
    (rule_obj(id=42), "rule 42: id must be a string, got int"),
    (rule_obj(id="bad id!"), "rule 'bad id!': id must be 1 to 64 of A-Z a-z 0-9 _ . -"),
    (rule_obj(id=""), "rule '': id must be 1 to 64"),
    (rule_obj(id="R" * 65), "id must be 1 to 64"),
    (rule_obj(description=7), "rule 'R-1': description must be a string, got 7"),
    (rule_obj(description="x" * 1001), "rule 'R-1': description is longer than 1000 characters"),
    (rule_obj(mode="on"), "rule 'R-1': mode must be one of 'active', 'shadow', 'off', got 'on'"),
    (rule_obj(mode=["active"]), "rule 'R-1': mode must be one of"),
    (rule_obj(action="block"), "rule 'R-1': action must be one of 'alert', 'score', got 'block'"),
    (rule_obj(action="score"), "rule 'R-1': score_delta is required when action is 'score'"),
    (rule_obj(score_delta=0.1), "rule 'R-1': score_delta is only allowed when action is 'score'"),
    (rule_obj(action="score", score_delta=1.5), "rule 'R-1': score_delta must be between -1 and 1, got 1.5"),
    (rule_obj(action="score", score_delta=-1.01), "score_delta must be between -1 and 1"),
    (rule_obj(action="score", score_delta=math.nan), "score_delta must be between -1 and 1, got nan"),
    (rule_obj(action="score", score_delta="0.1"), "rule 'R-1': score_delta must be a number, got '0.1'"),
    (rule_obj(action="score", score_delta=True), "score_delta must be a number, got True"),
    (rule_obj(condition="amount >"), "rule 'R-1': condition: unexpected end of expression at column 9"),
    (rule_obj(condition="__import__('os').system('x')"), "rule 'R-1': condition: unknown function '__import__'"),
    (rule_obj(condition=5), "rule 'R-1': condition: an expression must be a string, got int"),
    (rule_obj(condition="amount * 2"), "rule 'R-1': condition must be true or false"),
]


@pytest.mark.parametrize(("obj", "message"), INVALID, ids=[m[:40] for _, m in INVALID])
def test_rule_validation_messages(obj: Any, message: str) -> None:
    with pytest.raises(RuleError) as info:
        Rule.from_dict(obj)
    assert message in str(info.value)


def test_constructor_validates_too() -> None:
    with pytest.raises(RuleError, match="rule 'R-1': mode must be one of"):
        Rule("R-1", "d", "amount > 1", mode="enabled", action="alert")
    with pytest.raises(RuleError, match="condition: unexpected"):
        Rule("R-1", "d", "amount >> 1", mode="active", action="alert")


def test_known_names_are_checked_with_a_suggestion() -> None:
    known = {"amount", "card_tx_count_24h", "channel"}
    assert Rule.from_dict(rule_obj(), known_names=known).id == "R-1"
    with pytest.raises(RuleError) as info:
        Rule.from_dict(rule_obj(condition="amout > 220"), known_names=known)
    assert str(info.value) == "rule 'R-1': condition: unknown field 'amout' at column 1; did you mean 'amount'?"
    assert info.value.column == 1


def test_rules_comparing_text_with_numbers_are_refused() -> None:
    known = {"amount": "number", "channel": "text"}
    with pytest.raises(RuleError, match=r"rule 'R-1': condition: channel > 5 compares channel \(text\) with 5"):
        Rule.from_dict(rule_obj(condition="channel > 5"), known_names=known)
    with pytest.raises(RuleError, match="rule file rejected at entry 1: .*amount > 'abc' compares amount"):
        RuleSet.from_json(orjson.dumps([rule_obj(condition="amount > 'abc'")]), known_names=known)


def test_rule_from_json() -> None:
    assert Rule.from_json(orjson.dumps(rule_obj())).id == "R-1"
    with pytest.raises(RuleError, match="a rule must be valid JSON"):
        Rule.from_json(b"{nope")


# --- rule files: all or nothing --------------------------------------------------------


def test_rule_file_loads_sorted_by_id() -> None:
    raw = orjson.dumps([rule_obj(id="R-B"), rule_obj(id="R-A", mode="shadow"), rule_obj(id="R-C", mode="off")])
    rules = RuleSet.from_json(raw)
    assert rules.ids == ("R-A", "R-B", "R-C")
    assert rules.modes == {"R-A": "shadow", "R-B": "active", "R-C": "off"}
    assert len(rules) == 3 and "R-A" in rules and "R-Z" not in rules
    assert [r.id for r in rules] == ["R-A", "R-B", "R-C"]
    assert rules.get("R-B") == Rule.from_dict(rule_obj(id="R-B")) and rules.get("R-Z") is None
    assert rules.names == {"amount", "card_tx_count_24h"}
    assert RuleSet.from_json(rules.to_json()) == rules
    assert RuleSet.from_json(raw.decode()) == rules  # str works too
    assert len(RuleSet.from_json("[]")) == 0


def test_one_bad_rule_rejects_the_whole_file() -> None:
    raw = orjson.dumps([rule_obj(id="R-GOOD"), rule_obj(id="R-BAD", mode="on"), rule_obj(id="R-ALSO-GOOD")])
    with pytest.raises(RuleError) as info:
        RuleSet.from_json(raw)
    assert str(info.value) == (
        "rule file rejected at entry 2: rule 'R-BAD': mode must be one of 'active', 'shadow', 'off', got 'on'"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[{", "rule file rejected: not valid JSON"),
        (b'{"id": "R-1"}', "rule file rejected: it must be a JSON list of rules, got dict"),
        (b"[1]", "rule file rejected at entry 1: a rule must be a JSON object, got int"),
        (orjson.dumps([rule_obj(), rule_obj(id="R-2"), rule_obj()]), "rule 'R-1' appears at entries 1 and 3"),
        (orjson.dumps([rule_obj(), rule_obj(id="R-2", condition="amount > 1)")]), "entry 2: rule 'R-2': condition"),
    ],
)
def test_rule_file_errors(raw: bytes, message: str) -> None:
    with pytest.raises(RuleError) as info:
        RuleSet.from_json(raw)
    assert message in str(info.value)


def test_rule_file_checks_known_names() -> None:
    raw = orjson.dumps([rule_obj(), rule_obj(id="R-2", condition="chanel == 'ecom'")])
    assert len(RuleSet.from_json(raw)) == 2
    with pytest.raises(RuleError, match="entry 2: rule 'R-2': condition: unknown field 'chanel' .* mean 'channel'"):
        RuleSet.from_json(raw, known_names={"amount", "card_tx_count_24h", "channel"})


def test_duplicate_rules_in_a_set_are_refused() -> None:
    with pytest.raises(RuleError, match="appears more than once"):
        RuleSet([rule("R-1", "true"), rule("R-1", "false")])
    with pytest.raises(TypeError):
        RuleSet([rule_obj()])  # type: ignore[list-item]


# --- hot reload ----------------------------------------------------------------------


def test_with_rule_and_without_return_new_sets() -> None:
    base = RuleSet([rule("R-1", "amount > 1")])
    added = base.with_rule(rule("R-0", "amount > 2"))
    replaced = added.with_rule(rule("R-1", "amount > 100", mode="shadow"))
    assert base.ids == ("R-1",)  # untouched
    assert added.ids == ("R-0", "R-1")
    assert replaced.get("R-1").mode == "shadow"  # type: ignore[union-attr]
    assert added.get("R-1").mode == "active"  # type: ignore[union-attr]
    assert replaced.without("R-0").ids == ("R-1",)
    assert replaced.without("R-404") is replaced


def test_apply_a_compacted_topic_record() -> None:
    value = orjson.dumps(rule_obj(id="R-9"))
    rules = RuleSet().apply(b"R-9", value)
    assert rules.ids == ("R-9",)
    assert rules.apply("R-9", None).ids == ()  # a tombstone deletes
    assert rules.apply(b"R-unknown", None) is rules
    with pytest.raises(RuleError, match="rule 'R-9' arrived under the key 'R-8'"):
        rules.apply(b"R-8", value)
    with pytest.raises(RuleError, match="rule 'R-9': mode must be one of"):
        rules.apply(b"R-9", orjson.dumps(rule_obj(id="R-9", mode="maybe")))
    assert rules.ids == ("R-9",)  # a bad update leaves the set as it was
    with pytest.raises(RuleError, match="unknown field 'amout'"):
        rules.apply(b"R-9", orjson.dumps(rule_obj(id="R-9", condition="amout > 1")), known_names={"amount"})


# --- evaluation by mode ------------------------------------------------------------------

EVENT = {"amount": 250.0, "card_tx_count_24h": 4, "channel": "ecom"}


def test_active_shadow_and_off() -> None:
    rules = RuleSet(
        [
            rule("R-ALERT", "amount > 220"),
            rule("R-ALERT-QUIET", "amount > 1000"),
            rule("R-SCORE-A", "channel in ('ecom', 'moto')", action="score", delta=0.25),
            rule("R-SCORE-B", "card_tx_count_24h >= 3", action="score", delta=-0.05),
            rule("R-SHADOW", "amount > 100"),
            rule("R-SHADOW-SCORE", "true", mode="shadow", action="score", delta=0.5),
            rule("R-OFF", "true", mode="off"),
            rule("R-OFF-SCORE", "true", mode="off", action="score", delta=1.0),
        ][::-1]
    ).with_rule(rule("R-SHADOW", "amount > 100", mode="shadow"))
    outcome = rules.evaluate(EVENT)
    assert outcome.alert_rules == ("R-ALERT",)
    assert outcome.active_hits == ("R-ALERT", "R-SCORE-A", "R-SCORE-B")
    assert outcome.shadow_hits == ("R-SHADOW", "R-SHADOW-SCORE")
    assert outcome.score_delta == pytest.approx(0.20)
    assert outcome.fired


def test_off_rules_are_never_evaluated() -> None:
    class Watched(dict[str, Any]):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.read: set[str] = set()

        def get(self, key: str, default: Any = None) -> Any:
            self.read.add(key)
            return super().get(key, default)

    rules = RuleSet([rule("R-ON", "amount > 1"), rule("R-OFF", "only_off > 1", mode="off")])
    event = Watched(amount=5, only_off=5)
    assert rules.evaluate(event).active_hits == ("R-ON",)
    assert event.read == {"amount"}


def test_nothing_fired() -> None:
    rules = RuleSet([rule("R-1", "amount > 1000"), rule("R-2", "missing == 1", mode="shadow")])
    outcome = rules.evaluate(EVENT)
    assert outcome == RuleOutcome() and not outcome.fired and outcome.score_delta == 0.0
    assert RuleSet().evaluate(EVENT) == RuleOutcome()


def test_evaluation_never_raises_on_strange_events() -> None:
    rules = RuleSet([rule("R-1", "amount / count > 3"), rule("R-2", "channel in ('ecom',)")])
    for event in ({}, {"amount": "x", "count": 0}, {"amount": 10, "count": 0}, {"channel": ["ecom"]}, {"amount": None}):
        assert rules.evaluate(event) == RuleOutcome()
    assert rules.evaluate({"amount": 10, "count": 2}).alert_rules == ("R-1",)


def test_order_is_by_rule_id_not_file_order() -> None:
    raw = orjson.dumps([rule_obj(id=i, condition="true") for i in ("b", "C", "a", "A")])
    assert RuleSet.from_json(raw).evaluate({}).alert_rules == ("A", "C", "a", "b")
