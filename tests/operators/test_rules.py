"""`fraudstream rules`: apply a file all-or-nothing, list what is in force, delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraudstream.core.rules import RuleSet
from fraudstream.stream.learning import RULE_FIELDS

from ..conftest import ROOT, read_topic

pytestmark = pytest.mark.broker

EXAMPLES = ROOT / "rules" / "examples.json"


@pytest.mark.parametrize("path", sorted((ROOT / "rules").glob("*.json")), ids=lambda p: p.name)
def test_example_rule_files_are_valid(path):
    rules = RuleSet.from_json(path.read_bytes(), known_names=RULE_FIELDS)
    assert len(rules) >= 3 and {"active", "shadow"} <= set(rules.modes.values())


def _rule(rule_id: str, condition: str = "card_count_1h >= 8", **extra: object) -> dict:
    return {"id": rule_id, "description": f"{rule_id} for the test", "condition": condition, "mode": "active",
            "action": "alert", **extra}


def _write(tmp_path: Path, name: str, content: object) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def _list_rows(out: str) -> dict[str, list[str]]:
    """rule id -> the row's cells (split on runs of 2+ spaces) of `rules list`."""
    import re

    rows = {}
    for line in out.splitlines()[2:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells
    return rows


def test_apply_list_delete(ops, cli, tmp_path):
    empty = cli("rules", "list")
    assert empty.code == 0 and "no rules in" in empty.out

    applied = cli("rules", "apply", str(EXAMPLES))
    assert applied.code == 0, applied.err
    assert "applied 4 rules" in applied.out
    expected = {r["id"]: r for r in json.loads(EXAMPLES.read_text())}
    for rule_id in expected:
        assert rule_id in applied.out
    assert applied.out.count(" new ") == 4

    listed = cli("rules", "list")
    assert listed.code == 0, listed.err
    rows = _list_rows(listed.out)
    assert set(rows) == set(expected)
    assert rows["R-VELOCITY-1H"][1:4] == ["active", "alert", "card_count_1h >= 8"]
    assert rows["R-MERCHANT-FRAUD-7D"][1:3] == ["active", "score +0.15"]
    assert rows["R-AMOUNT-5X-NEW-MERCHANT"][1] == "shadow"
    assert rows["R-VELOCITY-1H"][4] == expected["R-VELOCITY-1H"]["description"]
    assert "4 rules in" in listed.out and "2 active, 2 shadow, 0 off" in listed.out

    # Re-applying one rule changed: reported as a change, the others untouched.
    change = _rule("R-VELOCITY-1H", "card_count_1h >= 10")
    changed = cli("rules", "apply", _write(tmp_path, "one.json", change))  # a single object, not a list
    assert changed.code == 0, changed.err
    assert "changed condition,description" in changed.out

    deleted = cli("rules", "delete", "R-AMOUNT-5X-NEW-MERCHANT")
    assert deleted.code == 0, deleted.err
    rows = _list_rows(cli("rules", "list").out)
    assert set(rows) == set(expected) - {"R-AMOUNT-5X-NEW-MERCHANT"}
    assert rows["R-VELOCITY-1H"][3] == "card_count_1h >= 10"

    records = read_topic(ops, ops.topic_rules, until=6, timeout=20)
    assert [k for k, _ in records][-1] == b"R-AMOUNT-5X-NEW-MERCHANT" and records[-1][1] is None  # the tombstone
    assert all(v["id"] == k.decode() for k, v in records[:-1])

    missing = cli("rules", "delete", "R-NOPE")
    assert missing.code == 2 and "no rule 'R-NOPE'" in missing.err and "R-VELOCITY-1H" in missing.err


def test_malformed_file_sends_nothing(ops, cli, tmp_path):
    assert cli("rules", "apply", _write(tmp_path, "good.json", [_rule("R-GOOD")])).code == 0
    before = cli("rules", "list").out

    bad_rules = [_rule("R-FINE"), _rule("R-TYPO", "card_count_1hh >= 8"), _rule("R-ALSO-FINE")]
    bad = cli("rules", "apply", _write(tmp_path, "bad.json", bad_rules))
    assert bad.code == 2
    assert "R-TYPO" in bad.err and "entry 2" in bad.err and "unknown field 'card_count_1hh'" in bad.err
    assert "did you mean 'card_count_1h'" in bad.err and "nothing was sent" in bad.err
    assert "Traceback" not in bad.err and bad.out == ""

    for content, message in [
        ("[{not json", "not valid JSON"),
        ([], "holds no rules"),
        ([_rule("R-X", mode="on")], "rule 'R-X': mode must be one of"),
        ([_rule("R-S", action="score")], "rule 'R-S': score_delta is required"),
        ([_rule("R-D"), _rule("R-D")], "'R-D' appears at entries 1 and 2"),
        ([_rule("R-E", "amount > 5 and")], "rule 'R-E': condition:"),
        ({"id": "R-F", "condition": "amount > 5", "mode": "active", "action": "alert", "colour": "red"}, "unknown field 'colour'"),
    ]:
        result = cli("rules", "apply", _write(tmp_path, "x.json", content))
        assert result.code == 2 and message in result.err, (content, result.err)

    assert cli("rules", "apply", str(tmp_path / "missing.json")).err.startswith("fraudstream rules: cannot read rule file")
    assert "needs a rule file" in cli("rules", "apply").err
    assert cli("rules", "delete", "bad id!").code == 2
    assert cli("rules", "list", "extra").code == 2
    assert cli("rules", "list", "--days", "3").code == 2

    assert cli("rules", "list").out == before
    assert len(read_topic(ops, ops.topic_rules, idle=1.0, timeout=10)) == 1


def test_missing_topic_is_reported(ops, cli, monkeypatch):
    monkeypatch.setenv("FRAUDSTREAM_TOPIC_RULES", ops.topic_rules + ".absent")
    result = cli("rules", "list")
    assert result.code == 2 and "does not exist" in result.err and "fraudstream topics create" in result.err
