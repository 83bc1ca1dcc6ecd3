"""`fraudstream backtest`: the recorded stream through the same core, deterministic, with the metrics."""

from __future__ import annotations

from pathlib import Path

import orjson

from fraudstream.cli import main
from fraudstream.simulate import HandbookSimulator, LabelDelays, write_jsonl


def recorded(tmp_path: Path) -> tuple[Path, Path]:
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    write_jsonl(events, labels, HandbookSimulator(n_customers=200, n_terminals=400, n_days=30, seed=5), LabelDelays(seed=5))
    return events, labels


def test_backtest_prints_the_metrics_and_is_deterministic(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("FRAUDSTREAM_CONFIG", raising=False)
    events, labels = recorded(tmp_path)
    with open(events, "ab") as fh:
        fh.write(b'{"tx_id": "broken"}\nnot json\n')
    outputs = []
    for run in (1, 2):
        out = tmp_path / f"scores-{run}.jsonl"
        assert main(["backtest", str(events), str(labels), "--investigate", "20", "--scores-out", str(out)]) == 0
        printed = capsys.readouterr()
        outputs.append(out.read_bytes())
    assert "skipped events line" in printed.err and "missing_field" in printed.err and "not_json" in printed.err
    table = printed.out
    assert "AUC" in table and "AP" in table and "CP@100" in table and "\nall " in table
    lines = outputs[0].splitlines()
    n_events = sum(1 for _ in open(events)) - 2
    assert len(lines) == n_events
    first = orjson.loads(lines[0])
    assert set(first) == {"tx_id", "card_id", "ts", "score", "model_version"}
    assert outputs[0] == outputs[1], "the same recording must give the same scores"
    ts = [orjson.loads(x)["ts"] for x in lines]
    assert ts == sorted(ts), "replayed in event-time order"


def test_backtest_says_what_is_wrong_with_its_input(tmp_path: Path, capsys) -> None:
    assert main(["backtest", str(tmp_path / "missing.jsonl"), str(tmp_path / "labels.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("not json\n")
    assert main(["backtest", str(empty), str(empty)]) == 2
    assert "no valid authorization" in capsys.readouterr().err
