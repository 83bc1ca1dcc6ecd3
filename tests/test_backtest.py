"""`fraudstream backtest`: the recorded stream through the same core, deterministic, with the metrics."""

from __future__ import annotations

import re
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


def test_backtest_saves_its_model_as_a_workers_checkpoint(tmp_path: Path, capsys, monkeypatch) -> None:
    from fraudstream.backtest import Backtest, read_jsonl
    from fraudstream.config import Settings
    from fraudstream.core.model.online import OnlineModel
    from fraudstream.stream.learning import Checkpoint

    monkeypatch.delenv("FRAUDSTREAM_CONFIG", raising=False)
    events, labels = recorded(tmp_path)
    assert main(["backtest", str(events), str(labels), "--save-model", str(tmp_path)]) == 2  # refused before the replay
    assert "is a directory" in capsys.readouterr().err
    saved = tmp_path / "models" / "history.model"
    assert main(["backtest", str(events), str(labels), "--save-model", str(saved)]) == 0
    out = capsys.readouterr().out
    version = re.search(r"; model (\S+)\n", out).group(1)  # type: ignore[union-attr]
    assert f"model {version} saved to {saved}" in out
    model, offset, _ = Checkpoint.unpack(saved.read_bytes())  # as a worker restores its state dir's checkpoint
    assert isinstance(model, OnlineModel) and model.version == version and version != f"{model.name}-0"
    assert (offset, Checkpoint.header(saved.read_bytes()).generation) == (0, 0)
    # The backtest's own model: the same version, the same scores.
    backtest = Backtest(Settings.load())
    backtest.run(read_jsonl(events, "events")[0], read_jsonl(labels, "labels")[0])
    assert backtest.scorer.model.version == version
    usual = {name: mean.get() for name, mean in model.baseline.items()}
    for factor in (0.5, 1.0, 4.0):
        x = {name: value * factor for name, value in usual.items()}
        assert model.score(x) == backtest.scorer.model.score(x)
