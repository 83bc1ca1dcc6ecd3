"""`fraudstream rules stats`: hits, alerts and precision per rule from fraud.scores and fraud.labels."""

from __future__ import annotations

import re
import time

import pytest

from fraudstream.contracts import encode

from ..conftest import produce

pytestmark = pytest.mark.broker

DAY = 86_400_000
D = 1_710_072_000_000  # 2024-03-10T12:00:00Z: the newest scored day


def _score(tx: str, card: str, ts: int, hits: list[str], action: str = "none", rules: list[str] | None = None) -> tuple[bytes, bytes]:
    value = {"tx_id": tx, "card_id": card, "merchant_id": "m-1", "amount": 10.0, "ts": ts, "features": {}, "score": 0.5,
             "model_version": "logistic-1", "late": False, "rule_hits": hits,
             "decision": {"action": action, "threshold": 0.5, "alert_id": f"alert-{tx}", "rules": rules or []}}
    return card.encode(), encode(value)


def _label(card: str, tx: str | None = None, is_fraud: bool = True, since: int | None = None, source: str = "analyst") -> tuple[bytes, bytes]:
    value = {"card_id": card, "is_fraud": is_fraud, "ts": int(time.time() * 1000), "source": source}
    value.update({"tx_id": tx} if tx else {"since": since})
    return card.encode(), encode(value)


def _rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"rule\s+mode", line))
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells
    return rows


def test_rule_stats(ops, cli, tmp_path):
    rules = [
        {"id": "R-A", "description": "a", "condition": "card_count_1h >= 8", "mode": "active", "action": "alert"},
        {"id": "R-S", "description": "s", "condition": "amount > 500", "mode": "shadow", "action": "alert"},
        {"id": "R-SC", "description": "sc", "condition": "merchant_fraud_rate_7d > 0.1", "mode": "active", "action": "score",
         "score_delta": 0.2},
        {"id": "R-IDLE", "description": "never fires", "condition": "amount > 1e9", "mode": "active", "action": "alert"},
    ]
    path = tmp_path / "rules.json"
    path.write_text(encode(rules).decode())
    assert cli("rules", "apply", str(path)).code == 0

    produce(ops, ops.topic_scores, [
        _score("t1", "c1", D, ["R-A", "R-S"], "alert", ["R-A"]),       # R-A alerted; the shadow rule never does
        _score("t1", "c1", D, ["R-A", "R-S"], "alert", ["R-A"]),       # redelivered: counted once
        _score("t2", "c2", D - DAY, ["R-A"], "update", ["R-A"]),       # an update of an open alert counts
        _score("t3", "c3", D, ["R-A", "R-OLD"], "none", ["R-A"]),      # no alert raised (R-OLD since deleted)
        _score("t4", "c4", D - 2 * DAY, ["R-S", "R-SC"]),
        _score("t5", "c4", D + 1000, ["R-SC"], "alert", []),           # alerted on the score, not by R-SC
        _score("t6", "c5", D - 10 * DAY, ["R-A"], "alert", ["R-A"]),   # outside the 7-day window
        _score("t7", "c1", D - 3 * DAY, []),                           # no rule fired
        (b"c9", b"{not json"),
    ])
    produce(ops, ops.topic_labels, [
        _label("c1", "t1", True),
        _label("c2", "t2", True),
        _label("c2", "t2", False, source="chargeback"),  # a later label contradicts: t2 was legitimate
        _label("c3", "t3", False),
        _label("c4", since=D),                         # card-level: t5 (at D+1s) is fraud, t4 (before) is not labelled
        _label("c5", since=D - 20 * DAY),              # only t6, outside the window
        _label("c7", "t-unknown", True),               # no rule fired on it
        (b"c1", encode({"card_id": "c1", "tx_id": "t1", "is_fraud": "yes"})),  # invalid: skipped
    ])

    result = cli("rules", "stats")
    assert result.code == 0, result.err
    assert "7 days of event time, 2024-03-04 .. 2024-03-10" in result.out
    assert "8 score records read" in result.out and "5 authorizations in the window had rule hits" in result.out
    assert "7 labels read (2 card-level reports), 5 of them about authorizations with rule hits" in result.out
    assert "skipped 1 unreadable score records and 1 unreadable labels" in result.out
    rows = _rows(result.out)
    header = next(line for line in result.out.splitlines() if re.match(r"rule\s+mode", line)).split()
    assert header[:6] == ["rule", "mode", "hits", "alerts", "labelled", "precision"]
    assert header[6:] == ["03-04", "03-05", "03-06", "03-07", "03-08", "03-09", "03-10"]
    #                       mode      hits alerts labelled precision   per-day hits
    assert rows["R-A"] == ["R-A", "active", "3", "2", "3", "0.333", "0", "0", "0", "0", "0", "1", "2"]
    assert rows["R-S"] == ["R-S", "shadow", "2", "0", "1", "1.000", "0", "0", "0", "0", "1", "0", "1"]
    assert rows["R-SC"] == ["R-SC", "active", "2", "0", "1", "1.000", "0", "0", "0", "0", "1", "0", "1"]
    assert rows["R-IDLE"] == ["R-IDLE", "active", "0", "0", "0", "-", "0", "0", "0", "0", "0", "0", "0"]
    assert rows["R-OLD"][:6] == ["R-OLD", "deleted", "1", "0", "1", "0.000"]

    # --days 14 reaches t6 (and the card-level report that covers it).
    wide = _rows(cli("rules", "stats", "--days", "14").out)
    assert wide["R-A"][:6] == ["R-A", "active", "4", "3", "4", "0.500"]

    bad = cli("rules", "stats", "--days", "0")
    assert bad.code == 2 and "--days must be between 1 and 90" in bad.err


def test_rule_stats_empty(ops, cli):
    result = cli("rules", "stats")
    assert result.code == 0, result.err
    assert "no scored authorizations" in result.out
    assert re.search(r"^rule\s+mode\s+hits", result.out, re.M)
