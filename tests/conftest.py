"""Fixtures shared by every test: the embedded broker, isolated topic sets, workers."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from fraudstream.broker import EmbeddedBroker
from fraudstream.config import Settings
from fraudstream.contracts import decode
from fraudstream.kafka.topics import create_topics
from fraudstream.processes import ROOT, WorkerProcess
from fraudstream.processes import isolated_settings as _isolated
from fraudstream.processes import worker_env as settings_env

__all__ = ["ROOT", "SCREENSHOTS", "WorkerProcess", "isolated_settings", "settings_env"]

#: Where the browser tests save a screenshot of each console page: an ignored directory, so that a test run leaves
#: the tree clean. `make screenshots` points it at docs/console/, the README's images.
SCREENSHOTS = ROOT / os.environ.get("FRAUDSTREAM_SCREENSHOTS", "var/screenshots")
_SESSION_START = time.time()

#: The slowest modules (20 s to 110 s each, mostly waiting for group joins and worker starts), slowest first. They
#: start first, so that under ``pytest -n`` (`make test`: one module per xdist worker, in this order) they run side
#: by side instead of forming a tail at the end. A new module that takes tens of seconds belongs here.
SLOW_FIRST = (
    "tests/reliability/test_crash.py",
    "tests/stream/test_replay_equals_live.py",
    "tests/test_bench.py",
    "tests/reliability/test_stall.py",
    "tests/stream/test_learning.py",
    "tests/reliability/test_rebalance.py",
    "tests/reliability/test_exactly_once.py",
    "tests/console/test_browser.py",
    "tests/stream/test_live_states.py",
    "tests/deploy/test_prometheus.py",
    "tests/e2e/test_pipeline.py",
    "tests/alerts/test_alerts.py",
    "tests/stream/test_model_from_history.py",
    "tests/stream/test_eviction.py",
    "tests/deploy/test_prometheus_worker.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules of ``SLOW_FIRST`` first, in its order; the others after them as collected (a stable sort)."""
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(SLOW_FIRST)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where this run's screenshots of the console's pages are."""
    fresh = sorted(p.stem for p in SCREENSHOTS.glob("*.png") if p.stat().st_mtime >= _SESSION_START)
    if fresh:
        terminalreporter.write_line(f"console screenshots ({', '.join(fresh)}): {SCREENSHOTS}/")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded broker on a free loopback port for the whole session."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(port=0, log_path=log) as b:
        yield b


def isolated_settings(broker: EmbeddedBroker, tmp_path: Path, partitions: int = 3, **overrides: object) -> Settings:
    """Settings whose topics, group and state belong to one test only; short timeouts for the embedded broker."""
    # No provisional learning from the passing of event time (the feedback delay at the maturity period): the tests
    # compare a worker's scores with a replay's, and which batch a worker learns a provisional example in depends on
    # its batching. Tests of learning send labels, or set a delay of their own.
    defaults = {"session_timeout_s": 6.0, "batch_window_s": 0.02, "checkpoint_interval_s": 2.0, "feedback_delay_days": 61.0}
    return _isolated(broker.url, tmp_path / "state", partitions=partitions, **{**defaults, **overrides})


@pytest.fixture
def topics(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    s = isolated_settings(broker, tmp_path)
    create_topics(s)
    return s


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    started: list[WorkerProcess] = []

    def start(settings: Settings, name: str = "worker") -> WorkerProcess:
        w = WorkerProcess(settings, tmp_path / f"{name}-{len(started)}.log")
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def produce(settings: Settings, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    p = Producer(settings.producer_config())
    for key, value in messages:
        p.produce(topic, value, key)
    assert p.flush(30) == 0


def read_topic(settings: Settings, topic: str, until: int | None = None, timeout: float = 60.0, idle: float | None = None) -> list:
    """Every message of ``topic`` from the beginning, as (key, decoded value) pairs.

    Stops when ``until`` messages arrived, after ``idle`` seconds without one, or at ``timeout``.
    """
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    out: list = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if until is not None and len(out) >= until:
                break
            if idle is not None and time.monotonic() - last > idle:
                break
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    out.append((m.key(), decode(m.value()) if m.value() else None))
                    last = time.monotonic()
    finally:
        c.close()
    return out


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {predicate}")


def read_distinct(settings: Settings, topic: str, n: int, key: str = "tx_id", timeout: float = 180.0) -> dict:
    """First record per ``key`` until ``n`` distinct ones arrived: rebalances and restarts redeliver."""
    out: dict = {}
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for _, v in read_topic(settings, topic, until=n + len(out), timeout=min(10.0, max(deadline - time.monotonic(), 1.0))):
            out.setdefault(v[key], v)
    return out
