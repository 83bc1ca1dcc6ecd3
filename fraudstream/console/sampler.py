"""The live overview's figures: the workers' Prometheus metrics sampled every few seconds, a bounded history kept.

:func:`derive` turns two scrapes (``fraudstream.launcher.scrape``'s dicts, summed over the workers) into one
:class:`Sample`; it is plain arithmetic, tested without a worker.

>>> a = {"fraudstream_authorizations_scored_total": 100.0, "fraudstream_alerts_last_24h": 3.0}
>>> b = {"fraudstream_authorizations_scored_total": 160.0, "fraudstream_alerts_last_24h": 4.0,
...      "fraudstream_alert_budget_per_day": 100.0, "fraudstream_consumer_lag": 12.0}
>>> s = derive(a, b, 2.0, t=1_700_000_000.0)
>>> s.authorizations_per_s, s.alerts_24h, s.budget_per_day, s.lag
(30.0, 4.0, 100.0, 12.0)
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from fraudstream.metrics import quantile

__all__ = ["Sample", "derive", "History", "merge"]

_LATENCY = "fraudstream_end_to_end_latency_seconds"
_BUCKET = re.compile(re.escape(_LATENCY) + r'_bucket\{le="([^"]+)"\}')


@dataclass(frozen=True)
class Sample:
    """One point of every chart; None where the workers do not know yet."""

    t: float  # unix seconds
    authorizations_per_s: float | None
    scored_total: float
    alerts_24h: float | None
    budget_per_day: float | None
    alert_precision: float | None
    fraud_recall: float | None
    average_precision: float | None
    lag: float | None
    latency_mean_s: float | None
    latency_p95_s: float | None
    dead_letters_per_s: float | None
    workers_up: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def merge(scrapes: list[dict[str, float]]) -> dict[str, float]:
    """Several workers' scrapes as one: counters and gauges summed, the ratios (precision...) averaged."""
    out: dict[str, float] = {}
    for scrape in scrapes:
        for name, v in scrape.items():
            out[name] = out.get(name, 0.0) + v
    for name in ("fraudstream_model_alert_precision", "fraudstream_model_fraud_recall", "fraudstream_model_average_precision",
                 "fraudstream_alert_budget_per_day"):
        if name in out and scrapes:
            out[name] /= sum(1 for s in scrapes if name in s)
    return out


def _latency_buckets(m: dict[str, float]) -> dict[float, float]:
    out = {}
    for key, v in m.items():
        match = _BUCKET.fullmatch(key)
        if match:
            out[float(match.group(1))] = v
    return out


def derive(prev: dict[str, float] | None, cur: dict[str, float], dt: float, t: float, workers_up: int = 1) -> Sample:
    """One :class:`Sample` from the scrape ``cur`` and the one ``dt`` seconds before it (rates need both)."""

    def rate(name: str) -> float | None:
        if prev is None or dt <= 0 or name not in cur:
            return None
        return max(cur[name] - prev.get(name, 0.0), 0.0) / dt  # a restarted worker's counter starts again

    def gauge(name: str) -> float | None:
        return cur.get(name)

    mean = p95 = None
    count, total = cur.get(f"{_LATENCY}_count"), cur.get(f"{_LATENCY}_sum")
    if prev is not None and count is not None and total is not None:
        n = count - prev.get(f"{_LATENCY}_count", 0.0)
        if n > 0:  # over the last interval only: a figure for now, not since the worker started
            mean = (total - prev.get(f"{_LATENCY}_sum", 0.0)) / n
            now_b, before = _latency_buckets(cur), _latency_buckets(prev)
            p95 = quantile(0.95, {b: v - before.get(b, 0.0) for b, v in now_b.items()})
    labelled = cur.get("fraudstream_labels_total", 0.0) > 0
    return Sample(
        t=t, authorizations_per_s=rate("fraudstream_authorizations_scored_total"),
        scored_total=cur.get("fraudstream_authorizations_scored_total", 0.0), alerts_24h=gauge("fraudstream_alerts_last_24h"),
        budget_per_day=gauge("fraudstream_alert_budget_per_day"),
        alert_precision=gauge("fraudstream_model_alert_precision") if labelled else None,
        fraud_recall=gauge("fraudstream_model_fraud_recall") if labelled else None,
        average_precision=gauge("fraudstream_model_average_precision") if labelled else None,
        lag=gauge("fraudstream_consumer_lag"), latency_mean_s=mean, latency_p95_s=p95,
        dead_letters_per_s=rate("fraudstream_dead_letters_total"), workers_up=workers_up)


class History:
    """The last ``size`` samples (at 2 s apart, 720 is the last 24 minutes), and the previous raw scrape.

    >>> h = History(size=2)
    >>> for i in range(3): _ = h.add({"fraudstream_authorizations_scored_total": 10.0 * i}, t=float(i))
    >>> [s.authorizations_per_s for s in h.samples]
    [10.0, 10.0]
    """

    def __init__(self, size: int = 720) -> None:
        self.samples: deque[Sample] = deque(maxlen=size)
        self._prev: dict[str, float] | None = None
        self._prev_t: float | None = None
        self.error: str | None = None

    def add(self, scrape: dict[str, float], t: float, workers_up: int = 1) -> Sample:
        dt = t - self._prev_t if self._prev_t is not None else 0.0
        sample = derive(self._prev, scrape, dt, t, workers_up)
        self.samples.append(sample)
        self._prev, self._prev_t = scrape, t
        return sample
