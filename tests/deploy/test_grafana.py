"""The Grafana provisioning and dashboards in deploy/grafana, and the metric names every expression uses.

Each PromQL expression (dashboards, recording and alerting rules) must parse (promtool
parses it as a recording rule) and select only metrics the worker actually exposes
(fraudstream/metrics.py, observed once on a fresh registry) or recording rules that
exist. A panel pointing at a metric that does not exist fails here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import (
    GRAFANA_DIR,
    all_rules,
    dashboard_files,
    exposed_metric_names,
    grafana_to_promql,
    iter_exprs,
    load_yaml_file,
    metric_names,
    recorded_names,
    run_promtool,
)

EXPECTED_DASHBOARDS = {"operations.json", "fraud.json", "model.json"}
PANEL_TYPES = {"row", "timeseries", "stat", "heatmap", "gauge", "bargauge", "table", "text"}
#: Series Prometheus itself provides that dashboards may use.
PROMETHEUS_BUILTINS = {"up", "ALERTS", "ALERTS_FOR_STATE"}


@pytest.fixture(scope="module")
def exposed() -> set[str]:
    return exposed_metric_names()


@pytest.fixture(scope="module")
def datasource_uid() -> str:
    doc = load_yaml_file(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    sources = [d for d in doc["datasources"] if d["type"] == "prometheus"]
    assert len(sources) == 1
    assert sources[0]["uid"]
    return sources[0]["uid"]


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _dashboards() -> list[Path]:
    return dashboard_files()


def _all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(_all_panels(p.get("panels") or []))  # panels of collapsed rows
    return out


def _dashboard_exprs() -> list[tuple[str, str]]:
    return [(f"{path.name}{where}", expr) for path in dashboard_files() for where, expr in iter_exprs(_load(path))]


def _rule_exprs() -> list[tuple[str, str]]:
    return [(r.get("alert") or r["record"], r["expr"]) for r in all_rules()]


def unknown_names(expr: str, exposed: set[str], recorded: set[str]) -> set[str]:
    """Names an expression selects that are neither exposed by the worker, recorded, nor Prometheus' own."""
    return {n for n in metric_names(expr) if n not in exposed and n not in recorded and n not in PROMETHEUS_BUILTINS}


# --------------------------------------------------------------------------- provisioning
def test_dashboard_files():
    assert {p.name for p in dashboard_files()} == EXPECTED_DASHBOARDS


def test_dashboard_provider_points_at_a_directory():
    doc = load_yaml_file(GRAFANA_DIR / "provisioning" / "dashboards" / "fraudstream.yml")
    assert doc["apiVersion"] == "1"
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/var/lib/grafana/dashboards")


