"""``fraudstream run`` as a user runs it: the status line, ``--duration`` and the summary at the end.

The status loop against a worker that never answers (no broker needed), then one real run on the session's
embedded broker, started the way a second ``make run`` is: var/log/worker.log already holds an earlier run's
output, with another metrics port and a "Ready" line.
"""

from __future__ import annotations

import argparse
import io
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from fraudstream.broker import EmbeddedBroker, free_port
from fraudstream.launcher import _started, _status_loop

from .conftest import isolated_settings, settings_env

#: What an earlier run left in var/log/worker.log: its metrics port (nothing listens there now) and its readiness.
EARLIER_RUN = (b"[2026-12-01 10:00:00,000] [1234] [INFO] fraudstream worker: metrics on http://127.0.0.1:{port}/metrics\n"
               b"[2026-12-01 10:00:05,000] [1234] [INFO] [^Worker]: Ready\n"
               b"[2026-12-01 10:05:00,000] [1234] [INFO] [^Worker]: Stopping...\n")


def test_duration_stops_the_run_and_failed_scrapes_are_said(tmp_path: Path):
    """A worker that never answers on its metrics port: every status is a line saying so, and --duration ends it."""
    url = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # alive, never serving
    stop = threading.Event()
    out, err = io.StringIO(), io.StringIO()
    args = argparse.Namespace(duration=1.0, status_every=0.3)
    result: list = []

    def loop() -> None:
        with redirect_stdout(out), redirect_stderr(err):
            result.append(_status_loop(url, worker, stop, args, time.monotonic(), "simulator, console, worker"))

    try:
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        thread.join(10)
        stopped = not thread.is_alive()
        stop.set()  # without the fix, it would loop on
        thread.join(5)
    finally:
        worker.kill()
        worker.wait()
    assert stopped, "--duration 1 did not stop the status loop within 10 s"
    said = out.getvalue() + err.getvalue()
    assert url in said and "did not answer" in said, said
    assert "stopping: simulator, console, worker\n" in said, said


@pytest.fixture(scope="module")
def second_run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, float, Path]:
    """``fraudstream run --duration 4`` in a directory whose var/log/worker.log an earlier run wrote."""
    tmp = tmp_path_factory.mktemp("run")
    logs = tmp / "var" / "log"
    logs.mkdir(parents=True)
    (logs / "worker.log").write_bytes(EARLIER_RUN.replace(b"{port}", str(free_port()).encode()))
    settings = isolated_settings(broker, tmp, console_port=0)  # free ports: other runs may be on this host
    argv = [sys.executable, "-m", "fraudstream", "run", "--customers", "40", "--terminals", "80", "--days", "3",
            "--rate", "40000", "--investigate", "5", "--duration", "4", "--status-every", "1"]
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=tmp, env={**settings_env(settings), "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        stdout, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the run stops what it started
        stdout, _ = proc.communicate(timeout=60)
        pytest.fail(f"fraudstream run --duration 4 still ran after 120 s:\n{stdout}")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout), time.monotonic() - started, logs


def test_a_second_run_reads_its_own_worker_and_stops_at_duration(second_run):
    run, seconds, logs = second_run
    assert run.returncode == 0, run.stdout
    status = [line for line in run.stdout.splitlines() if re.match(r"\[\s*\d+s\].* auth/s ", line)]
    assert status, f"no status line:\n{run.stdout}"
    port = re.search(r"metrics: http://[\d.]+:(\d+)/metrics", run.stdout)
    assert port and f":{port.group(1)}/metrics" in (logs / "worker.log").read_text().split("Stopping...", 1)[1]
    # The earlier run's output is still there: the log is appended to, not lost.
    assert (logs / "worker.log").read_text().startswith("[2026-12-01 10:00:00,000]")


def test_the_status_line_shows_lag_and_latency(second_run):
    run, _, _ = second_run
    status = [line for line in run.stdout.splitlines() if re.match(r"\[\s*\d+s\].* auth/s ", line)]
    assert status and all(" lag " in line and " p99 " in line for line in status), run.stdout
    assert any(re.search(r" lag [\d,]+", line) for line in status), run.stdout


def test_a_summary_when_the_run_stops(second_run):
    run, _, _ = second_run
    summary = run.stdout[run.stdout.index("summary"):] if "summary" in run.stdout else ""
    assert summary, run.stdout
    scored = re.search(r"([\d,]+) authorizations scored", summary)
    assert scored and int(scored.group(1).replace(",", "")) > 0, summary
    assert "stopping: simulator, console, worker\n" in run.stdout, "the broker is the test's, not the run's: it is not named"
    assert re.search(r"p50 [\d.]+ m?s", summary) and re.search(r"p99 [\d.]+ m?s", summary), summary
    assert "alerts" in summary and "blocks" in summary and "labels" in summary and "messages behind" in summary
    assert "var/log/worker.log" in summary and "--duration" in summary, summary


def test_the_stopping_line_names_the_console_and_the_broker_only_if_embedded():
    assert _started(True, "simulator", "console", "worker") == "simulator, console, worker, embedded broker"
    assert _started(False, "simulator", "console", "worker") == "simulator, console, worker"
