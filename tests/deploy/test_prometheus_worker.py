"""A real Prometheus scrapes a real worker fed by the simulator, and evaluates the rules and every dashboard query.

Everything is real and local: the embedded broker (session fixture), ``fraudstream worker`` as a subprocess, the
simulator with its investigator, and the Debian ``prometheus`` server on a free 127.0.0.1 port with a temporary
TSDB, the committed deploy/prometheus/prometheus.yml (targets and intervals rewritten) and the committed rule
files. promtool and the unit tests check the rules on made-up series; this catches what only shows against the
worker's real exposition: a counter that does not count what it says, vector matching errors ("many-to-many",
"duplicate series"), label values that differ from what a query expects (a histogram's ``le``), a panel that
stays empty.

The traffic is the handbook simulation from 2018: event times are years old, yet the end-to-end latency, from an
authorization's arrival on fraud.authorizations to its score, stays within the histogram's finite buckets.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from deploy_support import PROM_DIR, PROMTOOL_MISSING, dashboard_files, grafana_to_promql, iter_exprs, rule_files

from fraudstream.broker import EmbeddedBroker
from fraudstream.contracts import encode
from fraudstream.kafka.topics import create_topics
from fraudstream.metrics import FOUND, LATENCY_BUCKETS
from fraudstream.simulate import HandbookSimulator, LabelDelays, ProduceCounts, produce
from tests.conftest import WorkerProcess, isolated_settings
from tests.conftest import produce as produce_raw

pytestmark = pytest.mark.broker

JOB = 'job="fraudstream"'
ALERT_BUDGET = 10
#: A shadow rule (it never changes a decision) that fires on the handbook's big-ticket fraud, so rule hits and
#: rule precision have real series.
SHADOW_RULE = {"id": "R-TEST-BIG-TICKET", "description": "Amount above 220 (handbook scenario 1)",
               "condition": "amount > 220", "mode": "shadow", "action": "alert"}

#: Dashboard queries that are rightly empty on a healthy pipeline and a Prometheus a minute old, and why.
ALLOWED_EMPTY_QUERIES = {
    "offset 1d": "compares with a day ago: this Prometheus is a minute old",
    'ALERTS{alertname=~"Fraudstream.*",alertstate="firing"}': "nothing fires within a minute: every alert that "
    "could be true here has a `for` of 10m or more",
    "fraudstream_broker_errors_total": "the worker had no broker error, so the labelled counter has no child",
}
#: Recording rules rightly without a series on this run, and why.
ALLOWED_EMPTY_RECORDS = {
    "fraudstream:broker_errors:rate5m": "the worker had no broker error, so the labelled counter has no child",
}
#: Sample names of fraudstream.metrics.Metrics a worker rightly never exposes on this run, and why.
ALLOWED_UNEXPOSED = {
    "fraudstream_broker_errors_total": "no broker error: the labelled counter has no child",
    "fraudstream_broker_errors_created": "no broker error: the labelled counter has no child",
}
#: Alerts whose condition this run's data rules out: any state but inactive is a bug in the rule or the worker.
MUST_BE_INACTIVE = {
    "FraudstreamWorkerDown",  # the worker is up for the whole run
    "FraudstreamNoAuthorizations",  # it consumed thousands
    "FraudstreamConsumerLagGrowing",  # fewer messages in all than the alert's 10000 floor
    "FraudstreamDeadLetterRateHigh",  # one dead letter among thousands of authorizations
    "FraudstreamBrokerErrors",  # no broker errors
    "FraudstreamRuleChangeRejected",  # the one rule published is valid
    "FraudstreamModelCheckpointStale",  # checkpoints every 2s
}


# --------------------------------------------------------------------------- Prometheus
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusServer:
    """``prometheus`` on 127.0.0.1:<free port>, scraping ``targets`` every second, with the committed rules."""

    def __init__(self, targets: list[str], workdir: Path) -> None:
        binary = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
        if binary is None:
            pytest.fail(PROMTOOL_MISSING.replace("promtool", "prometheus", 1), pytrace=False)
        self.workdir = workdir
        config = self._config(targets)
        (workdir / "prometheus.yml").write_text(config, encoding="utf-8")
        self.port = _free_port()
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    @staticmethod
    def _config(targets: list[str]) -> str:
        """The committed configuration with these targets, 1s scrapes and evaluations, and absolute rule paths."""
        cfg = (PROM_DIR / "prometheus.yml").read_text(encoding="utf-8")
        example = "          - localhost:9464  # example: one worker on this host; add one line per worker"
        replacements = {
            example: "\n".join(f"          - {t}" for t in targets),
            "scrape_interval: 5s": "scrape_interval: 1s",
            "scrape_timeout: 4s": "scrape_timeout: 1s",
            "evaluation_interval: 15s": "evaluation_interval: 1s",
            "  - rules/*.yml": f"  - {PROM_DIR / 'rules'}/*.yml",
        }
        for old, new in replacements.items():
            assert old in cfg, f"deploy/prometheus/prometheus.yml changed: no {old.strip()!r} to rewrite for the test"
            cfg = cfg.replace(old, new)
        return cfg

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def get(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """The instant vector ``expr`` evaluates to now."""
        return self.get("/api/v1/query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        """The value of a one-series result; None when empty."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr}: expected at most one series, got {result}"
        return float(result[0]["value"][1]) if result else None

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited:\n{self.log()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def once_scored(worker: WorkerProcess, n: int, then_s: float = 3.0, timeout: float = 180.0) -> threading.Event:
    """An event set ``then_s`` seconds after ``worker`` has scored ``n`` authorizations (or after ``timeout``)."""
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and worker.alive():
            try:
                if worker.metric("fraudstream_authorizations_scored_total") >= n:
                    break
            except OSError:  # the endpoint busy: try again
                pass
            time.sleep(0.5)
        time.sleep(then_s)
        done.set()

    threading.Thread(target=watch, name="once-scored", daemon=True).start()
    return done


def poll(what: str, fetch: Callable[[], Any], timeout: float, ok: Callable[[Any], bool] = bool,
         interval: float = 0.5) -> Any:
    """``fetch()`` until ``ok`` of its value; the last value in the failure message."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fetch()
        except OSError as e:  # urllib's errors included
            last = e
        else:
            if ok(last):
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")
        time.sleep(interval)


# --------------------------------------------------------------------------- the run
@dataclass
class Run:
    prometheus: PrometheusServer
    worker: WorkerProcess
    counts: ProduceCounts
    n: int
    frauds: int  # fraudulent authorizations simulated
    exposition: str  # the worker's /metrics at the end


@pytest.fixture(scope="module")
def run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Broker, worker, Prometheus, then the simulator; ready once Prometheus holds the final values."""
    tmp = tmp_path_factory.mktemp("prometheus-worker")
    settings = isolated_settings(broker, tmp, alert_budget_per_day=ALERT_BUDGET)
    create_topics(settings)
    # What `fraudstream rules apply` sends: the rule keyed by its id. Read by the worker from the beginning.
    produce_raw(settings, settings.topic_rules, [(SHADOW_RULE["id"].encode(), encode(SHADOW_RULE))])
    worker = WorkerProcess(settings, tmp / "worker.log")  # the start_worker fixture's process, for a whole module
    prometheus: PrometheusServer | None = None
    try:
        prometheus = PrometheusServer([f"127.0.0.1:{worker.metrics_port}"], tmp)
        prometheus.wait_ready()
        worker.wait_ready()  # latency is measured from arrival: not the wait for the first rebalance
        poll("Prometheus scrapes the worker", lambda: prometheus.value(f"up{{{JOB}}}"), timeout=20, ok=lambda v: v == 1)

        # One malformed label: the dead-letter path, without touching the authorization counts.
        produce_raw(settings, settings.topic_labels, [(b"card-x", b"{not json")])
        sim = HandbookSimulator(n_customers=150, n_terminals=300, n_days=25, seed=7)
        n = len(sim.transactions())
        # The investigator answers alerts until the worker has scored every authorization (and its last alerts came),
        # not for a fixed time after the last event: on a busy machine (make test runs modules side by side) the
        # worker's first alerts came more than 10 s after it, and no disposition was made.
        counts = produce(settings, sim, LabelDelays(seed=7), investigator_k=30, investigator_linger_s=120.0,
                         stop=once_scored(worker, n))
        assert n > 2000 and counts.events == n and counts.labels > 0 and counts.dispositions > 0, counts
        assert counts.delivery_errors == 0 and counts.undelivered == 0, counts
        label_messages = counts.labels + counts.dispositions + 1

        # Prometheus has the final values: every authorization and label counted, and the slower gauges moved.
        p = prometheus
        poll(f"Prometheus sees {n} authorizations consumed",
             lambda: p.value(f"fraudstream_authorizations_consumed_total{{{JOB}}}"), timeout=40, ok=lambda v: v == n)
        poll(f"Prometheus sees {n} authorizations scored",
             lambda: p.value(f"fraudstream_authorizations_scored_total{{{JOB}}}"), timeout=20, ok=lambda v: v == n)
        poll(f"Prometheus sees {label_messages} label messages",
             lambda: p.value(f'sum(fraudstream_labels_total{{{JOB},source!="any"}})'), timeout=20,
             ok=lambda v: v == label_messages)
        poll("the model learned (training consumer)",
             lambda: p.value(f"sum(fraudstream_model_learn_total{{{JOB}}})"), timeout=30, ok=lambda v: (v or 0) > 0)
        poll("rule precision reported", lambda: p.query(f"fraudstream_rule_precision{{{JOB}}}"), timeout=15)
        poll("label delays observed", lambda: p.query(f"fraudstream_label_delay_seconds_count{{{JOB}}}"), timeout=15)
        # The recording rules have evaluated on the final values.
        poll("recording rules evaluated", lambda: p.query("fraudstream:alert_budget_usage:ratio")
             and p.query("fraudstream:model_learn:rate5m"), timeout=10)
        time.sleep(2)  # two more evaluations of every group
        exposition = worker.metrics()
        (tmp / "worker-metrics.txt").write_text(exposition, encoding="utf-8")  # kept for a failure's post-mortem
        yield Run(prometheus, worker, counts, n, int(sim.transactions().is_fraud.sum()), exposition)
    finally:
        if prometheus is not None:
            prometheus.stop()
        worker.stop()


# --------------------------------------------------------------------------- the tests
def test_pipeline_counters_in_prometheus(run: Run):
    p, n = run.prometheus, run.n
    assert p.value(f"up{{{JOB}}}") == 1
    assert p.value(f"fraudstream_authorizations_consumed_total{{{JOB}}}") == n
    assert p.value(f"fraudstream_authorizations_scored_total{{{JOB}}}") == n
    # One latency observation per authorization scored.
    assert p.value(f"fraudstream_end_to_end_latency_seconds_count{{{JOB}}}") == n
    buckets = {float(s["metric"]["le"]): float(s["value"][1])
               for s in p.query(f"fraudstream_end_to_end_latency_seconds_bucket{{{JOB}}}")}
    assert sorted(buckets) == [*LATENCY_BUCKETS, float("inf")]
    # Event times from 2018, but latency runs from arrival to score: none beyond the largest finite bucket (a
    # minute, for the simulator's burst worked off on a busy machine), and not years on average.
    assert buckets[LATENCY_BUCKETS[-1]] == n, buckets
    assert p.value(f"fraudstream_end_to_end_latency_seconds_sum{{{JOB}}}") / n < LATENCY_BUCKETS[-1]
    assert p.value(f"sum(fraudstream_alerts_total{{{JOB}}})") > 0
    assert p.value(f'fraudstream_alerts_total{{{JOB},action="alert"}}') > 0
    assert p.value(f"sum(fraudstream_labels_total{{{JOB}}})") > 0
    assert p.value(f'sum(fraudstream_labels_total{{{JOB},source="analyst"}})') == run.counts.dispositions
    assert p.value(f'fraudstream_labels_total{{{JOB},source="invalid",status="rejected"}}') == 1
    assert p.value(f'fraudstream_dead_letters_total{{{JOB},reason="not_json"}}') == 1
    assert p.value(f'sum(fraudstream_rule_hits_total{{{JOB},rule="{SHADOW_RULE["id"]}",mode="shadow"}})') > 0
    assert 0 <= p.value(f'fraudstream_rule_precision{{{JOB},rule="{SHADOW_RULE["id"]}"}}') <= 1
    assert p.value(f"fraudstream_alert_budget_per_day{{{JOB}}}") == ALERT_BUDGET
    assert p.value(f"fraudstream_model_examples_learned{{{JOB}}}") > 0


def test_the_directors_figures_count_the_compromised_cards_the_labels_confirmed(run: Run):
    p = run.prometheus
    found = {f: p.value(f'fraudstream_compromised_cards_total{{{JOB},found="{f}"}}') for f in FOUND}
    cards = sum(found.values())
    # The investigator confirms cards the model alerted, customers report cards it did not: both on this run. Each
    # card is counted at a fraudulent authorization newly confirmed, once per compromise.
    assert found["model"] > 0 and found["missed"] > 0 and found["label"] >= 0, found
    assert cards <= run.frauds, (found, run.frauds)
    # A time to detection for each card found, none for the missed ones.
    assert p.value(f"fraudstream_detection_delay_seconds_count{{{JOB}}}") == found["model"] + found["label"]
    assert p.value(f"fraudstream_detection_delay_seconds_sum{{{JOB}}}") >= 0
    amount = {o: p.value(f'fraudstream_fraud_amount_total{{{JOB},outcome="{o}"}}') for o in ("prevented", "missed")}
    assert amount["prevented"] > 0 and amount["missed"] > 0, amount
    # The day's shares the fraud dashboard shows: what the worker counted, all of it within the last day.
    model_share = poll("the share of cards found by the model",
                       lambda: p.value('fraudstream:compromised_cards_found_by_model:ratio1d{job="fraudstream"}'),
                       timeout=10, ok=lambda v: v == pytest.approx(found["model"] / cards))
    assert 0 < model_share < 1
    prevented = poll("the share of the fraud amount prevented",
                     lambda: p.value('fraudstream:fraud_amount_prevented:ratio1d{job="fraudstream"}'),
                     timeout=10, ok=lambda v: v == pytest.approx(amount["prevented"] / sum(amount.values())))
    assert 0 < prevented < 1
    assert 0 <= p.value('fraudstream:detection_delay_seconds:p50_1d{job="fraudstream"}') <= \
        p.value('fraudstream:detection_delay_seconds:p90_1d{job="fraudstream"}')
    # Prometheus holds what the worker exposes.
    exposed = {line.rpartition(" ")[0]: float(line.rpartition(" ")[2]) for line in run.exposition.splitlines()
               if line.startswith(("fraudstream_compromised_cards_total{", "fraudstream_fraud_amount_total{"))}
    assert exposed['fraudstream_compromised_cards_total{found="model"}'] == found["model"]
    assert exposed['fraudstream_fraud_amount_total{outcome="prevented"}'] == amount["prevented"]


def test_prometheus_holds_what_the_worker_exposes(run: Run):
    """The last scrape equals the worker's own /metrics for the headline counters, and every metric is ingested."""
    from deploy_support import exposed_metric_names

    worker_values = {}
    for line in run.exposition.splitlines():
        if line.startswith("fraudstream_") and "{" not in line:
            name, _, value = line.partition(" ")
            worker_values[name] = float(value)
    for name in ("fraudstream_authorizations_consumed_total", "fraudstream_authorizations_scored_total",
                 "fraudstream_end_to_end_latency_seconds_count"):
        assert run.prometheus.value(f"{name}{{{JOB}}}") == worker_values[name], name
    ingested = set(run.prometheus.get("/api/v1/label/__name__/values"))
    missing = exposed_metric_names() - ingested - set(ALLOWED_UNEXPOSED)
    assert not missing, f"defined in fraudstream/metrics.py but never scraped from the worker: {sorted(missing)}"


def test_recording_rules_evaluate(run: Run):
    p, n = run.prometheus, run.n
    assert p.value('fraudstream:authorizations_consumed:rate1m{job="fraudstream"}') > 0
    assert p.value('fraudstream:authorizations_scored:rate5m{job="fraudstream"}') > 0
    assert p.value('fraudstream:alert_budget_per_day:max{job="fraudstream"}') == ALERT_BUDGET
    # The rule is evaluated on its own schedule: while the worker still raises alerts it trails the gauge.
    deadline = time.monotonic() + 60
    while (p.value('fraudstream:alerts_last_24h:sum{job="fraudstream"}') != p.value(f"fraudstream_alerts_last_24h{{{JOB}}}")
           and time.monotonic() < deadline):
        time.sleep(1)
    assert p.value('fraudstream:alerts_last_24h:sum{job="fraudstream"}') == \
        p.value(f"fraudstream_alerts_last_24h{{{JOB}}}")
    # Latency from arrival, not from the years-old event times: the quantile is below the highest finite bucket.
    assert 0 < p.value('fraudstream:end_to_end_latency_seconds:p99_5m{job="fraudstream"}') < LATENCY_BUCKETS[-1]
    # The one dead letter creates its labelled child at 1: rate() sees no increase on a series' first sample,
    # so the ratio is 0, but it exists (the child and the consumed counter are there).
    ratio = p.value('fraudstream:dead_letter_ratio:rate5m{job="fraudstream"}')
    assert ratio is not None and 0 <= ratio < 10 / n
    assert p.query('fraudstream:consumer_lag:sum{job="fraudstream"}')
    # Every recording rule has a series, unless listed with its reason.
    groups = p.get("/api/v1/rules", type="record")["groups"]
    records = {r["name"] for g in groups for r in g["rules"]}
    assert records and set(ALLOWED_EMPTY_RECORDS) <= records
    empty = sorted(r for r in records - set(ALLOWED_EMPTY_RECORDS) if not p.query(r))
    assert not empty, f"recording rules without a series against the real worker: {empty}"


def test_every_rule_evaluates_without_error(run: Run):
    groups = run.prometheus.get("/api/v1/rules")["groups"]
    assert {g["file"] for g in groups} == {str(f) for f in rule_files()}
    rules = [r for g in groups for r in g["rules"]]
    assert all(r["lastEvaluation"] != "0001-01-01T00:00:00Z" for r in rules), "a rule was never evaluated"
    bad = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not bad, bad
    alerting = {r["name"]: r for r in rules if r["type"] == "alerting"}
    assert MUST_BE_INACTIVE <= set(alerting)
    active = {name: alerting[name]["state"] for name in MUST_BE_INACTIVE if alerting[name]["state"] != "inactive"}
    assert not active, f"alerts active although this run rules them out: {active}"
    # FraudstreamLatencyHigh: latency runs from arrival, so the years-old event times do not make it pending; its
    # p99 can still pass 1s while the simulator's burst is worked off on a busy machine, so its state is not
    # asserted (the latency itself is, in test_pipeline_counters_in_prometheus).
    # FraudstreamAlertVolumeOffBudget and FraudstreamModelPrecisionDropping depend on how the young model and
    # threshold do on 25 simulated days (both pending on the runs so far); their state is not asserted.


def test_every_dashboard_query_runs_and_returns_data(run: Run):
    problems: dict[str, Any] = {}
    checked = 0
    for path in dashboard_files():
        for where, expr in iter_exprs(json.loads(path.read_text(encoding="utf-8"))):
            query = grafana_to_promql(expr)
            checked += 1
            try:
                result = run.prometheus.query(query)
            except urllib.error.HTTPError as e:  # 400/422: the query is rejected
                problems[f"{path.name}{where}"] = e.read().decode(errors="replace")
                continue
            if not result and not any(s in expr for s in ALLOWED_EMPTY_QUERIES):
                problems[f"{path.name}{where}"] = f"no data: {query}"
    assert checked > 30
    assert not problems, json.dumps(problems, indent=1)
