"""A broker that does not answer is a stall: waited for (nothing is committed meanwhile), counted once, and said.

>>> from prometheus_client import CollectorRegistry
>>> from fraudstream.metrics import Metrics
>>> metrics = Metrics(CollectorRegistry())
>>> watch = StallWatch(metrics)
>>> watch.check(time.monotonic() - 1.0, "3 outputs")  # a second: not yet a stall
>>> watch.check(time.monotonic() - 6.0, "3 outputs"); watch.check(time.monotonic() - 7.0, "3 outputs")
>>> metrics.registry.get_sample_value("fraudstream_broker_errors_total", {"kind": "stall"})  # once per stall
1.0
>>> watch.over(); watch.stalled_since is None
True
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fraudstream.metrics import Metrics

__all__ = ["STALL_AFTER_S", "StallWatch"]

log = logging.getLogger("fraudstream.worker")

#: Outputs or table writes waiting this long for the broker make a stall: counted and logged.
STALL_AFTER_S = 5.0


class StallWatch:
    """Reports each stall once, in fraudstream_broker_errors_total{kind="stall"} and a warning, and its end."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.stalled_since: float | None = None  # when the current stall began, once reported

    def check(self, since: float, what: str) -> None:
        """``what`` has waited for the broker since ``since`` (monotonic): a stall after `STALL_AFTER_S`."""
        if time.monotonic() - since > STALL_AFTER_S:
            self.report(since, what)

    def report(self, since: float, what: str) -> None:
        """Once per stall: counted in fraudstream_broker_errors_total{kind="stall"}, and a warning."""
        if self.stalled_since is None:
            self.stalled_since = since
            self.metrics.broker_errors.labels("stall").inc()
            log.warning("broker stalled: %s not answered for %.1fs; waiting for it, nothing is committed meanwhile",
                        what, time.monotonic() - since)

    def over(self) -> None:
        """The broker answered: a stall reported is over."""
        if self.stalled_since is not None:
            log.warning("broker answered again after a stall of %.0fs", time.monotonic() - self.stalled_since)
            self.stalled_since = None

    async def probe(self, producer: Any) -> None:
        """A metadata request on ``producer``'s connection: a broker that does not answer in time is stalled."""
        timeout = STALL_AFTER_S * 0.9  # shorter than the timer's interval: probes never overlap
        started = time.monotonic()
        try:
            await asyncio.get_running_loop().run_in_executor(None, lambda: producer.list_topics(timeout=timeout))
        except Exception:  # timed out (or refused): the broker did not answer
            self.report(started, "a metadata request")
            return
        self.over()
