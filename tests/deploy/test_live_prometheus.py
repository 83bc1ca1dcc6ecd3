"""A real Prometheus scrapes two fake workers and evaluates the rules and every dashboard query.

promtool checks syntax and the unit tests check the rules on made-up series; this
catches what only shows at run time against the real exposition of
fraudstream.metrics.Metrics: vector matching errors ("many-to-many", "duplicate
series"), label values that differ from what a query expects (a histogram's `le`),
a panel that stays empty. Everything listens on 127.0.0.1 and stops at the end.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from deploy_support import PROM_DIR, PROMTOOL_MISSING, dashboard_files, iter_exprs, rule_files

#: Queries that are rightly empty on a Prometheus a few seconds old with nothing wrong.
MAY_BE_EMPTY = ("offset 1d", 'ALERTS{alertname=~"Fraudstream.*",alertstate="firing"}')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str, **params: str) -> dict:
    url = f"http://127.0.0.1:{port}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


class FakeWorkers:
    """Two workers' /metrics, fed with plausible traffic until stopped."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        from fraudstream.metrics import Metrics

        self.metrics, self.servers, self.ports = [], [], []
        for _ in range(2):
            registry = CollectorRegistry()
            self.metrics.append(Metrics(registry))
            port = _free_port()
            server = start_http_server(port, addr="127.0.0.1", registry=registry)
            self.servers.append(server[0] if isinstance(server, tuple) else server)
            self.ports.append(port)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rnd = random.Random(7)
        for m in self.metrics:
            m.budget.set(100)
        tick = 0
        while not self.stop.is_set():
            tick += 1
            for i, m in enumerate(self.metrics):
                m.consumed.inc(100)
                m.scored.inc(100)
                # 0.1% dead-lettered, 0.4/s per worker: under both thresholds of FraudstreamDeadLetterRateHigh.
                m.dead_letters.labels("fraud.authorizations", "not_json").inc(1 if tick % 10 == 0 else 0)
                m.late.inc()
                m.duplicates.inc()
                for _ in range(20):
                    m.latency.observe(rnd.random())  # p99 stays under FraudstreamLatencyHigh's 1s
                    m.processing.observe(rnd.random() / 10)
                    m.score.observe(rnd.random())
                m.batch_size.observe(100)
                m.lag.labels("fraud.authorizations", str(i)).set(rnd.randint(0, 100))
                m.alerts.labels("new").inc()
                m.alerts.labels("update").inc()
                m.threshold.labels(str(i)).set(0.8)
                m.alerts_24h.set(60)
                m.labels.labels("analyst", "learned").inc()
                m.label_delay.labels("analyst").observe(7200)
                m.model_examples.inc(10)
                m.model_learned.labels("feedback").inc()
                m.checkpoint_ts.set(time.time())
                m.alert_precision.set(0.4)
                m.fraud_recall.set(0.6)
                m.average_precision.set(0.5)
                m.rule_hits.labels("velocity", "live").inc()
                m.rule_precision.labels("velocity").set(0.3)
                m.rule_rejections.inc(0)
                m.cards.set(1000)
                m.merchants.set(100)
                m.snapshots.set(50)
                m.evicted.inc()
                m.broker_errors.labels("fetch").inc(0)
                m.last_event_ts.set(time.time() - 1)
            self.stop.wait(0.25)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for s in self.servers:
            s.shutdown()


@pytest.fixture(scope="module")
def live_prometheus(tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(PROMTOOL_MISSING.replace("promtool", "prometheus", 1), pytrace=False)
    tmp: Path = tmp_path_factory.mktemp("prometheus")
    workers = FakeWorkers()
    # The committed configuration, with this test's targets and 1s intervals.
    cfg = (PROM_DIR / "prometheus.yml").read_text(encoding="utf-8")
    targets = "\n".join(f"          - 127.0.0.1:{p}" for p in workers.ports)
    cfg = (cfg.replace("          - localhost:9464  # example: one worker on this host; add one line per worker", targets)
              .replace("scrape_interval: 5s", "scrape_interval: 1s").replace("scrape_timeout: 4s", "scrape_timeout: 1s")
              .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
              .replace("  - rules/*.yml", f"  - {PROM_DIR / 'rules'}/*.yml"))
    assert all(f"127.0.0.1:{p}" in cfg for p in workers.ports) and "scrape_interval: 1s" in cfg
    (tmp / "prometheus.yml").write_text(cfg, encoding="utf-8")
    port = _free_port()
    log = open(tmp / "prometheus.log", "w")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # ready once both targets are up and rates have two samples
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()
            try:
                up = _get(port, "/api/v1/query", query='sum(up{job="fraudstream"})')["data"]["result"]
                rate = _get(port, "/api/v1/query", query="fraudstream:authorizations_consumed:rate1m")["data"]["result"]
                if up and float(up[0]["value"][1]) == 2 and rate and float(rate[0]["value"][1]) > 0:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus not ready:\n" + (tmp / "prometheus.log").read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(3)  # a few more evaluations: every group has run
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        workers.close()


def test_every_rule_evaluates_without_error(live_prometheus):
    groups = _get(live_prometheus, "/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {g["file"] for g in groups} == {str(f) for f in rule_files()}
    bad = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not bad, bad
    firing = [r["name"] for r in rules if r["type"] == "alerting" and r["state"] != "inactive"]
    assert not firing, f"alerts active on a healthy pipeline: {firing}"


def test_every_dashboard_query_runs_and_returns_data(live_prometheus):
    problems = {}
    for path in dashboard_files():
        for where, expr in iter_exprs(json.loads(path.read_text(encoding="utf-8"))):
            query = expr.replace("$__rate_interval", "10s").replace('"$instance"', '".*"')
            try:
                data = _get(live_prometheus, "/api/v1/query", query=query)
            except urllib.error.HTTPError as e:  # 400/422: the query is rejected
                problems[f"{path.name}{where}"] = e.read().decode(errors="replace")
                continue
            if data["status"] != "success":
                problems[f"{path.name}{where}"] = data
            elif not data["data"]["result"] and not any(s in expr for s in MAY_BE_EMPTY):
                problems[f"{path.name}{where}"] = "no data"
    assert not problems, json.dumps(problems, indent=1)
