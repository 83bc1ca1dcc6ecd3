"""The live overview's arithmetic on scraped metrics."""

from __future__ import annotations

from fraudstream.console.sampler import History, derive, merge
from fraudstream.metrics import quantile

L = "fraudstream_end_to_end_latency_seconds"


def test_latency_over_the_last_interval_only() -> None:
    before = {f"{L}_count": 100.0, f"{L}_sum": 1000.0, f'{L}_bucket{{le="0.1"}}': 0.0, f'{L}_bucket{{le="1.0"}}': 0.0,
              f'{L}_bucket{{le="+Inf"}}': 100.0}
    after = {f"{L}_count": 110.0, f"{L}_sum": 1002.0, f'{L}_bucket{{le="0.1"}}': 5.0, f'{L}_bucket{{le="1.0"}}': 10.0,
             f'{L}_bucket{{le="+Inf"}}': 110.0}
    s = derive(before, after, 2.0, t=0.0)
    assert s.latency_mean_s == 0.2, "ten observations, 2 s in all: not the old 10 s mean"
    assert s.latency_p95_s is not None and 0.1 < s.latency_p95_s <= 1.0
    assert derive(None, after, 0.0, t=0.0).latency_mean_s is None


def test_no_precision_before_any_label_and_restarts_give_no_negative_rates() -> None:
    s = derive({"fraudstream_authorizations_scored_total": 500.0},
               {"fraudstream_authorizations_scored_total": 10.0, "fraudstream_model_alert_precision": 0.0}, 1.0, t=0.0)
    assert s.authorizations_per_s == 0.0 and s.alert_precision is None


def test_workers_merge_counters_summed_ratios_averaged() -> None:
    m = merge([{"fraudstream_authorizations_scored_total": 1.0, "fraudstream_model_alert_precision": 0.5},
               {"fraudstream_authorizations_scored_total": 2.0, "fraudstream_model_alert_precision": 0.7}])
    assert m["fraudstream_authorizations_scored_total"] == 3.0 and abs(m["fraudstream_model_alert_precision"] - 0.6) < 1e-9
    assert quantile(0.5, {}) is None


def test_history_is_bounded() -> None:
    h = History(size=3)
    for i in range(10):
        h.add({"fraudstream_authorizations_scored_total": float(i)}, t=float(i))
    assert len(h.samples) == 3 and h.samples[-1].t == 9.0
