"""What `fraudstream run` prints from the worker's metrics: the status line and the summary (pure, no worker)."""

from __future__ import annotations

import math
import re

import pytest

from fraudstream.metrics import LATENCY_BUCKETS
from fraudstream.status import RunSummary, latency_quantile, status_line

LATENCY = "fraudstream_end_to_end_latency_seconds"


def scrape(scored: float, latencies: dict[float, float], lag: float | None = 0.0, **extra: float) -> dict[str, float]:
    """A scrape as ``fraudstream.launcher.scrape`` returns it: ``latencies`` maps a bucket's bound to the
    observations falling in it (made cumulative here, as the exposition has them)."""
    out = {"fraudstream_authorizations_scored_total": scored, **extra}
    total = 0.0
    for bound in (*LATENCY_BUCKETS, math.inf):
        total += latencies.get(bound, 0.0)
        out[f'{LATENCY}_bucket{{le="{"+Inf" if bound == math.inf else float(bound)}"}}'] = total
    out[f"{LATENCY}_count"] = total
    if lag is not None:
        out["fraudstream_consumer_lag"] = lag
        out['fraudstream_consumer_lag{topic="fraud.authorizations",partition="0"}'] = lag
    return out


def test_latency_quantile_of_the_interval_between_two_scrapes():
    before = scrape(100, {0.01: 100})  # the first 100 were fast
    after = scrape(200, {0.01: 100, 2.5: 100})  # the next 100 took 1-2.5 s
    assert latency_quantile(0.5, after) == pytest.approx(0.01)  # since the start
    assert 1.0 < latency_quantile(0.5, after, since=before) <= 2.5  # the interval only
    assert latency_quantile(0.99, before, since=before) is None  # nothing observed in between


def test_status_line_shows_lag_and_latency():
    before = scrape(100, {0.01: 100}, lag=0)
    after = scrape(400, {0.01: 100, 0.05: 300}, lag=1234, fraudstream_alerts_total=3.0)
    line = status_line(after, before, seconds=3.0, elapsed=12.0)
    assert re.search(r" 100 auth/s +scored +400 ", line), line
    assert "lag 1,234" in line
    assert "p99 50 ms" in line  # of the interval's 300 observations, all in (25 ms, 50 ms]


def test_status_line_says_when_it_does_not_know():
    line = status_line(scrape(0, {}, lag=None), {}, seconds=3.0, elapsed=3.0)
    assert "lag -" in line and "p99 -" in line


def test_summary_of_a_run():
    last = scrape(5000, {0.01: 4000, 0.25: 990, 2.5: 10}, lag=7,
                  **{"fraudstream_alerts_total": 60.0, 'fraudstream_alerts_total{action="alert"}': 40.0,
                     'fraudstream_alerts_total{action="update"}': 15.0, 'fraudstream_alerts_total{action="block"}': 5.0,
                     "fraudstream_labels_total": 30.0, "fraudstream_model_examples_learned": 1200.0})
    text = RunSummary(last, seconds=100.0, why="--duration 100 s", logs=["var/log/worker.log", "var/log/broker.log"]).text()
    assert "100 s" in text and "--duration" in text
    assert "5,000 authorizations scored (50/s)" in text
    assert "40 alerts (+15 updates), 5 blocks" in text
    assert "30 labels received" in text and "1,200 examples" in text
    assert "7 messages behind" in text
    assert "p50 " in text and "p99 " in text and "ms" in text
    assert "var/log/worker.log" in text and "var/log/broker.log" in text


def test_summary_without_any_figures_says_why_and_where_to_look():
    text = RunSummary(None, seconds=5.0, why="Ctrl-C", logs=["var/log/worker.log"],
                      unreachable="http://127.0.0.1:9/metrics").text()
    assert "no figures" in text and "http://127.0.0.1:9/metrics" in text and "var/log/worker.log" in text