def test_dashboards_are_up_to_date_with_their_generator():
    proc = subprocess.run([sys.executable, str(GRAFANA_DIR / "generate_dashboards.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- structure
def test_dashboard_uids_and_titles_are_unique():
    docs = [_load(p) for p in dashboard_files()]
    assert len({d["uid"] for d in docs}) == len(docs)
    assert len({d["title"] for d in docs}) == len(docs)


@pytest.mark.parametrize("path", _dashboards(), ids=lambda p: p.name)
def test_dashboard_structure(path: Path, datasource_uid: str):
    doc = _load(path)  # valid JSON
    assert doc["uid"] and doc["title"]
    assert 36 <= doc["schemaVersion"] <= 41
    panels = _all_panels(doc["panels"])
    assert panels
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    titles = [p["title"] for p in panels]
    assert len(titles) == len(set(titles)), f"duplicate panel titles: {sorted({t for t in titles if titles.count(t) > 1})}"
    occupied: dict[tuple[int, int], str] = {}
    for p in panels:
        assert p["type"] in PANEL_TYPES, p["title"]
        g = p["gridPos"]
        assert all(isinstance(g[k], int) and g[k] >= 0 for k in ("x", "y", "w", "h")), p["title"]
        assert g["w"] >= 1 and g["h"] >= 1 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in occupied, f"{p['title']!r} overlaps {occupied[(x, y)]!r}"
                occupied[(x, y)] = p["title"]
        if p["type"] in ("row", "text"):
            continue
        assert p["datasource"]["uid"] == datasource_uid, p["title"]
        targets = p["targets"]
        assert targets, f"{p['title']}: no query"
        assert len({t["refId"] for t in targets}) == len(targets), p["title"]
        for t in targets:
            assert t.get("datasource", p["datasource"])["uid"] == datasource_uid, p["title"]
            assert t["expr"].strip(), p["title"]
        if p["type"] == "heatmap":
            assert all(t.get("format") == "heatmap" for t in targets), p["title"]
            assert all(re.search(r"_bucket\b", t["expr"]) and "by (le)" in t["expr"] for t in targets), p["title"]
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            assert var["datasource"]["uid"] == datasource_uid, var["name"]
    for ann in doc.get("annotations", {}).get("list", []):
        if "expr" in ann:
            assert ann["datasource"]["uid"] == datasource_uid, ann["name"]


def test_expected_panels_exist():
    titles = {path.name: {p["title"] for p in _all_panels(_load(path)["panels"])} for path in dashboard_files()}
    expected = {
        "operations.json": {"Authorizations consumed and scored", "End-to-end latency percentiles", "Batch processing time",
                            "Consumer lag per partition", "Dead letters by reason", "Late and duplicate authorizations",
                            "Broker errors", "Workers up"},
        "fraud.json": {"Alerts by action", "Alert threshold by partition", "Alerts last 24h vs budget", "Score distribution",
                       "Rule hits", "Rule precision", "Labels by source and status", "Label delay by source",
                       "Cards found by the model", "Median time to detection", "p90 time to detection",
                       "Fraud amount prevented", "Time to detection per day"},
        "model.json": {"Alert precision", "Fraud recall", "Average precision", "Examples learned (model version)",
                       "Learn rate by stream", "Seconds since last checkpoint", "Cards and merchants tracked",
                       "Snapshots pending"},
    }
    for name, want in expected.items():
        assert not want - titles[name], f"{name} lacks {sorted(want - titles[name])}"


# --------------------------------------------------------------------------- PromQL
def _check_parse(exprs: list[tuple[str, str]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool check rules on one recording rule per expression (one group each, named after where it comes from)."""
    lines = ["groups:"]
    for i, (where, expr) in enumerate(exprs):
        lines += [f"  - name: {json.dumps(f'{i} {where}')}", "    rules:",
                  f"      - record: parse_check:expr_{i}", f"        expr: {json.dumps(expr)}"]
    path = tmp_path / "exprs.yml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run_promtool("check", "rules", "--lint=none", path)


def test_every_dashboard_expression_parses(tmp_path):
    exprs = [(where, grafana_to_promql(expr)) for where, expr in _dashboard_exprs()]
    assert len(exprs) >= 40
    proc = _check_parse(exprs, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


def test_the_parse_check_rejects_bad_promql(tmp_path):
    proc = _check_parse([("broken", "sum(rate(fraudstream_alerts_total[5m])")], tmp_path)
    assert proc.returncode != 0


def test_grafana_variables_are_substituted():
    assert grafana_to_promql('rate(x{instance=~"$instance"}[$__rate_interval])') == 'rate(x{instance=~".*"}[1m])'


def test_exposed_metric_names(exposed):
    # Counters get _total (and _created), histograms _bucket/_sum/_count, gauges their own name.
    for name in ("fraudstream_authorizations_consumed_total", "fraudstream_alerts_total", "fraudstream_consumer_lag",
                 "fraudstream_end_to_end_latency_seconds_bucket", "fraudstream_end_to_end_latency_seconds_count",
                 "fraudstream_label_delay_seconds_sum", "fraudstream_model_last_checkpoint_timestamp_seconds"):
        assert name in exposed
    assert "fraudstream_authorizations_consumed" not in exposed
    assert "fraudstream_consumer_lag_total" not in exposed


def test_unknown_names_are_caught(exposed):
    recorded = recorded_names()
    assert unknown_names("sum(rate(fraudstream_alerts_total[5m]))", exposed, recorded) == set()
    assert unknown_names("sum(rate(fraudstream_alerts[5m]))", exposed, recorded) == {"fraudstream_alerts"}
    assert unknown_names("fraudstream_consumer_lag_total", exposed, recorded) == {"fraudstream_consumer_lag_total"}
    assert unknown_names("fraudstream:no_such:rule > 0", exposed, recorded) == {"fraudstream:no_such:rule"}
    assert unknown_names('histogram_quantile(0.9, sum by (le) (rate(fraudstream_score_bucket{le="0.5"}[1h])))',
                         exposed, recorded) == set()


@pytest.mark.parametrize("source", ["dashboards", "rules"])
def test_every_expression_uses_exposed_metrics_or_existing_recording_rules(source, exposed):
    recorded = recorded_names()
    exprs = _dashboard_exprs() if source == "dashboards" else _rule_exprs()
    assert exprs
    problems = {}
    used: set[str] = set()
    for where, expr in exprs:
        names = metric_names(expr)
        used |= names
        # The fraudstream_ / fraudstream: identifiers, extracted independently of the tokenizer.
        prefixed = set(re.findall(r"\bfraudstream[_:][A-Za-z0-9_:]+", re.sub(r'"[^"]*"', '""', expr)))
        assert prefixed <= names, f"{where}: {sorted(prefixed - names)} not seen by metric_names()"
        bad = unknown_names(expr, exposed, recorded)
        if bad:
            problems[where] = sorted(bad)
    assert not problems, "expressions select metrics the worker does not expose:\n" + "\n".join(
        f"  {w}: {n}" for w, n in problems.items())
    assert any(n.startswith("fraudstream_") for n in used)
