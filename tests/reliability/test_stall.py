"""A broker stall: the broker is frozen (SIGSTOP) for 30 s mid-stream, then thawed (SIGCONT).

The worker must notice (a metric and a log line say so), wait, and carry on by itself: same process, nothing lost,
nothing changed. It gets a broker of its own, so that freezing it does not touch the other tests. The input is built
as in test_crash.py, so the results must also be exactly the pure core's on the same events.
"""

from __future__ import annotations

import random
import re
import time

import pytest

from fraudstream.broker import EmbeddedBroker
from fraudstream.kafka.topics import create_topics
from fraudstream.simulate import HandbookSimulator

from ..conftest import isolated_settings
from .scenario import (
    RELIABILITY_TIMEOUT_S,
    SEED,
    PacedProducer,
    aligned_events,
    assert_alerts_match,
    assert_all_scored_once_or_identically,
    assert_matches_reference,
    missing_report,
    reference,
    wait_all_scored,
    wait_growing,
    wait_produced,
)

pytestmark = pytest.mark.broker

STALL_S = 30.0


@pytest.fixture
def own_broker(tmp_path):
    with EmbeddedBroker(port=0, log_path=tmp_path / "tansu.log") as b:
        yield b
        b.resume()  # never leave a stopped process behind


@pytest.mark.timeout(RELIABILITY_TIMEOUT_S)
def test_worker_rides_out_a_broker_stall(own_broker, start_worker, taps, tmp_path):  # noqa: F811
    s = isolated_settings(own_broker, tmp_path)
    create_topics(s)
    rng = random.Random(SEED + 3)
    events = aligned_events(HandbookSimulator(n_customers=100, n_terminals=200, n_days=12, seed=17), s.partitions)
    n = len(events)
    ref_scores, ref_alerts = reference(s, events)

    tap = taps(s, s.topic_scores)
    worker = start_worker(s, "stall")
    pid = worker.process.pid
    producer = PacedProducer(s, events, rate=100)
    wait_growing(tap.distinct, int(n * rng.uniform(0.25, 0.4)), "scores before the stall",
                 report=lambda: missing_report(s, tap, events[: producer.sent], [worker]))
    errors_before = worker.metric("fraudstream_broker_errors_total")

    own_broker.pause()
    try:
        time.sleep(STALL_S)
        # While frozen the worker is alive, and says that it is stalled.
        assert worker.alive()
        errors_during = worker.metric("fraudstream_broker_errors_total")
    finally:
        own_broker.resume()

    # As long as the worker gets on again after the thaw, however slowly on a loaded machine.
    wait_produced(producer, tap, report=lambda: missing_report(s, tap, events[: producer.sent], [worker]))
    wait_all_scored(s, tap, events, [worker], "after a 30 s broker stall")
    tap.settle(quiet=1.5)
    assert worker.alive() and worker.process.pid == pid, "the worker did not survive the stall by itself"

    assert errors_during > errors_before, "no fraudstream_broker_errors_total while the broker was frozen"
    log = worker.log_path.read_text()
    assert re.search(r"WARNING.*(stall|broker)", log, re.I), "no warning in the worker's log about the stall"

    scored = assert_all_scored_once_or_identically(tap.snapshot(), events)
    assert_matches_reference(scored, ref_scores, "after a 30 s broker stall")
    assert_alerts_match(s, ref_alerts, "after a 30 s broker stall")
