"""`python -m fraudstream.tools.bench --quick` runs whole and prints every row of its table with a number.

No speed is asserted: the machine is shared and noisy; the bench reports, people judge.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]

NUMBER = r"-?[\d,]+(?:\.\d+)?"

#: Row label (part of the first cell) → the unit its value carries (values of several numbers are "a / b / c unit").
ROWS = {
    "ceiling: raw confluent-kafka consume→decode→encode→produce": "events/s",
    "fraudstream end to end at saturation": "events/s",
    "end to end / ceiling": "%",
    "broker records per authorization at saturation": "records",
    "of which scores": "records",  # one row per topic the worker wrote to
    "of which merchant-partials": "records",
    "offered: produced": "events/s",
    "offered: scored (achieved)": "events/s",
    "offered: latency p50": "ms",
    "offered: latency p99": "ms",
    "offered: latency p99.9": "ms",
    "offered: median in the worker / to the reader": "ms",
    "core: FraudScorer.process (model warm)": "µs/event",
    "core: card_features": "µs/event",
    "core: merchant_features": "µs/event",
    "core: features (card + merchant": "µs/event",
    "core: model score alone": "µs/event",
    "core: inside process(): card / merchant / model / rest": "µs/event",
    "memory: CardState.to_bytes per active card": "B",
    "memory: Python heap per card (tracemalloc)": "B",
    "embedded broker: CPU per record fetched": "ms",
    "fraudstream end to end at saturation, exactly once": "events/s",
    "exactly once / at least once": "%",
    "cpu at saturation: worker": "cores",
    "cpu at saturation: other processes": "cores",
}

#: Rows that carry a goal, so a ✓ or ✗.
GOALS = ("end to end / ceiling", "broker records per authorization", "offered: scored (achieved)", "(50% of saturation): latency p99 ", "core: FraudScorer.process",
         "core: features (card + merchant", "memory: CardState.to_bytes")


@pytest.fixture(scope="module")
def bench_output() -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    proc = subprocess.run([sys.executable, "-m", "fraudstream.tools.bench", "--quick"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, f"bench failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    assert "[bench" in proc.stderr, "progress goes to stderr"
    assert "[bench" not in proc.stdout, "the table alone goes to stdout"
    return proc.stdout


def _rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        if line.startswith("| ") and not line.startswith("| measure"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_every_row_has_a_number(bench_output: str) -> None:
    rows = _rows(bench_output)
    for label, unit in ROWS.items():
        matching = [cells for name, cells in rows.items() if label in name or name.startswith(label)]
        assert matching, f"no row {label!r} in:\n{bench_output}"
        for value, *_ in matching:
            assert re.fullmatch(rf"{NUMBER}(?: / {NUMBER})* {re.escape(unit)}", value), f"{label}: {value!r} is not a number in {unit}"


def test_goals_are_judged(bench_output: str) -> None:
    rows = _rows(bench_output)
    for label in GOALS:
        matching = [cells for name, cells in rows.items() if label in name + " "]
        assert matching, f"no goal row {label!r}"
        assert all(cells[2] in ("✓", "✗") and cells[1] for cells in matching), f"{label}: no verdict in {matching}"


def test_header_names_commit_and_machine(bench_output: str) -> None:
    assert re.search(r"commit [0-9a-f]{4,}(\+dirty)?", bench_output), bench_output[:400]
    assert re.search(r"machine: \d+ CPUs, .+, Python \d+\.\d+", bench_output), bench_output[:400]


# --- the table alone, from made-up results (no broker needed) ---------------------------------


def _results(card_cpu_us: float, merchant_cpu_us: float, full_card_bytes: int) -> dict[str, object]:
    latency = {"rate": 5000, "offered": 5000.0, "achieved": 4990.0, "kept_up": True, "p50": 3.0, "p99": 20.0, "p999": 40.0,
               "stage_worker": 1.0, "stage_delivery": 1.0, "n": 50_000}
    core = {"process_us": 90.0, "card_us": 30.0, "merchant_us": 12.0, "model_us": 40.0, "card_cpu_us": card_cpu_us,
            "merchant_cpu_us": merchant_cpu_us, "in_process": {"card": 15.0, "merchant": 9.0, "model": 40.0, "rest": 20.0},
            "n": 50_000, "model_version": "logistic-400", "card_bytes": 1_650.4, "full_card_bytes": full_card_bytes}
    return {"machine": {"commit": "abc1234", "nproc": 2, "cpu": "test cpu", "python": "3.11.7", "load_before": 0.1, "core": "compiled"},
            "ceiling": {"rate": 40_000.0},
            "saturation": {"rate": 12_000.0, "complete": True, "cpu": {"worker": 1.0, "broker": 0.5, "bench": 0.3, "other": 0.0},
                           "records": {"scores": 1.0, "cards changelog": 0.95, "alerts": 0.03}},
            "latency": [latency], "core": core, "memory": {"heap_bytes": 3_900.0}, "model": {"examples": 400, "ready": True}}


def test_the_feature_rows_judge_cpu_time_and_the_full_card() -> None:
    from fraudstream.tools.bench import GOAL_CARD_BYTES, GOAL_FEATURES_US, BenchConfig, render

    met = _rows(render(_results(9.5, 6.0, 1_779), BenchConfig.quick()))
    feat = next(cells for name, cells in met.items() if name.startswith("core: features (card + merchant"))
    assert feat == ["42.0 / 15.5 µs/event", f"≤ {GOAL_FEATURES_US:.0f} µs CPU", "✓"]  # wall clock shown, CPU judged
    card = next(cells for name, cells in met.items() if name.startswith("core: card_features"))
    assert card[0] == "30.0 / 9.5 µs/event"
    size = next(cells for name, cells in met.items() if name.startswith("memory: CardState.to_bytes per active card"))
    assert size == ["1,650 / 1,779 B", f"< {GOAL_CARD_BYTES:,} B full", "✓"]
    heap = next(cells for name, cells in met.items() if name.startswith("memory: Python heap per card"))
    assert heap[0] == "3,900 B"
    records = next(cells for name, cells in met.items() if name.startswith("broker records per authorization"))
    assert records == ["1.98 records", "≤ 3", "✓"]  # every topic together
    assert met["of which cards changelog"][0] == "0.95 records"

    missed = _rows(render(_results(15.0, 6.0, GOAL_CARD_BYTES), BenchConfig.quick()))
    assert next(cells for name, cells in missed.items() if name.startswith("core: features (card + merchant"))[2] == "✗"
    assert next(cells for name, cells in missed.items() if name.startswith("memory: CardState.to_bytes"))[2] == "✗"


def test_profile_samples_are_placed_by_their_nearest_frame_outside_the_standard_library(tmp_path) -> None:
    from fraudstream.tools.bench import profile_shares

    raw = tmp_path / "profile.txt"
    loop = "thread (7): MainThread;main (fraudstream/cli.py:1);run_forever (asyncio/base_events.py:2);Handle._run (asyncio/events.py:80)"
    raw.write_text(f"{loop};take (faust/streams.py:2);get (asyncio/queues.py:3) 10\n"  # asyncio counts for faust
                   f"{loop};score (fraudstream/stream/app.py:3);process (fraudstream/core/scorer.py:4) 6\n"
                   f"{loop};score (fraudstream/stream/app.py:3);Outputs._produce (fraudstream/stream/outputs.py:9) 2\n"
                   f"{loop};score (fraudstream/stream/app.py:3) 1\n"
                   f"{loop} 1\n")  # the event loop alone: its hand-offs, not the CLI that started it
    assert profile_shares(raw) == {"faust + aiokafka + asyncio, per message": 0.55, "core": 0.3, "producer calls": 0.1,
                                   "stage wiring": 0.05}
