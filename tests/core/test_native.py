"""The compiled core (mypyc, setup.py) is the source's: same features, scores and decisions, and never a stale one."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fraudstream.core
from fraudstream.core import native

#: A scenario replayed through the whole core, learning on; prints one line per authorization.
REPLAY = """
import sys
import orjson
import fraudstream.core
from fraudstream.backtest import Backtest
from fraudstream.config import Settings
from fraudstream.contracts import Authorization, Label
from fraudstream.simulate.scenarios import make_scenario

data = make_scenario("mixed", cards=300, days=12, seed=5)
events = [Authorization(**e) for e in data.events]
labels = [Label(**lb) for lb in data.labels]
backtest = Backtest(Settings.load(env={}).with_overrides(feedback_delay_days=1.0, legit_sample_rate=0.2), investigate=20)
result = backtest.run(events, labels, sys.stdout.buffer)
print(fraudstream.core.CORE_CODE, backtest.scorer.model.version, result.alerts, result.dispositions, file=sys.stderr)
"""


def replay(**env: str) -> tuple[bytes, str]:
    done = subprocess.run([sys.executable, "-c", REPLAY], capture_output=True, check=True, timeout=240,
                          env={**os.environ, **env})
    return done.stdout, done.stderr.decode().strip().splitlines()[-1]


@pytest.mark.skipif(fraudstream.core.CORE_CODE != "compiled", reason="this install runs the core from source only")
def test_the_compiled_core_scores_exactly_as_its_source() -> None:
    compiled, compiled_run = replay()
    source, source_run = replay(FRAUDSTREAM_PURE_PYTHON="1")
    assert compiled_run.startswith("compiled ") and source_run.startswith("python (FRAUDSTREAM_PURE_PYTHON) ")
    assert compiled_run.split()[1:] == source_run.split()[2:]  # the same model version, alerts and dispositions
    assert compiled == source and compiled.count(b"\n") > 1000  # every score, to the last bit


def test_an_install_with_a_compiler_runs_the_compiled_core() -> None:
    """``make install`` compiles (gcc and mypyc are there): a silent fallback would make every figure slower."""
    if os.environ.get("FRAUDSTREAM_PURE_PYTHON") or importlib.util.find_spec("mypyc") is None:
        pytest.skip("no compiler asked for")
    assert fraudstream.core.CORE_CODE == "compiled", "run `make install` to compile the core"
    for name in native.NATIVE_MODULES:
        module = importlib.import_module(f"fraudstream.core.{name}")
        assert Path(module.__file__ or "").suffix == ".so", name


def test_a_source_edited_since_compiling_is_found() -> None:
    """Then every module runs from source (the loading FRAUDSTREAM_PURE_PYTHON uses, tested above), with a warning."""
    manifest = json.loads(native.MANIFEST.read_text()) if native.MANIFEST.exists() else {}
    assert native.stale({}) == list(native.NATIVE_MODULES)
    assert native.stale({**manifest, "features.card": "0" * 64})[:1] == ["features.card"]
    if fraudstream.core.CORE_CODE == "compiled":
        assert native.stale(manifest) == []

