#!/usr/bin/env python3
"""Generate the fraudstream Grafana dashboards (deploy/grafana/dashboards/*.json).

The JSON files are committed; this script is their source. After changing it:

    python deploy/grafana/generate_dashboards.py          # rewrite the JSON files
    python deploy/grafana/generate_dashboards.py --check  # exit 1 if they are out of date

Standard library only. Every expression may use only metrics that
fraudstream/metrics.py defines, recording rules of deploy/prometheus/rules/, `up`
and `ALERTS`: tests/deploy/test_grafana.py checks that, and that each parses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"

#: uid of the datasource in provisioning/datasources/prometheus.yml.
DS_UID = "fraudstream-prometheus"
DS = {"type": "prometheus", "uid": DS_UID}
#: Selector of the workers chosen in the `instance` variable.
SEL = 'job="fraudstream",instance=~"$instance"'
RI = "$__rate_interval"

Panel = dict[str, Any]


# --------------------------------------------------------------------------- pieces
def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    t = {"datasource": DS, "refId": ref, "expr": expr, "legendFormat": legend or "__auto", "range": True, "instant": False}
    t.update(extra)
    return t


def _targets(queries: list[tuple[str, str]] | list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for i, q in enumerate(queries):
        extra = q[2] if len(q) > 2 else {}  # type: ignore[misc]
        out.append(target(q[0], q[1], chr(ord("A") + i), **extra))
    return out


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


GREEN = thresholds((None, "green"))


def timeseries(title: str, queries: list, unit: str = "short", description: str = "", *, w: int = 12, h: int = 8,
               min_: float | None = None, max_: float | None = None, stack: bool = False,
               steps: dict[str, Any] | None = None, legend_calcs: tuple[str, ...] = ("mean", "max", "lastNotNull"),
               fill: int = 10) -> Panel:
    defaults: dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": fill, "gradientMode": "none", "showPoints": "never",
            "spanNulls": False, "axisPlacement": "auto", "axisSoftMin": 0,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            "thresholdsStyle": {"mode": "dashed" if steps else "off"},
        },
        "thresholds": steps or GREEN,
        "mappings": [],
    }
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": DS, "_size": (w, h),
        "targets": _targets(queries),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"showLegend": True, "displayMode": "table", "placement": "bottom", "calcs": list(legend_calcs)},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(title: str, expr: str, unit: str = "short", description: str = "", *, steps: dict[str, Any] | None = None,
         w: int = 4, h: int = 4, decimals: int | None = None, legend: str = "", graph: bool = True) -> Panel:
    defaults: dict[str, Any] = {"unit": unit, "color": {"mode": "thresholds"}, "thresholds": steps or GREEN, "mappings": []}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat", "title": title, "description": description, "datasource": DS, "_size": (w, h),
        "targets": [target(expr, legend)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background", "graphMode": "area" if graph else "none", "justifyMode": "auto",
            "orientation": "auto", "textMode": "auto", "wideLayout": True, "showPercentChange": False,
        },
    }


def heatmap(title: str, expr: str, unit: str, description: str = "", *, w: int = 12, h: int = 8, scheme: str = "Oranges") -> Panel:
    return {
        "type": "heatmap", "title": title, "description": description, "datasource": DS, "_size": (w, h),
        "targets": [target(expr, "{{le}}", format="heatmap")],
        "fieldConfig": {"defaults": {"custom": {"hideFrom": {"legend": False, "tooltip": False, "viz": False},
                                                "scaleDistribution": {"type": "linear"}}},
                        "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": scheme, "steps": 64, "exponent": 0.5, "fill": "dark-orange",
                      "reverse": False, "scale": "exponential"},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": False},
            "yAxis": {"axisPlacement": "left", "reverse": False, "unit": unit},
        },
    }


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (24, 1)}


def layout(panels: list[Panel]) -> list[Panel]:
    """Give ids and gridPos: left to right, wrapping at 24 columns; a row starts a new line."""
    x = y = line_h = 0
    out = []
    for pid, p in enumerate(panels, 1):
        w, h = p.pop("_size")
        if p["type"] == "row" or x + w > 24:
            x, y, line_h = 0, y + line_h, 0
        p = {"id": pid, "gridPos": {"h": h, "w": w, "x": x, "y": y}, **p}
        if not p.get("description"):
            p.pop("description", None)
        out.append(p)
        x, line_h = x + w, max(line_h, h)
        if p["type"] == "row":
            x, y, line_h = 0, y + h, 0
    return out


def dashboard(uid: str, title: str, description: str, panels: list[Panel], *, time_from: str = "now-6h") -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["fraudstream"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m"]},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [{"type": "dashboards", "tags": ["fraudstream"], "title": "Fraudstream", "asDropdown": False,
                   "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False,
                   "tooltip": "", "url": ""}],
        "annotations": {"list": [
            {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
             "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"},
            {"datasource": DS, "enable": True, "hide": False, "iconColor": "red", "name": "Firing fraudstream alerts",
             "expr": 'ALERTS{alertname=~"Fraudstream.*",alertstate="firing"}', "step": "1m",
             "titleFormat": "{{alertname}}", "textFormat": "{{severity}} {{instance}}{{topic}}",
             "tagKeys": "severity", "useValueForTime": False},
        ]},
        "templating": {"list": [{
            "name": "instance", "label": "Worker", "type": "query", "datasource": DS,
            "definition": 'label_values(up{job="fraudstream"}, instance)',
            "query": {"query": 'label_values(up{job="fraudstream"}, instance)', "refId": "PrometheusVariableQueryEditor-VariableQuery",
                      "qryType": 1},
            "refresh": 2, "regex": "", "sort": 1, "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "hide": 0,
        }]},
        "panels": layout(panels),
    }


def hq(q: float, metric: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{{{SEL}}}[{RI}])))"


# --------------------------------------------------------------------------- dashboards
def operations() -> dict[str, Any]:
    p: list[Panel] = [
        row("Overview"),
        stat("Workers up", 'sum(up{job="fraudstream"})', description="Workers Prometheus scrapes successfully (all workers).",
             steps=thresholds((None, "red"), (1, "green")), graph=False),
        stat("Workers down", 'count(up{job="fraudstream"} == 0) or vector(0)', description="Alert: FraudstreamWorkerDown.",
             steps=thresholds((None, "green"), (1, "red")), graph=False),
        stat("Consumed (fleet)", "sum(fraudstream:authorizations_consumed:rate1m)", "reqps",
             description="Authorizations read per second by all workers (recording rule). Alert: FraudstreamNoAuthorizations.",
             steps=thresholds((None, "red"), (0.001, "green"))),
        stat("p99 end-to-end latency (fleet)", "max(fraudstream:end_to_end_latency_seconds:p99_5m)", "s",
             description="Arrival on fraud.authorizations to score produced, 99th percentile over 5 minutes. Alert: FraudstreamLatencyHigh (> 1s).",
             steps=thresholds((None, "green"), (0.5, "yellow"), (1, "red"))),
        stat("Consumer lag (fleet)", "sum(fraudstream:consumer_lag:sum)", "short",
             description="Messages behind, all topics and partitions. Alert: FraudstreamConsumerLagGrowing.",
             steps=thresholds((None, "green"), (1000, "yellow"), (10000, "red"))),
        stat("Firing fraudstream alerts", 'count(ALERTS{alertname=~"Fraudstream.*",alertstate="firing"}) or vector(0)',
             description="Alerts of deploy/prometheus/rules/alerts.yml firing now.",
             steps=thresholds((None, "green"), (1, "red")), graph=False),
        row("Throughput"),
        timeseries("Authorizations consumed and scored", [
            (f"sum by (instance) (rate(fraudstream_authorizations_consumed_total{{{SEL}}}[{RI}]))", "consumed {{instance}}"),
            (f"sum by (instance) (rate(fraudstream_authorizations_scored_total{{{SEL}}}[{RI}]))", "scored {{instance}}"),
        ], "reqps", "Per worker. Scored below consumed means authorizations are being dead-lettered."),
        timeseries("Batch size", [
            (hq(0.5, "fraudstream_batch_size"), "p50"),
            (hq(0.99, "fraudstream_batch_size"), "p99"),
            (f"sum(rate(fraudstream_batch_size_sum{{{SEL}}}[{RI}])) / sum(rate(fraudstream_batch_size_count{{{SEL}}}[{RI}]))", "mean"),
        ], "short", "Authorizations per scored batch (BATCH_SIZE caps it)."),
        row("Latency"),
        timeseries("End-to-end latency percentiles", [
            (hq(0.5, "fraudstream_end_to_end_latency_seconds"), "p50"),
            (hq(0.9, "fraudstream_end_to_end_latency_seconds"), "p90"),
            (hq(0.99, "fraudstream_end_to_end_latency_seconds"), "p99"),
        ], "s", "From the authorization's arrival on fraud.authorizations (its record timestamp) to its score produced; how far event time is behind shows below. Alert: FraudstreamLatencyHigh (p99 > 1s).",
            steps=thresholds((None, "green"), (1, "red"))),
        timeseries("Batch processing time", [
            (hq(0.5, "fraudstream_batch_processing_seconds"), "p50"),
            (hq(0.99, "fraudstream_batch_processing_seconds"), "p99"),
            (f"sum(rate(fraudstream_batch_processing_seconds_sum{{{SEL}}}[{RI}])) / "
             f"sum(rate(fraudstream_batch_processing_seconds_count{{{SEL}}}[{RI}]))", "mean"),
        ], "s", "Time to score one batch."),
        heatmap("End-to-end latency distribution",
                f"sum by (le) (increase(fraudstream_end_to_end_latency_seconds_bucket{{{SEL}}}[{RI}]))", "s",
                "Authorizations per latency bucket.", scheme="Blues"),
        timeseries("Age of the newest scored authorization", [
            (f"time() - fraudstream_last_authorization_timestamp_seconds{{{SEL}}}", "{{instance}}"),
        ], "s", "Wall clock minus the event time of the newest authorization each worker scored: grows when a worker "
                "stalls or its input dries up.", steps=thresholds((None, "green"), (300, "red"))),
        row("Backlog"),
        timeseries("Consumer lag per partition", [
            (f"fraudstream_consumer_lag{{{SEL}}}", "{{topic}} p{{partition}} ({{instance}})"),
        ], "short", "Messages behind the fetch high-water mark, per topic and partition.", w=16),
        timeseries("Consumer lag per topic (fleet)", [
            ("fraudstream:consumer_lag:sum", "{{topic}}"),
        ], "short", "Summed over partitions (recording rule). Alert: FraudstreamConsumerLagGrowing (> 10000 and rising).",
            w=8, steps=thresholds((None, "green"), (10000, "red"))),
        row("Errors"),
        timeseries("Dead letters by reason", [
            (f"sum by (topic, reason) (rate(fraudstream_dead_letters_total{{{SEL}}}[{RI}]))", "{{topic}}: {{reason}}"),
        ], "reqps", "Messages sent to the dead-letter topic. Alert: FraudstreamDeadLetterRateHigh.", stack=True),
        timeseries("Dead-letter ratio (fleet)", [
            ("fraudstream:dead_letter_ratio:rate5m", "dead letters / authorizations consumed"),
        ], "percentunit", "Alert: FraudstreamDeadLetterRateHigh (> 1%).", steps=thresholds((None, "green"), (0.01, "red"))),
        timeseries("Late and duplicate authorizations", [
            (f"sum by (instance) (rate(fraudstream_late_authorizations_total{{{SEL}}}[{RI}]))", "late {{instance}}"),
            (f"sum by (instance) (rate(fraudstream_duplicate_authorizations_total{{{SEL}}}[{RI}]))", "duplicate {{instance}}"),
        ], "reqps", "Late: older than the grace period (scored, not aggregated). Duplicate: redelivered, answered from the "
                    "snapshot."),
        timeseries("Broker errors", [
            (f"sum by (instance, kind) (rate(fraudstream_broker_errors_total{{{SEL}}}[{RI}]))", "{{kind}} {{instance}}"),
        ], "reqps", "Errors talking to the broker. Alert: FraudstreamBrokerErrors (> 0.1/s for 10m).",
            steps=thresholds((None, "green"), (0.1, "red"))),
        row("Resources"),
        timeseries("Worker memory", [
            (f"process_resident_memory_bytes{{{SEL}}}", "resident {{instance}}"),
            (f"fraudstream_rocksdb_memory_bytes{{{SEL}}}", "of it RocksDB {{instance}}"),
            (f'fraudstream_allocator_bytes{{{SEL},kind="in_use"}}', "C allocator in use {{instance}}"),
            (f'fraudstream_allocator_bytes{{{SEL},kind="free"}}', "C allocator held free {{instance}}"),
        ], "bytes", "Resident memory of each worker: flat once its live states and RocksDB caches are full "
                    "(FRAUDSTREAM_LIVE_STATES_MAX, FRAUDSTREAM_ROCKSDB_MEMORY_MB). Resident growth that 'C allocator "
                    "in use' follows is a leak (alert: FraudstreamMemoryInUseGrowing); growth it does not follow is memory the "
                    "allocator holds free.", fill=0),
        timeseries("Worker CPU", [
            (f"rate(process_cpu_seconds_total{{{SEL}}}[{RI}])", "{{instance}}"),
        ], "short", "Cores each worker uses: one worker uses at most one (a single event loop); near 1, add workers.",
            fill=0, steps=thresholds((None, "green"), (0.9, "red"))),
        timeseries("Worker scrape status", [
            ('up{job="fraudstream",instance=~"$instance"}', "{{instance}}"),
        ], "short", "1 when the last scrape of the worker succeeded. Alert: FraudstreamWorkerDown.", w=24, h=6,
            min_=0, max_=1, legend_calcs=("min", "lastNotNull")),
    ]
    return dashboard("fraudstream-operations", "Fraudstream / Operations",
                     "Is the pipeline keeping up: throughput, latency, lag, errors.", p)


def fraud() -> dict[str, Any]:
    p: list[Panel] = [
        row("Alerts"),
        stat("Alerts last 24h", 'sum(fraudstream_alerts_last_24h{job="fraudstream"})',
             description="New alerts (not updates) in the last 24 hours of event time, all workers.", graph=True),
        stat("Daily alert budget", 'max(fraudstream_alert_budget_per_day{job="fraudstream"})',
             description="Cards the review team can check a day (ALERT_BUDGET_PER_DAY).", graph=False),
        stat("Budget used (24h)", "max(fraudstream:alert_budget_usage:ratio)", "percentunit",
             description="Alerts of the last 24h over the daily budget. Alert: FraudstreamAlertVolumeOffBudget (> 200% or "
                         "< 25% for 1h).",
             steps=thresholds((None, "red"), (0.25, "yellow"), (0.5, "green"), (1.5, "yellow"), (2, "red"))),
        stat("Alerts in the last hour", f'sum(increase(fraudstream_alerts_total{{{SEL}}}[1h]))',
             description="Alerts published in the last hour, every action.", graph=False),
        stat("Rule changes rejected (24h)", f'sum(increase(fraudstream_rule_rejections_total{{{SEL}}}[24h]))',
             description="Malformed rule changes refused. Alert: FraudstreamRuleChangeRejected.",
             steps=thresholds((None, "green"), (1, "red")), graph=False, decimals=0),
        stat("High-score share (score > 0.9)",
             f'1 - sum(rate(fraudstream_score_bucket{{{SEL},le="0.9"}}[1h])) / sum(rate(fraudstream_score_count{{{SEL}}}[1h]))',
             "percentunit", description="Share of authorizations of the last hour that scored above 0.9.", decimals=3),
        timeseries("Alerts by action", [
            (f"sum by (action) (rate(fraudstream_alerts_total{{{SEL}}}[{RI}])) * 3600", "{{action}}"),
        ], "short", "Alerts published per hour, by action.", stack=True),
        timeseries("Alerts last 24h vs budget", [
            ("fraudstream:alerts_last_24h:sum", "alerts last 24h"),
            ("fraudstream:alert_budget_per_day:max", "budget"),
            ("2 * fraudstream:alert_budget_per_day:max", "2x budget (alert above)"),
            ("0.25 * fraudstream:alert_budget_per_day:max", "0.25x budget (alert below)"),
        ], "short", "All workers (recording rules). Alert: FraudstreamAlertVolumeOffBudget.", fill=0),
        timeseries("Alert threshold by partition", [
            (f"max by (partition) (fraudstream_alert_threshold{{{SEL}}})", "partition {{partition}}"),
        ], "short", "Adaptive score threshold: it moves so that about the budget is alerted a day, between "
                    "THRESHOLD_FLOOR and THRESHOLD_CEILING.", w=24, min_=0, max_=1, fill=0),
        row("Scores"),
        heatmap("Score distribution", f"sum by (le) (increase(fraudstream_score_bucket{{{SEL}}}[{RI}]))", "short",
                "Authorizations per model-score bucket (0.05 wide).", w=16),
        timeseries("Mean score", [
            (f"sum(rate(fraudstream_score_sum{{{SEL}}}[{RI}])) / sum(rate(fraudstream_score_count{{{SEL}}}[{RI}]))", "mean"),
        ], "short", "Mean model score of the authorizations scored.", w=8, min_=0),
        row("Rules"),
        timeseries("Rule hits", [
            (f"sum by (rule, mode) (rate(fraudstream_rule_hits_total{{{SEL}}}[{RI}])) * 3600", "{{rule}} ({{mode}})"),
        ], "short", "Rule matches per hour, by rule and mode."),
        timeseries("Rule precision", [
            (f"avg by (rule) (fraudstream_rule_precision{{{SEL}}})", "{{rule}}"),
        ], "percentunit", "Confirmed fraud among a rule's labelled hits.", min_=0, max_=1, fill=0),
        row("Labels"),
        timeseries("Labels by source and status", [
            (f"sum by (source, status) (rate(fraudstream_labels_total{{{SEL}}}[{RI}])) * 3600", "{{source}}: {{status}}"),
        ], "short", "Labels received per hour, by source and what became of them.", stack=True),
        timeseries("Label delay by source", [
            (f"histogram_quantile(0.5, sum by (source, le) (rate(fraudstream_label_delay_seconds_bucket{{{SEL}}}[1h])))",
             "p50 {{source}}"),
            (f"histogram_quantile(0.9, sum by (source, le) (rate(fraudstream_label_delay_seconds_bucket{{{SEL}}}[1h])))",
             "p90 {{source}}"),
        ], "s", "Authorization time to label time, over the last hour of labels.", fill=0),
        *detection(),
    ]
    return dashboard("fraudstream-fraud", "Fraudstream / Fraud",
                     "What the pipeline decides: alerts against the review budget, scores, rules, labels, and what "
                     "it found of the confirmed fraud.", p, time_from="now-24h")


def detection() -> list[Panel]:
    """A fraud center director's figures, per day: counted when a fraud label arrives, in event time (README)."""
    job = '{job="fraudstream"}'
    found_share = f"fraudstream:compromised_cards_found_by_model:ratio1d{job}"
    prevented_share = f"fraudstream:fraud_amount_prevented:ratio1d{job}"
    cards = "Cards are counted once, when the first label confirming their fraud arrives (chargeback, analyst or " \
            "customer report), from what the worker knew then."
    return [
        row("Detection of confirmed fraud (last 24 hours)"),
        stat("Cards found by the model", found_share, "percentunit",
             description="Of the cards confirmed compromised in the last 24 hours, the share the model had alerted "
                         "(from their first confirmed fraudulent authorization to the label) before the label came: "
                         "the live counterpart of card recall@k. " + cards,
             steps=thresholds((None, "red"), (0.25, "yellow"), (0.5, "green")), decimals=1),
        stat("Median time to detection", f"fraudstream:detection_delay_seconds:p50_1d{job}", "s",
             description="First confirmed fraudulent authorization of a card to its first alert or block, median "
                         "over the cards found in the last 24 hours (the missed ones are counted apart). " + cards,
             steps=thresholds((None, "green"), (3600, "yellow"), (86400, "red"))),
        stat("p90 time to detection", f"fraudstream:detection_delay_seconds:p90_1d{job}", "s",
             description="As the median, 90th percentile.",
             steps=thresholds((None, "green"), (6 * 3600, "yellow"), (3 * 86400, "red"))),
        stat("Fraud amount prevented", prevented_share, "percentunit",
             description="Of the fraudulent amount confirmed in the last 24 hours, the share on authorizations at "
                         "or after the card's first alert or block (the alerted or blocked one included). Amounts "
                         "in each authorization's own currency, summed as they are.",
             steps=thresholds((None, "red"), (0.25, "yellow"), (0.5, "green")), decimals=1),
        stat("Compromised cards confirmed", f"sum(fraudstream:compromised_cards:increase1d{job})",
             description="Cards confirmed compromised in the last 24 hours, all workers. " + cards, decimals=0),
        stat("Compromised cards missed", f'sum(fraudstream:compromised_cards:increase1d{{job="fraudstream",found="missed"}})',
             description="Of them, the cards neither alerted nor blocked from their first confirmed fraud to the "
                         "label: found by the customer or the chargeback alone.",
             steps=thresholds((None, "green"), (1, "yellow")), decimals=0),
        timeseries("Compromised cards per day, by what found them", [
            (f"fraudstream:compromised_cards:increase1d{job}", "{{found}}"),
        ], "short", "Over the 24 hours before each point. model: alerted before the label; label: blocked by an "
                    "earlier label; missed: neither. " + cards, w=8, stack=True),
        timeseries("Time to detection per day", [
            (f"fraudstream:detection_delay_seconds:p50_1d{job}", "median"),
            (f"fraudstream:detection_delay_seconds:p90_1d{job}", "p90"),
        ], "s", "Over the cards found in the 24 hours before each point: first confirmed fraud to first alert or "
                "block.", w=8, fill=0),
        timeseries("Found by the model and amount prevented per day", [
            (found_share, "cards found by the model"),
            (prevented_share, "fraud amount prevented"),
        ], "percentunit", "Shares over the 24 hours before each point.", w=8, min_=0, max_=1, fill=0),
    ]


