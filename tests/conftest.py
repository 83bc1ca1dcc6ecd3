"""Fixtures shared by every test: the embedded broker, isolated topic sets, workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from fraudstream.broker import EmbeddedBroker
from fraudstream.config import Settings
from fraudstream.contracts import decode
from fraudstream.kafka.topics import create_topics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded broker on a free loopback port for the whole session."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(port=0, log_path=log) as b:
        yield b


def isolated_settings(broker: EmbeddedBroker, tmp_path: Path, partitions: int = 3, **overrides: object) -> Settings:
    """Settings whose topics, group and state belong to one test only."""
    tag = uuid.uuid4().hex[:8]
    base = Settings.load(env={})
    renamed = {f.name: f"t{tag}.{getattr(base, f.name)}" for f in fields(Settings) if f.name.startswith("topic_")}
    defaults = {"metrics_port": 0, "session_timeout_s": 6.0, "batch_window_s": 0.02, "checkpoint_interval_s": 2.0}
    return base.with_overrides(
        broker=broker.url, app_id=f"fs-{tag}", partitions=partitions, state_dir=str(tmp_path / "state"),
        **renamed, **{**defaults, **overrides},
    )


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    env.update(settings.to_env())
    return env


@pytest.fixture
def topics(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    s = isolated_settings(broker, tmp_path)
    create_topics(s)
    return s


class WorkerProcess:
    """``fraudstream worker`` as a real subprocess, as production runs it."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fraudstream", "worker", "--loglevel", "info"],
            env=settings_env(settings), stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        self.metrics_port = self._wait_metrics_port()

    def _wait_metrics_port(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(rb"metrics on http://[\d.]+:(\d+)/metrics", self.log_path.read_bytes())
            if m:
                return int(m.group(1))
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError("worker did not start its metrics endpoint")

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name: str, labels: str = "") -> float:
        pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else r"(?:\{[^}]*\})?") + r" ([0-9.e+-]+)"
        total = 0.0
        for m in re.finditer(r"^" + pattern + "$", self.metrics(), re.M):
            total += float(m.group(1))
        return total

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.log.close()


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
