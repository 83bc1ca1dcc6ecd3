"""Every form field the console takes, with the message an operator sees."""

from __future__ import annotations

import pytest

from fraudstream.console import validation as v
from fraudstream.console.validation import InvalidInput


@pytest.mark.parametrize("value, message", [
    (None, "Card id is empty"), ("", "Card id is empty"), (" c1", "spaces around it"), ("c" * 129, "at most 128"),
    ("c\x00", "control characters"),
])
def test_card_ids_refused_with_a_reason(value, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        v.card_id(value)


def test_ticked_authorizations_belong_to_the_card_and_are_bounded() -> None:
    assert v.tx_ids(["t1"], ["t1", "t2"]) == ["t1"]
    with pytest.raises(InvalidInput, match="at least one"):
        v.tx_ids([], ["t1"])
    with pytest.raises(InvalidInput, match="at most 100"):
        v.tx_ids([f"t{i}" for i in range(101)], [])


@pytest.mark.parametrize("value", ["", "R 1", "R/1", "x" * 65, None])
def test_rule_ids(value) -> None:
    with pytest.raises(InvalidInput, match="not a rule id"):
        v.rule_id(value)


def test_verdicts_and_modes() -> None:
    with pytest.raises(InvalidInput, match="neither fraud nor legit"):
        v.verdict("maybe")
    assert [v.rule_mode(m) for m in ("active", "shadow", "off")] == ["active", "shadow", "off"]
