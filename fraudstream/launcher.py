"""``fraudstream run``: broker, topics, a worker and the simulator, with a live status line.

What a newcomer sees first, so it explains itself: where the metrics are, what
each number means, and Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from fraudstream.broker import EmbeddedBroker, free_port
from fraudstream.config import Settings
from fraudstream.kafka.topics import create_topics
from fraudstream.processes import WorkerProcess

__all__ = ["run_pipeline", "scrape"]

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
    with ExitStack() as stack:
        if settings.embedded:
            broker = stack.enter_context(EmbeddedBroker(settings.embedded_port, log_path=logs / "broker.log"))
            settings = settings.with_overrides(broker=broker.url)
            print(f"embedded broker on {broker.bootstrap_servers}  (FRAUDSTREAM_BROKER={broker.url})")
        run_id = time.strftime("%Y%m%d-%H%M%S")
        settings = settings.with_overrides(metrics_port=_worker_metrics_port(settings),
                                           state_dir=str(Path(settings.state_dir) / run_id),
                                           app_id=f"{settings.app_id}" if not settings.embedded else settings.app_id)
        created = create_topics(settings)
        print(f"topics: {sum(v == 'created' for v in created.values())} created, {sum(v == 'exists' for v in created.values())} already there")

        worker = WorkerProcess(settings, logs / "worker.log", new_session=True)  # Ctrl-C here stops it in order
        stack.callback(worker.stop)
        metrics_url = f"http://{settings.metrics_host}:{worker.metrics_port}/metrics"
        print(f"worker started (log: {logs / 'worker.log'}); metrics: {metrics_url}")
        print("  Prometheus: prometheus --config.file=deploy/prometheus/prometheus.yml   "
              "Grafana: provisioning in deploy/grafana/ (datasource + 3 dashboards)")
        from fraudstream.console.process import ConsoleProcess

        console = ConsoleProcess(settings, logs / "console.log", [metrics_url], new_session=True)
        stack.callback(console.stop)
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
        print("Ctrl-C stops everything.\n")
        return _status_loop(metrics_url, worker.process, stop, args, time.monotonic())


def _status_loop(url: str, worker: subprocess.Popen, stop: threading.Event, args: argparse.Namespace, t0: float) -> int:
    last: dict[str, float] = {}
    last_t = time.monotonic()
    first_alert: float | None = None
    try:
        while not stop.wait(args.status_every):
            if worker.poll() is not None:
                print(f"the worker exited with code {worker.returncode}: see var/log/worker.log", file=sys.stderr)
                return 1
            try:
                m = scrape(url)
            except OSError:
                continue
            now = time.monotonic()
            rate = (m.get("fraudstream_authorizations_scored_total", 0) - last.get("fraudstream_authorizations_scored_total", 0)) / (now - last_t)
            alerts = m.get("fraudstream_alerts_total", 0.0)
            if alerts and first_alert is None:
                first_alert = now - t0
                print(f"first alert {first_alert:.1f} s after start")
            precision = m.get("fraudstream_model_alert_precision")
            by_action = {a: m.get(f'fraudstream_alerts_total{{action="{a}"}}', 0.0) for a in ("alert", "update", "block")}
            shown = f"{precision:.2f}" if precision is not None and m.get("fraudstream_labels_total") else "  - "
            print(
                f"[{now - t0:5.0f}s] {rate:7.0f} auth/s  scored {m.get('fraudstream_authorizations_scored_total', 0):8.0f}  "
                f"alerts {by_action['alert']:5.0f} (+{by_action['update']:.0f} updates, {by_action['block']:.0f} blocks)  "
                f"labels {m.get('fraudstream_labels_total', 0):6.0f}  learned {m.get('fraudstream_model_examples_learned', 0):6.0f}  "
                f"alert precision {shown}",
                flush=True,
            )
            last, last_t = m, now
            if args.duration is not None and now - t0 >= args.duration:
                break
    except KeyboardInterrupt:
        pass
    print("\nstopping: simulator, worker, broker")
    stop.set()
    return 0
