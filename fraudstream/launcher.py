"""``fraudstream run``: broker, topics, a worker and the simulator, with a live status line.

What a newcomer sees first, so it explains itself: where the metrics are, what
each number means, and Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from fraudstream.broker import EmbeddedBroker, free_port
from fraudstream.config import Settings
from fraudstream.kafka.topics import create_topics
from fraudstream.processes import WorkerProcess
from fraudstream.status import RunSummary, status_line

__all__ = ["run_pipeline", "scrape"]

#: How long the worker may take to join its group and recover its tables before the run gives up.
_READY_TIMEOUT_S = 600.0
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+|NaN)$", re.M)


def scrape(url: str) -> dict[str, float]:
    """Sum of each metric's samples over their label sets (``name`` and ``name{labels}`` keys both)."""
    with urllib.request.urlopen(url, timeout=2) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for name, labels, value in _SAMPLE.findall(text):
        v = float(value)
        out[name] = out.get(name, 0.0) + v
        if labels:
            out[name + labels] = v
    return out


def _worker_metrics_port(settings: Settings) -> int:
    try:
        with __import__("socket").socket() as s:
            s.bind((settings.metrics_host, settings.metrics_port))
        return settings.metrics_port
    except OSError:
        return free_port()  # another worker on this host has the default port


def run_pipeline(settings: Settings, args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logs = Path("var/log")
    logs.mkdir(parents=True, exist_ok=True)
    log_files: list[Path] = []
    embedded = settings.embedded  # the settings name the started broker's address from here on
    with ExitStack() as stack:
        if embedded:
            broker = stack.enter_context(EmbeddedBroker(settings.embedded_port, log_path=logs / "broker.log"))
            log_files.append(logs / "broker.log")
            settings = settings.with_embedded_broker(broker.url)
            print(f"embedded broker on {broker.bootstrap_servers}  (FRAUDSTREAM_BROKER={broker.url})")
        run_id = time.strftime("%Y%m%d-%H%M%S")
        settings = settings.with_overrides(metrics_port=_worker_metrics_port(settings),
                                           state_dir=str(Path(settings.state_dir) / run_id),
                                           app_id=f"{settings.app_id}" if not settings.embedded else settings.app_id)
        created = create_topics(settings)
        print(f"topics: {sum(v == 'created' for v in created.values())} created, {sum(v == 'exists' for v in created.values())} already there")

        worker = WorkerProcess(settings, logs / "worker.log", new_session=True)  # Ctrl-C here stops it in order
        stack.callback(worker.stop)
        log_files.insert(0, logs / "worker.log")
        metrics_url = f"http://{settings.metrics_host}:{worker.metrics_port}/metrics"
        print(f"worker started (log: {logs / 'worker.log'}); metrics: {metrics_url}")
        print("  Prometheus: prometheus --config.file=deploy/prometheus/prometheus.yml   "
              "Grafana: provisioning in deploy/grafana/ (datasource + 3 dashboards)")
        # The traffic (and --duration) starts once the worker can score it: not while it joins its group.
        try:
            waited = worker.wait_ready(timeout=_READY_TIMEOUT_S)
        except RuntimeError as e:
            print(f"the worker did not become ready: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"\nstopping: {_started(embedded, 'worker')}")
            return 0
        print(f"worker ready after {waited:.0f} s (joined its consumer group, recovered its tables)")
        from fraudstream.console.process import ConsoleProcess

        console = ConsoleProcess(settings, logs / "console.log", [metrics_url], new_session=True)
        stack.callback(console.stop)
        log_files.append(logs / "console.log")
        print(f"console: {console.url}  (review queue, card lookup, fraud reports, rules, live overview; log: {logs / 'console.log'})")

        from fraudstream.simulate import HandbookSimulator, LabelDelays, produce

        start = args.start  # the day given, or --days before today (fraudstream.cli.resolve_run_start)
        sim = HandbookSimulator(n_customers=args.customers, n_terminals=args.terminals, n_days=args.days, start=start, seed=args.seed)
        print(f"simulating {args.customers} cards at {args.terminals} merchants over {args.days} days from {start}, "
              f"{args.rate:g}x real time; analysts check {args.investigate} cards a day")
        counts: dict = {}

        def simulate() -> None:
            counts["result"] = produce(settings, sim, LabelDelays(seed=args.seed), rate_factor=args.rate,
                                       investigator_k=args.investigate, stop=stop, start=start, drain_labels=False)

        sim_thread = threading.Thread(target=simulate, name="simulator", daemon=True)
        sim_thread.start()
        print("Ctrl-C stops everything." + (f" Stops by itself after {args.duration:g} s." if args.duration else "") + "\n")
        outcome = _status_loop(metrics_url, worker.process, stop, args, time.monotonic(),
                               _started(embedded, "simulator", "console", "worker"))
    # Everything has stopped: what the run did, last on the screen.
    print(RunSummary(outcome.last, outcome.seconds, outcome.why, logs=[str(p) for p in log_files],
                     unreachable=metrics_url).text())
    return outcome.code


@dataclass(frozen=True)
class _Outcome:
    """How the status loop ended: the exit code, the last figures the worker gave (None: it never answered)."""

    code: int
    last: dict[str, float] | None
    seconds: float
    why: str


def _started(embedded: bool, *parts: str) -> str:
    """What the run started, in the order it stops them, for the "stopping:" line: the broker only if embedded.

    >>> _started(True, "simulator", "console", "worker")
    'simulator, console, worker, embedded broker'
    """
    return ", ".join([*parts, "embedded broker"] if embedded else parts)


def _status_loop(url: str, worker: subprocess.Popen, stop: threading.Event, args: argparse.Namespace, t0: float,
                 started: str) -> _Outcome:
    """A status line every ``args.status_every`` seconds until Ctrl-C, SIGTERM, the worker's exit or
    ``args.duration`` seconds after ``t0``, whatever the scrapes do: one that fails says so. ``started`` names what
    stops then."""
    last: dict[str, float] = {}
    last_t = t0
    first_alert: float | None = None
    deadline = t0 + args.duration if args.duration is not None else math.inf
    code, why = 0, "Ctrl-C"
    try:
        while True:
            if stop.wait(max(0.0, min(args.status_every, deadline - time.monotonic()))):
                why = "SIGTERM"
                break
            if worker.poll() is not None:
                print(f"the worker exited with code {worker.returncode}: see var/log/worker.log", file=sys.stderr)
                code, why = 1, "the worker's exit"
                break
            now = time.monotonic()
            try:
                m = scrape(url)
            except OSError as e:
                print(f"[{now - t0:5.0f}s] no status: the worker's metrics at {url} did not answer "
                      f"({getattr(e, 'reason', e)}); its log: var/log/worker.log", flush=True)
            else:
                if m.get("fraudstream_alerts_total", 0.0) and first_alert is None:
                    first_alert = now - t0
                    print(f"first alert {first_alert:.1f} s after start")
                print(status_line(m, last, now - last_t, now - t0), flush=True)
                last, last_t = m, now
            if time.monotonic() >= deadline:
                why = f"--duration {args.duration:g} s"
                break
    except KeyboardInterrupt:
        pass
    try:  # the final figures, before the worker stops
        last = scrape(url)
    except OSError:
        pass
    except KeyboardInterrupt:  # a second Ctrl-C: the figures of the last status line will do
        pass
    print(f"\nstopping: {started}", flush=True)
    stop.set()
    return _Outcome(code, last or None, time.monotonic() - t0, why)
