"""make evaluate's runner, on a stream small enough for a test: every learner and figure is there, and honest."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fraudstream.config import Settings
from fraudstream.evaluation.compare import compare_scenario, main
from fraudstream.simulate.scenarios import make_scenario


def test_one_scenario_compares_fraudstream_the_reference_and_the_batch_baselines(tmp_path: Path) -> None:
    data = make_scenario("card-testing", cards=400, days=24, seed=3)
    result = compare_scenario(data, Settings.load(env={}), str(tmp_path), k=5)
    assert [r.learner for r in result.whole] == ["fraudstream", "reference learner (plain river LR)"]
    learners = [r.learner for r in result.week]
    assert learners[:2] == ["fraudstream", "reference learner (plain river LR)"]
    assert any(name.startswith("batch baseline: random forest") for name in learners)
    # The online learners again, on the batch baselines' test set: it keeps cards their own labels made known.
    protocol = {r.learner: r for r in result.week if r.learner.endswith(", protocol's test set")}
    assert set(protocol) == {"fraudstream, protocol's test set", "reference learner (plain river LR), protocol's test set"}
    own = {r.learner: r for r in result.week}
    assert protocol["fraudstream, protocol's test set"].auc != own["fraudstream"].auc
    assert len(result.week_days) == 7 and result.authorizations == len(data.events)
    for row in result.whole:
        assert 0.5 < row.auc <= 1.0 and 0.0 < row.ap <= 1.0 and row.per_second > 0, row
        assert 0.0 <= row.card_recall <= 1.0 and 0.0 <= row.prevented_share <= 1.0, row
        assert not math.isnan(row.median_hours_to_detection), row
    table = result.table()
    assert "whole stream" in table and "test week" in table and "CR@5" in table
    assert (tmp_path / "events.jsonl").exists() and (tmp_path / "labels.jsonl").exists()


def test_exact_adds_fraudstream_with_one_state_per_merchant_beside_the_workers(tmp_path: Path) -> None:
    data = make_scenario("card-testing", cards=400, days=24, seed=3)
    result = compare_scenario(data, Settings.load(env={}).with_overrides(partitions=3), str(tmp_path), k=5, exact=True)
    rows = {r.learner: r for r in result.whole}
    exact = rows["fraudstream, exact merchant features (one state per merchant)"]
    assert list(rows)[:2] == ["fraudstream", "fraudstream, exact merchant features (one state per merchant)"]
    # The same stream, labels and decisions: only the merchant's features moved, by the others' last minute or two.
    assert exact.auc != rows["fraudstream"].auc and abs(exact.auc - rows["fraudstream"].auc) < 0.05


def test_the_scenarios_run_side_by_side_and_print_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--scenarios", "skimming,card-testing", "--no-handbook", "--cards", "400", "--days", "24", "--seed", "3",
                 "--jobs", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.index("== skimming") < out.index("== card-testing") < out.index("evaluated in")
    # The same figures as one scenario run alone, in this process.
    alone = compare_scenario(make_scenario("card-testing", cards=400, days=24, seed=3), Settings.load(), str(tmp_path / "alone"), k=20)
    def rows(table: str) -> list[str]:  # the whole stream's rows, without their last column (authorizations a second)
        lines = table.split("\n")
        return [" ".join(line.split()[:-1]) for line in lines[4:6]]

    side_by_side = rows(out[out.index("== card-testing"):])
    assert side_by_side == rows(alone.table()) and side_by_side[0].startswith("fraudstream 0.")


def test_an_unknown_scenario_is_refused_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--scenarios", "card-testing,nope", "--no-handbook"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown scenario(s) nope" in err and "merchant-breach" in err
