"""`fraudstream alerts`: the review topic as a live table, with filters."""

from __future__ import annotations

import threading
import time

import pytest

from fraudstream.cli import main
from fraudstream.contracts import encode

from ..conftest import produce

pytestmark = pytest.mark.broker

TS = 1_795_000_000_000  # 2026-11-18T11:06:40Z


def _alert(n: int, card: str, score: float, rules: list[str], action: str = "alert") -> tuple[bytes, bytes]:
    value = {"alert_id": f"alert-tx-{n}", "action": action, "tx_id": f"tx-{n}", "card_id": card, "merchant_id": f"term-{n:05d}",
             "amount": 1234.5 * n, "currency": "JPY", "ts": TS + n * 60_000, "score": score, "threshold": 0.61,
             "reasons": [f"model score {score:.2f} (alert threshold 0.61)", f"reason two of {n}", f"reason three of {n}"],
             "rules": rules, "model_version": "logistic-40"}
    return card.encode(), encode(value)


ALERTS = [
    _alert(1, "card-000111", 0.95, ["R-VELOCITY-1H"]),
    _alert(2, "card-000222", 0.70, []),
    _alert(3, "card-000111", 0.85, ["R-VELOCITY-1H", "R-MERCHANT-FRAUD-7D"], action="update"),
    _alert(4, "card-000333", 0.62, ["R-MERCHANT-FRAUD-7D"]),
]


def _shown(out: str) -> list[str]:
    """alert ids of the rows (not the header, not the continuation lines)."""
    return [line.split()[3] for line in out.splitlines()[2:] if line[:1].isdigit()]


def test_tail_from_beginning_and_filters(ops, cli):
    produce(ops, ops.topic_alerts, [*ALERTS, (b"card-x", b"{not json"), ALERTS[0]])  # a garbled record, a redelivery

    everything = cli("alerts", "--from-beginning", "--timeout", "0.3")
    assert everything.code == 0, everything.err
    lines = everything.out.splitlines()
    assert lines[0].split()[:5] == ["time", "(UTC)", "action", "alert_id", "card"]
    assert sorted(_shown(everything.out)) == ["alert-tx-1", "alert-tx-2", "alert-tx-3", "alert-tx-4"]  # the redelivery once
    row = next(line for line in lines if "alert-tx-3" in line)
    for cell in ("2026-11-18 11:09:40", "update", "card-000111", "term-00003", "3,703.50 JPY", "0.850", "logistic-40",
                 "model score 0.85 (alert threshold 0.61)", "R-VELOCITY-1H,R-MERCHANT-FRAUD-7D"):
        assert cell in row, (cell, row)
    below = lines[lines.index(row) + 1 : lines.index(row) + 3]
    assert [line.strip() for line in below] == ["reason two of 3", "reason three of 3"]
    assert below[0].startswith(" " * 8)
    assert "unreadable alert at partition" in everything.err and "4 alerts shown" in everything.err

    assert sorted(_shown(cli("alerts", "--from-beginning", "--timeout", "0.3", "--min-score", "0.8").out)) == ["alert-tx-1", "alert-tx-3"]
    assert sorted(_shown(cli("alerts", "--from-beginning", "--timeout", "0.3", "--card", "card-000111").out)) == ["alert-tx-1", "alert-tx-3"]
    by_rule = cli("alerts", "--from-beginning", "--timeout", "0.3", "--rule", "R-MERCHANT-FRAUD-7D", "--min-score", "0.8")
    assert _shown(by_rule.out) == ["alert-tx-3"]
    assert len(_shown(cli("alerts", "--from-beginning", "--limit", "2").out)) == 2  # no timeout: the limit ends it

    for argv, message in [
        (["--min-score", "7"], "--min-score is a model score between 0 and 1"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--timeout", "-1"], "--timeout is idle seconds"),
        (["--card", ""], "--card is empty"),
        (["--rule", "no such rule!"], "is not a rule id"),
    ]:
        result = cli("alerts", *argv)
        assert result.code == 2 and message in result.err, (argv, result.err)


def test_tail_shows_only_new_alerts(ops, capsys):
    produce(ops, ops.topic_alerts, ALERTS)
    capsys.readouterr()
    codes: list[int] = []
    tail = threading.Thread(target=lambda: codes.append(main(["alerts", "--limit", "1", "--timeout", "10"])))
    tail.start()
    time.sleep(1.5)  # the tail is at the end of every partition by now
    produce(ops, ops.topic_alerts, [_alert(5, "card-000555", 0.99, ["R-VELOCITY-1H"])])
    tail.join(20)
    assert not tail.is_alive() and codes == [0]
    assert _shown(capsys.readouterr().out) == ["alert-tx-5"]