def model() -> dict[str, Any]:
    p: list[Panel] = [
        row("Quality"),
        stat("Alert precision", f"avg(fraudstream_model_alert_precision{{{SEL}}})", "percentunit",
             description="Share of recently labelled alerts that were fraud. Alert: FraudstreamModelPrecisionDropping.",
             steps=thresholds((None, "red"), (0.1, "yellow"), (0.3, "green")), w=6),
        stat("Fraud recall", f"avg(fraudstream_model_fraud_recall{{{SEL}}})", "percentunit",
             description="Share of recently labelled frauds that were alerted.",
             steps=thresholds((None, "red"), (0.2, "yellow"), (0.5, "green")), w=6),
        stat("Average precision", f"avg(fraudstream_model_average_precision{{{SEL}}})", "percentunit",
             description="Average precision of the scores on recent labels.",
             steps=thresholds((None, "red"), (0.1, "yellow"), (0.3, "green")), w=6),
        stat("Oldest model checkpoint", f"max(time() - fraudstream_model_last_checkpoint_timestamp_seconds{{{SEL}}})", "s",
             description="Alert: FraudstreamModelCheckpointStale (> 600s).",
             steps=thresholds((None, "green"), (120, "yellow"), (600, "red")), w=6, graph=False),
        timeseries("Alert precision, recall and average precision", [
            (f"fraudstream_model_alert_precision{{{SEL}}}", "alert precision {{instance}}"),
            (f"fraudstream_model_fraud_recall{{{SEL}}}", "fraud recall {{instance}}"),
            (f"fraudstream_model_average_precision{{{SEL}}}", "average precision {{instance}}"),
        ], "percentunit", "On recent labels: biased (analysts only label alerts) and late (chargebacks take weeks), "
                          "indicators rather than an evaluation.", min_=0, max_=1, fill=0),
        timeseries("Alert precision vs a day ago", [
            (f"avg(fraudstream_model_alert_precision{{{SEL}}})", "now"),
            (f"avg(fraudstream_model_alert_precision{{{SEL}}} offset 1d)", "1 day ago"),
        ], "percentunit", "Alert: FraudstreamModelPrecisionDropping (< 10%, or under half of a day ago, for 1h).",
            min_=0, max_=1, fill=0, steps=thresholds((None, "red"), (0.1, "green"))),
        row("Learning"),
        timeseries("Examples learned (model version)", [
            (f"fraudstream_model_examples_learned{{{SEL}}}", "{{instance}}"),
        ], "short", "Training examples the model has learned: its version.", fill=0),
        timeseries("Learn rate by stream", [
            (f"sum by (stream) (rate(fraudstream_model_learn_total{{{SEL}}}[{RI}]))", "{{stream}}"),
        ], "reqps", "Training examples applied per second, by label stream.", stack=True),
        timeseries("Seconds since last checkpoint", [
            (f"time() - fraudstream_model_last_checkpoint_timestamp_seconds{{{SEL}}}", "{{instance}}"),
        ], "s", "Expected every CHECKPOINT_INTERVAL_S (30s by default). Alert: FraudstreamModelCheckpointStale (> 600s).",
            steps=thresholds((None, "green"), (600, "red")), fill=0),
        timeseries("Labels received", [
            (f"sum by (source, status) (rate(fraudstream_labels_total{{{SEL}}}[{RI}])) * 3600", "{{source}}: {{status}}"),
        ], "short", "Labels received per hour: the quality numbers above only move when labels arrive.", stack=True),
        row("State"),
        timeseries("Cards and merchants tracked", [
            (f"fraudstream_cards_tracked{{{SEL}}}", "cards {{instance}}"),
            (f"fraudstream_merchants_tracked{{{SEL}}}", "merchants {{instance}}"),
        ], "short", "Cards and merchants whose state each worker holds (RocksDB: its estimate).", w=8, fill=0),
        timeseries("Snapshots pending", [
            (f"fraudstream_snapshots_pending{{{SEL}}}", "{{instance}}"),
        ], "short", "Scored authorizations awaiting a label or maturity (MATURITY_DAYS).", w=8, fill=0),
        timeseries("State evicted", [
            (f"sum by (instance) (rate(fraudstream_state_evicted_total{{{SEL}}}[{RI}]))", "{{instance}}"),
        ], "reqps", "Idle cards and merchants evicted per second.", w=8),
        timeseries("RocksDB memory", [
            (f"fraudstream_rocksdb_memory_bytes{{{SEL}}}", "{{instance}}"),
        ], "bytes", "Memtables, block cache, index and filter blocks of each worker's tables: at most "
           "FRAUDSTREAM_ROCKSDB_MEMORY_MB for all of them, whatever partitions the worker owns.", w=8, fill=0),
        timeseries("Live states", [
            (f"sum by (kind) (fraudstream_live_states{{{SEL}}})", "{{kind}}"),
        ], "short", "States held as Python objects, the rest stay in the tables: each kind at most "
           "FRAUDSTREAM_LIVE_STATES_MAX per worker (card transactions a tenth of it). About 4 KB of heap per card.",
            w=8, fill=0),
    ]
    return dashboard("fraudstream-model", "Fraudstream / Model",
                     "How the online model is doing: label-based quality, learning, checkpoints, state.", p,
                     time_from="now-7d")


DASHBOARDS = {"operations.json": operations, "fraud.json": fraud, "model.json": model}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if the JSON files differ from what would be generated")
    ap.add_argument("--out", type=Path, default=OUT, help="directory of the JSON files (default: %(default)s)")
    args = ap.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print("out of date (run python deploy/grafana/generate_dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
