"""What ``fraudstream run`` tells its user: a status line every few seconds and a summary when it stops.

Both are read from scrapes of the worker's Prometheus metrics (:func:`fraudstream.launcher.scrape`'s dicts: each
metric summed over its label sets under its name, and each labelled sample under ``name{labels}``). Whether the
pipeline keeps up shows in two figures: the consumer lag (messages behind the fetch high-water mark, summed over
the worker's input topics) and the end-to-end latency (an authorization's arrival on fraud.authorizations to its
score), whose 99th percentile is read from the histogram's buckets as Prometheus's ``histogram_quantile`` does.

>>> s = {"fraudstream_authorizations_scored_total": 300.0, "fraudstream_consumer_lag": 12.0,
...      'fraudstream_end_to_end_latency_seconds_bucket{le="0.05"}': 300.0,
...      'fraudstream_end_to_end_latency_seconds_bucket{le="+Inf"}': 300.0}
>>> status_line(s, {}, seconds=3.0, elapsed=3.0)
'[    3s]     100 auth/s  scored      300  alerts     0 (+0 updates, 0 blocks)  labels      0  learned      0  alert precision   -   lag 12  p99 50 ms'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from fraudstream.metrics import quantile  # the console's live overview reads the same histogram

__all__ = ["latency_quantile", "status_line", "RunSummary"]

LATENCY = "fraudstream_end_to_end_latency_seconds"
LAG = "fraudstream_consumer_lag"
SCORED = "fraudstream_authorizations_scored_total"
ALERTS = "fraudstream_alerts_total"
LABELS = "fraudstream_labels_total"
LEARNED = "fraudstream_model_examples_learned"
PRECISION = "fraudstream_model_alert_precision"

_BUCKET = re.compile(re.escape(LATENCY) + r'_bucket\{le="([^"]+)"\}')


def _latency_buckets(scrape: dict[str, float]) -> dict[float, float]:
    return {float(m.group(1)): v for k, v in scrape.items() if (m := _BUCKET.fullmatch(k))}


def latency_quantile(q: float, scrape: dict[str, float], since: dict[str, float] | None = None) -> float | None:
    """The ``q`` quantile of the end-to-end latency observed up to ``scrape``, or only after the scrape ``since``;
    None when nothing was observed (in between).

    >>> a = {'fraudstream_end_to_end_latency_seconds_bucket{le="0.01"}': 5.0,
    ...      'fraudstream_end_to_end_latency_seconds_bucket{le="+Inf"}': 5.0}
    >>> latency_quantile(0.5, a, since=a) is None
    True
    """
    now = _latency_buckets(scrape)
    before = _latency_buckets(since) if since else {}
    return quantile(q, {b: c - before.get(b, 0.0) for b, c in now.items()})


def _seconds(value: float | None) -> str:
    """A latency as one reads it: ``-`` unknown, milliseconds below a second.

    >>> _seconds(0.0234), _seconds(2.5), _seconds(None)
    ('23 ms', '2.50 s', '-')
    """
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _lag(scrape: dict[str, float]) -> str:
    return f"{scrape[LAG]:,.0f}" if LAG in scrape else "-"  # not reported until the worker has its partitions


def _action(scrape: dict[str, float], action: str) -> float:
    return scrape.get(f'{ALERTS}{{action="{action}"}}', 0.0)


def status_line(scrape: dict[str, float], previous: dict[str, float], seconds: float, elapsed: float) -> str:
    """One status line: throughput since ``previous`` (``seconds`` ago; ``{}``: none yet), running totals, and
    whether the pipeline keeps up: the lag now and the latency's p99 of the authorizations scored since."""
    rate = (scrape.get(SCORED, 0.0) - previous.get(SCORED, 0.0)) / seconds if seconds > 0 else 0.0
    precision = scrape.get(PRECISION)
    shown = f"{precision:.2f}" if precision is not None and scrape.get(LABELS) else "  - "
    return (f"[{elapsed:5.0f}s] {rate:7.0f} auth/s  scored {scrape.get(SCORED, 0):8.0f}  "
            f"alerts {_action(scrape, 'alert'):5.0f} (+{_action(scrape, 'update'):.0f} updates, {_action(scrape, 'block'):.0f} blocks)  "
            f"labels {scrape.get(LABELS, 0):6.0f}  learned {scrape.get(LEARNED, 0):6.0f}  alert precision {shown}  "
            f"lag {_lag(scrape)}  p99 {_seconds(latency_quantile(0.99, scrape, since=previous))}")


@dataclass(frozen=True)
class RunSummary:
    """What a run did, printed when it stops: from the ``last`` scrape (None: the worker never answered, at
    ``unreachable``), over ``seconds`` of traffic, stopped for ``why``; where its ``logs`` are.

    >>> print(RunSummary(None, 5.0, "Ctrl-C", ["var/log/worker.log"], unreachable="http://127.0.0.1:9464/metrics").text())
    summary: 5 s of traffic, stopped by Ctrl-C
      no figures: the worker's metrics at http://127.0.0.1:9464/metrics never answered
      logs           var/log/worker.log
    """

    last: dict[str, float] | None
    seconds: float
    why: str
    logs: Sequence[str]
    unreachable: str | None = None

    def text(self) -> str:
        lines = [f"summary: {self.seconds:.0f} s of traffic, stopped by {self.why}"]
        m = self.last
        if m is None:
            lines.append(f"  no figures: the worker's metrics at {self.unreachable} never answered")
        else:
            scored = m.get(SCORED, 0.0)
            lines += [
                f"  scored         {scored:,.0f} authorizations scored ({scored / max(self.seconds, 1e-9):,.0f}/s)",
                f"  alerts         {_action(m, 'alert'):,.0f} alerts (+{_action(m, 'update'):,.0f} updates), "
                f"{_action(m, 'block'):,.0f} blocks",
                f"  labels         {m.get(LABELS, 0.0):,.0f} labels received; the model has learned "
                f"{m.get(LEARNED, 0.0):,.0f} examples",
                f"  lag            {_lag(m)} messages behind at the end",
                f"  latency        p50 {_seconds(latency_quantile(0.5, m))}, p99 {_seconds(latency_quantile(0.99, m))} "
                "(arrival on fraud.authorizations to score)",
            ]
        lines.append(f"  logs           {', '.join(self.logs)}")
        return "\n".join(lines)
