"""A long run at a steady rate, to see whether the worker holds up: ``make soak``.

    python -m fraudstream.tools.soak [--minutes 30] [--rate 50] [--report-every 60] [--live-states CARDS/4] [--rocksdb-mb 16]

Starts the embedded broker on a free port, creates the topics, starts one ``fraudstream worker`` subprocess
and produces authorizations at a paced, steady rate with ``ts`` = the wall clock, from a synthetic population
of cards and merchants: each card has its own usual amount and merchants; now and then a card is compromised and
a burst of fraud follows (large amounts, online, new merchants). The truth comes back as labels (a chargeback
some seconds after each fraud, an analyst's disposition for a share of the legitimate ones) and the compromised
card is reissued after its fraud is confirmed, and the example countermeasure rules are applied (``--rules``),
so every path of the worker is exercised.

Every ``--report-every`` seconds it prints:

- the worker's resident memory (``VmRSS`` of ``/proc/PID/status``),
- throughput: authorizations scored per second (``fraudstream_authorizations_scored_total`` of its /metrics),
- p50/p99 end-to-end latency: a consumer of ``fraud.scores`` takes receive time − ``ts`` of every record, so it
  includes the traffic's own batching: the soak's producer waits up to ``FRAUDSTREAM_SOURCE_LINGER_MS`` (300 ms) to
  fill a produce batch, as the simulator does, and while traffic is slow (200/s and below, by default) the worker
  spaces its batches ``FRAUDSTREAM_BATCH_WINDOW_MAX_S`` (0.5 s) apart (``fraudstream.stream.pacing``): fewer,
  fuller batches, which the embedded broker needs (below), for up to about 0.8 s of latency,
- consumer lag (the sum of ``fraudstream_consumer_lag``), alerts and dead letters;
- the CPU the worker used (in cores) and the machine's load average: on a shared machine a slow worker may be a starved one.

The warm-up lasts until the memory allowed to grow is full: the heap's live states trimmed at their bound, and
RocksDB at its bound (and at least 2 minutes, or 10% of a shorter run). At the end, a summary: RSS after the
warm-up and at the end, and its parts, each with its least-squares slope after the warm-up: RocksDB (bounded),
what the C allocator has in use outside RocksDB (a leak grows this), what the allocator holds free (freed memory
it keeps; bounded by the peak of what was in use) and the rest (the interpreter's small-object arenas, code,
stacks). Each slope is also given over the first and the second half: memory the allocator holds levels off, a
leak keeps its pace. When the traffic ends the worker drains (scores everything, lag zero) and its memory is read
once more: what was in flight (fetched batches, outputs, a slow broker's backlog) is gone then, a leak is not.
A verdict line says which. Then throughput and p99 over time. The exit code is 1 if the worker (or the broker) died,
else 0. Ctrl-C stops the traffic, the worker, the consumer and the broker, in that order, and still prints the summary.

What "flat after warm-up" can mean: a worker's heap holds at most ``FRAUDSTREAM_LIVE_STATES_MAX`` states of each
kind, and all its RocksDB databases together at most ``FRAUDSTREAM_ROCKSDB_MEMORY_MB``. In production the cards outnumber
the bound, which is reached within minutes; with the soak's cards (1,800 per authorization a second: 360,000 at
200/s, each making two authorizations an hour, more than an issuer's cards do), a bound of 50,000 would take longer
than the warm-up. So the soak bounds the live states at a quarter of its cards, at most 20,000 (``--live-states``),
reached within the warm-up, as production's is. Likewise RocksDB's
memtables and block cache fill with traffic, up to 128 MB by default, which 50/s takes hours to reach: the soak
gives them 16 MB (``--rocksdb-mb``), reached within its warm-up.

The default rate, 50/s, is what the embedded broker carries for half an hour: it keeps every record in memory, and
a fetch costs it time in proportion to the batches a partition holds, so it slows as it fills (see the README).

The worker uses the production store, RocksDB, unless ``--store memory://`` is given. With the memory store it
keeps every scored authorization's snapshot in memory until its label or maturity (61 days of event time):
resident memory then grows with the number of authorizations by design. The report shows the pending snapshots,
so that growth can be told from a leak (growth per snapshot).
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fraudstream.broker import EmbeddedBroker, free_port
from fraudstream.config import Settings
from fraudstream.core.rules import RuleError, RuleSet
from fraudstream.kafka.topics import create_topics
from fraudstream.launcher import scrape
from fraudstream.operators import rules_command
from fraudstream.processes import ROOT, WorkerProcess
from fraudstream.stream.app import HEAP_RELEASE_EVERY_S
from fraudstream.stream.learning import RULE_FIELDS

__all__ = ["main", "SoakConfig", "Traffic", "memory_breakdown", "memory_verdict", "p99_growth", "percentile", "rss_kib",
           "slope_per_hour"]

MIB = 1024.0


#: Cards per authorization a second: each card makes two authorizations an hour on average (1 in 1,000 reaches the 8
#: of R-VELOCITY-1H). With fewer (20,000 cards at 200/s made 36 an hour each), every card passed it within minutes,
#: and from minute 15 nearly every authorization raised an alert or an update to one: a flood no issuer's traffic
#: makes, and records the embedded broker keeps.
CARD_HOURS_PER_AUTHORIZATION_PER_S = 1_800
#: The most live states of each kind the soak gives the worker by default: reached within the warm-up.
LIVE_STATES_MAX = 20_000


@dataclass
class SoakConfig:
    minutes: float = 30.0
    rate: float = 50.0
    report_every: float = 60.0
    cards: int = 0  # 0: CARD_HOURS_PER_AUTHORIZATION_PER_S per authorization a second (at least 20,000)
    merchants: int = 2_000
    compromise_per_authorization: float = 0.0028  # an authorization starts a compromise: about 2% of traffic fraud
    legit_label_share: float = 0.01  # legitimate authorizations an analyst happens to confirm
    label_delay_s: tuple[float, float] = (5.0, 60.0)
    reissue_after_s: float = 30.0
    seed: int = 1
    log_dir: str = "var/log"
    store: str = "rocksdb://"
    live_states: int | None = None  # FRAUDSTREAM_LIVE_STATES_MAX of the worker; None: a quarter of the cards
    rocksdb_mb: int = 16  # FRAUDSTREAM_ROCKSDB_MEMORY_MB of the worker
    worker_env: dict[str, str] = field(default_factory=dict)  # added to the worker's environment only
    rules: str | None = str(ROOT / "rules" / "examples.json")  # applied before the traffic starts; None: no rules

    def __post_init__(self) -> None:
        if not self.cards:
            self.cards = max(20_000, round(self.rate * CARD_HOURS_PER_AUTHORIZATION_PER_S))

    @property
    def live_states_max(self) -> int:
        return self.live_states if self.live_states is not None else max(1, min(self.cards // 4, LIVE_STATES_MAX))

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0

    @property
    def warmup_s(self) -> float:
        """The shortest warm-up; it lasts until the bounded memories are full (`warmed_up`)."""
        return min(120.0, 0.1 * self.seconds)

    def warmed_up(self, sample: Sample) -> bool:
        """Whether the memory that is allowed to grow has reached its bounds at ``sample``: more cards in the tables
        than the heap may hold (so its live states are trimmed), and RocksDB's memory at its bound. Before that,
        growth is by design; after it, memory should stay flat.

        >>> from dataclasses import replace
        >>> cfg = SoakConfig(cards=20_000, rocksdb_mb=16)
        >>> full = Sample(elapsed=180, rss_kib=1, produced_per_s=50, scored_per_s=50, p50_ms=None, p99_ms=None,
        ...               n_latency=0, lag=0, alerts=0, dead_letters=0, snapshots=0, cards=5_200, labels=0,
        ...               rocksdb_kib=16_400)
        >>> cfg.warmed_up(full), cfg.warmed_up(replace(full, cards=4_000)), cfg.warmed_up(replace(full, rocksdb_kib=15_000))
        (True, False, False)
        """
        if sample.elapsed < self.warmup_s or sample.cards <= self.live_states_max:
            return False
        return sample.rocksdb_kib is None or sample.rocksdb_kib >= self.rocksdb_mb * MIB


# --- traffic ---------------------------------------------------------------------------------


class Traffic:
    """Synthetic authorizations and the labels that follow them, in wall-clock time.

    >>> t = Traffic(SoakConfig(cards=10, merchants=5), random.Random(1))
    >>> key, event = t.authorization(0, 1_700_000_000_000)
    >>> event["card_id"].encode() == key and event["ts"] == 1_700_000_000_000
    True
    """

    CHANNELS = ("pos", "pos", "pos", "ecom", "ecom", "atm", "moto")
    COUNTRIES = ("JP", "JP", "JP", "JP", "US", "FR", "GB", "KR")

    def __init__(self, cfg: SoakConfig, rng: random.Random) -> None:
        self.cfg = cfg
        self.rng = rng
        w = len(str(cfg.cards - 1))
        self.card_ids = [f"card-{i:0{w}d}" for i in range(cfg.cards)]
        self.merchant_ids = [f"term-{i:0{len(str(cfg.merchants - 1))}d}" for i in range(cfg.merchants)]
        # Each card: a usual amount and a handful of usual merchants.
        self.mean_amount = [math.exp(rng.gauss(math.log(3000), 0.8)) for _ in range(cfg.cards)]
        self.usual = [[rng.randrange(cfg.merchants) for _ in range(rng.randint(2, 8))] for _ in range(cfg.cards)]
        self.home = [rng.choice(("JP", "JP", "JP", "US", "FR")) for _ in range(cfg.cards)]
        self.compromised: dict[int, int] = {}  # card -> fraudulent authorizations still to come
        self.labels: list[tuple[float, int, str, dict[str, Any]]] = []  # heap of (due, seq, topic kind, record)
        self._seq = 0
        self.frauds = 0

    def authorization(self, n: int, now_ms: int) -> tuple[bytes, dict[str, Any]]:
        rng, cfg = self.rng, self.cfg
        # Compromise cards at the configured rate per authorization, whatever the population.
        if rng.random() < cfg.compromise_per_authorization:
            self.compromised.setdefault(rng.randrange(cfg.cards), rng.randint(3, 12))
        fraud = False
        if self.compromised and rng.random() < 0.02:  # a burst: the thief uses the card within seconds
            card = rng.choice(list(self.compromised))
            fraud = True
            self.compromised[card] -= 1
            if self.compromised[card] <= 0:
                del self.compromised[card]
            amount = self.mean_amount[card] * rng.uniform(3.0, 15.0)
            merchant = rng.randrange(cfg.merchants)
            channel = rng.choice(("ecom", "moto", "ecom"))
            country = rng.choice(self.COUNTRIES)
        else:
            card = rng.randrange(cfg.cards)
            amount = max(1.0, rng.expovariate(1.0 / self.mean_amount[card]))
            merchant = rng.choice(self.usual[card]) if rng.random() < 0.85 else rng.randrange(cfg.merchants)
            channel = rng.choice(self.CHANNELS)
            country = self.home[card] if rng.random() < 0.95 else rng.choice(self.COUNTRIES)
        card_id = self.card_ids[card]
        event = {"tx_id": f"soak-{n}", "card_id": card_id, "merchant_id": self.merchant_ids[merchant], "amount": round(amount, 2),
                 "ts": now_ms, "currency": "JPY", "country": country, "channel": channel}
        now_s = now_ms / 1000.0
        if fraud:
            self.frauds += 1
            due = now_s + rng.uniform(*cfg.label_delay_s)
            self._later(due, "label", {"tx_id": event["tx_id"], "card_id": card_id, "is_fraud": True, "source": "chargeback"})
            self._later(due + cfg.reissue_after_s, "reissue", {"card_id": card_id})
        elif rng.random() < cfg.legit_label_share:
            self._later(now_s + rng.uniform(*cfg.label_delay_s), "label",
                        {"tx_id": event["tx_id"], "card_id": card_id, "is_fraud": False, "source": "analyst"})
        return card_id.encode(), event

    def _later(self, due: float, kind: str, record: dict[str, Any]) -> None:
        self._seq += 1
        heapq.heappush(self.labels, (due, self._seq, kind, record))

    def due(self, now_s: float) -> list[tuple[str, dict[str, Any]]]:
        """Labels and reissues whose time has come, stamped with the wall clock."""
        out = []
        while self.labels and self.labels[0][0] <= now_s:
            _, _, kind, record = heapq.heappop(self.labels)
            out.append((kind, {**record, "ts": int(now_s * 1000)}))
        return out


class Producer(threading.Thread):
    """Sends authorizations at ``rate`` per second, steadily, and the labels as they fall due."""

    def __init__(self, settings: Settings, cfg: SoakConfig, stop: threading.Event) -> None:
        super().__init__(name="soak-producer", daemon=True)
        self.settings = settings
        self.cfg = cfg
        self.stop = stop
        self.traffic = Traffic(cfg, random.Random(cfg.seed))
        self.sent = 0
        self.labels = 0
        self.reissues = 0
        self.delivery_errors = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from confluent_kafka import Producer as KafkaProducer

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                self.delivery_errors += 1

        s, rate = self.settings, self.cfg.rate
        p = KafkaProducer(s.producer_config(**{"queue.buffering.max.messages": 1_000_000, "on_delivery": delivered,
                                               "linger.ms": s.source_linger_ms}))
        dumps, wall = orjson.dumps, time.time
        try:
            t0 = time.monotonic()
            while not self.stop.is_set():
                due = int((time.monotonic() - t0) * rate)
                while self.sent < due:
                    key, event = self.traffic.authorization(self.sent, int(wall() * 1000))
                    _send(p, s.topic_authorizations, key, dumps(event))
                    self.sent += 1
                for kind, record in self.traffic.due(wall()):
                    topic = s.topic_labels if kind == "label" else s.topic_card_reissues
                    _send(p, topic, record["card_id"].encode(), dumps(record))
                    if kind == "label":
                        self.labels += 1
                    else:
                        self.reissues += 1
                p.poll(0)
                self.stop.wait(0.002)
        except BaseException as exc:  # reported by the main loop
            self.error = exc
        finally:
            p.flush(10)


def _send(p: Any, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            p.produce(topic, value, key)
            return
        except BufferError:
            p.poll(0.01)


# --- latency -----------------------------------------------------------------------------------


class LatencyReader(threading.Thread):
    """Reads every score record and keeps receive time − ``ts`` (ms), per report interval."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        super().__init__(name="soak-latency", daemon=True)
        self.settings = settings
        self.stop = stop
        self.lock = threading.Lock()
        self.interval = array("d")
        self.received = 0
        self.error: BaseException | None = None

    def take(self) -> array:
        with self.lock:
            out, self.interval = self.interval, array("d")
        return out

    def run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        s = self.settings
        # The workers' fetch wait on the embedded broker (Settings.with_embedded_broker): at 10 ms this reader came
        # to fetch fraud.scores again and again for nothing within 25 minutes at 200/s.
        c = Consumer({**s.kafka_client_config(), "group.id": f"soak-latency-{os.getpid()}", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest", "fetch.wait.max.ms": s.fetch_wait_ms})
        try:
            topic = s.topic_scores
            partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
            c.assign([TopicPartition(topic, p, 0) for p in partitions])
            loads, wall = orjson.loads, time.time
            while not self.stop.is_set():
                msgs = c.consume(2000, 0.1)
                now_ms = wall() * 1000.0
                got = []
                for m in msgs:
                    value = m.value()
                    if m.error() is None and value:
                        got.append(now_ms - loads(value)["ts"])
                if got:
                    with self.lock:
                        self.interval.extend(got)
                        self.received += len(got)
        except BaseException as exc:
            self.error = exc
        finally:
            c.close()


def percentile(values: Any, q: float) -> float | None:
    """Nearest-rank percentile; None for no values.

    >>> percentile([5, 1, 3, 2, 4], 50), percentile([], 99), percentile(range(1, 101), 99)
    (3, None, 99)
    """
    data = sorted(values)
    if not data:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(data)))
    return data[rank - 1]


# --- the worker ------------------------------------------------------------------------------


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) if m else None


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads), None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    parts = raw[raw.rindex(")") + 2 :].split()
    return (int(parts[11]) + int(parts[12])) / _TICK


def _wait_ready(settings: Settings, url: str, worker: subprocess.Popen, stop: threading.Event, timeout: float = 120.0) -> None:
    """One probe authorization, scored: the worker has joined its group and the traffic's latency means something."""
    from confluent_kafka import Producer as KafkaProducer

    p = KafkaProducer(settings.producer_config())
    probe = {"tx_id": "soak-probe", "card_id": "card-probe", "merchant_id": "term-probe", "amount": 1.0, "ts": int(time.time() * 1000)}
    p.produce(settings.topic_authorizations, orjson.dumps(probe), b"card-probe")
    p.flush(10)
    t0 = time.monotonic()
    while not stop.is_set():
        try:
            if scrape(url).get("fraudstream_authorizations_scored_total", 0.0) >= 1:
                print(f"  worker ready: probe scored {time.monotonic() - t0:.1f}s after it was sent", flush=True)
                return
        except OSError:
            pass
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode} before it scored anything")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"the worker did not score a probe within {timeout:.0f}s")
        stop.wait(0.2)


# --- reporting -------------------------------------------------------------------------------


@dataclass
class Sample:
    elapsed: float
    rss_kib: int | None
    produced_per_s: float
    scored_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    n_latency: int
    lag: float
    alerts: float
    dead_letters: float
    snapshots: float
    cards: float
    labels: float
    worker_cores: float | None = None  # CPU the worker used over the interval, in cores
    load1: float = 0.0  # the machine's 1-minute load average: on a shared machine, who else wants the CPU
    broker_cores: float | None = None  # the embedded broker's CPU: it keeps every record in memory, and slows as it grows
    broker_rss_kib: int | None = None
    rocksdb_kib: int | None = None  # the worker's RocksDB memory, part of its RSS, bounded by FRAUDSTREAM_ROCKSDB_MEMORY_MB
    live_cards: float | None = None  # card states in the worker's heap (fraudstream_live_states{kind="card"})
    # The C allocator's bytes in use and held free (fraudstream_allocator_bytes): RSS growing while in_use does not
    # is the allocator's pages, not a leak.
    alloc_in_use_kib: int | None = None
    alloc_free_kib: int | None = None

    @property
    def heap_kib(self) -> int | None:
        """RSS without RocksDB: the interpreter, the live states, the clients."""
        return None if self.rss_kib is None or self.rocksdb_kib is None else self.rss_kib - self.rocksdb_kib


@dataclass
class Run:
    cfg: SoakConfig
    samples: list[Sample] = field(default_factory=list)
    rss_warm: tuple[float, int] | None = None  # (elapsed, KiB) at the end of the warm-up
    rss_last: tuple[float, int] | None = None
    rss_peak: int = 0
    worker_died: str | None = None
    interrupted: bool = False
    warm: Sample | None = None  # the sample at which the warm-up ended
    drained: Sample | None = None  # after the traffic stopped and the worker caught up (see `_drain`)
    # (start, end) of each report interval, in seconds of traffic, and the latencies (ms) read in it: for `p99_growth`
    latencies: list[tuple[float, float, array]] = field(default_factory=list)


def _kib(nbytes: float | None) -> int | None:
    return None if nbytes is None else int(nbytes / 1024)


def _fmt_ms(v: float | None) -> str:
    return "    -" if v is None else f"{v:5.0f}" if v >= 10 else f"{v:5.1f}"


def _fmt_mib(kib: int | None) -> str:
    return "   -   " if kib is None else f"{kib / MIB:7.1f}"


def report_line(s: Sample) -> str:
    return (f"[{s.elapsed:6.0f}s] rss {_fmt_mib(s.rss_kib)} MiB (rocksdb {_fmt_mib(s.rocksdb_kib)}; malloc in use "
            f"{_fmt_mib(s.alloc_in_use_kib)}, free {_fmt_mib(s.alloc_free_kib)})  produced {s.produced_per_s:6.0f}/s  "
            f"scored {s.scored_per_s:6.0f}/s  e2e p50 {_fmt_ms(s.p50_ms)} ms  p99 {_fmt_ms(s.p99_ms)} ms  "
            f"lag {s.lag:6.0f}  alerts {s.alerts:6.0f}  dead letters {s.dead_letters:4.0f}  "
            f"snapshots {s.snapshots:8.0f}  cards {s.cards:6.0f}  labels {s.labels:6.0f}  "
            f"worker cpu {'-' if s.worker_cores is None else f'{s.worker_cores:.2f}'} cores  "
            f"broker cpu {'-' if s.broker_cores is None else f'{s.broker_cores:.2f}'} cores, rss {_fmt_mib(s.broker_rss_kib)} MiB  "
            f"load {s.load1:.1f}/{os.cpu_count()}")


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour: one noisy sample at either end does not decide it.

    >>> slope_per_hour([(0, 10.0), (1800, 12.0), (3600, 14.0)])
    4.0
    """
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return 0.0 if sxx == 0 else sum((x - mx) * (y - my) for x, y in points) / sxx * 3600.0


def memory_breakdown(samples: list[Sample], drained: tuple[float, float] | None = None) -> list[str]:
    """The worker's RSS after the warm-up, in parts that grow for different reasons: RocksDB (bounded, fills with
    data), the C allocator's memory in use outside RocksDB (a leak grows this), what the allocator holds free
    (fragmentation: bounded by the peak of what was in use), and the rest (the interpreter's small objects, code,
    stacks). First and last sample, and the slope over all of them. ``drained``: memory in use outside RocksDB after
    the warm-up and after the worker drained (MiB), for the verdict, with the live card states added meanwhile."""
    parts: list[tuple[str, Any]] = [
        ("worker RSS", lambda s: s.rss_kib),
        ("RocksDB", lambda s: s.rocksdb_kib),
        ("outside RocksDB", lambda s: s.heap_kib),
    ]
    if all(s.alloc_in_use_kib is not None and s.alloc_free_kib is not None for s in samples):
        parts += [
            ("  malloc in use outside RocksDB", lambda s: s.alloc_in_use_kib - s.rocksdb_kib),
            ("  malloc held free", lambda s: s.alloc_free_kib),
            ("  the rest (small objects, code, stacks)", lambda s: s.rss_kib - s.alloc_in_use_kib - s.alloc_free_kib),
        ]
    first, last = samples[0], samples[-1]
    # Memory the allocator keeps between live chunks grows quickly at first and then levels off, as it comes to
    # hold a free place for every size the program asks for; a leak grows as fast in the second half as in the first.
    middle = (first.elapsed + last.elapsed) / 2
    halves = [[s for s in samples if s.elapsed <= middle], [s for s in samples if s.elapsed >= middle]]
    by_half = all(len(h) >= 3 for h in halves)
    out = [f"  memory after the warm-up, {first.elapsed:.0f}s to {last.elapsed:.0f}s (MiB; slope: least squares over "
           f"{len(samples)} samples" + ("; then over each half" if by_half else "") + "):"]
    by_halves: dict[str, tuple[float, float]] = {}
    for name, part in parts:
        slope = slope_per_hour([(s.elapsed, part(s) / MIB) for s in samples])
        line = f"    {name:<42} {part(first) / MIB:7.1f} -> {part(last) / MIB:7.1f}   {slope:+6.1f} MiB/hour"
        if by_half:
            a, b = (slope_per_hour([(s.elapsed, part(s) / MIB) for s in h]) for h in halves)
            by_halves[name.strip()] = (a, b)
            line += f"   halves {a:+6.1f} {b:+6.1f}"
        out.append(line)
    if "malloc in use outside RocksDB" in by_halves:
        added = None
        if first.live_cards is not None and last.live_cards is not None:
            added = max(0, int(last.live_cards - first.live_cards))
        out.append("  " + memory_verdict(by_halves["malloc in use outside RocksDB"], parts[3][1](last) / MIB,
                                         by_halves["worker RSS"], parts[0][1](last) / MIB, drained, added))
    return out


#: The most heap one live card state may take, for the verdict (``memory_verdict``): `make bench` measures 4.5 KB a
#: card ("memory: Python heap per card"); this leaves room for its share of the card index and the merchants' cards.
LIVE_STATE_BYTES = 8 * 1024


def memory_verdict(in_use: tuple[float, float], in_use_mib: float, rss: tuple[float, float], rss_mib: float,
                   drained: tuple[float, float] | None = None, live_states_added: int | None = None) -> str:
    """What the slopes over the two halves say (MiB/hour): a leak grows memory in use in both; memory the allocator
    holds rises and levels off. A part is flat when it moves less than 1% of itself an hour. With ``drained`` (in use
    outside RocksDB after the warm-up, and after the traffic stopped and the worker caught up, MiB) memory in use grew
    if more than 5% over the warm-up's stays after draining: data in flight grows with latency and then goes.

    Memory in use that grew but whose pace in the second half is under half the first half's is filling up to a
    bound, not leaking: the worker's caches of live card states and each merchant's recent cards fill for as long
    as new cards and merchants come (a soak's 30 minutes at 200/s are still that), then stop. A leak keeps its pace.
    So is memory that stayed after draining but is no more than the live card states added meanwhile
    (``live_states_added``) take, at :data:`LIVE_STATE_BYTES` each: they are bounded by ``FRAUDSTREAM_LIVE_STATES_MAX``
    and a soak ends before they reach it, filling at a steady pace.

    >>> memory_verdict((0.1, 1.0), 63.5, (11.3, 5.1), 226.2)
    'verdict: no leak (in use outside RocksDB: +0.1, +1.0 MiB/hour); RSS rising, levelling off (+11.3, +5.1 MiB/hour)'
    >>> memory_verdict((5.0, 6.0), 63.5, (0.5, -0.3), 226.2)
    'verdict: A LEAK (in use outside RocksDB: +5.0, +6.0 MiB/hour); RSS flat (+0.5, -0.3 MiB/hour)'
    >>> memory_verdict((1.3, 3.2), 62.9, (26.1, 21.3), 230.0, drained=(62.5, 62.0))
    'verdict: no leak (in use outside RocksDB: 62.5 MiB after the warm-up, 62.0 drained); RSS rising at a steady pace (+26.1, +21.3 MiB/hour)'
    >>> memory_verdict((13.5, 4.0), 98.6, (46.8, 5.9), 600.0, drained=(93.2, 99.5))  # the soak at 200/s, 3e2d076
    'verdict: no leak, filling and levelling off (in use outside RocksDB: 93.2 MiB after the warm-up, 99.5 drained; +13.5, +4.0 MiB/hour); RSS rising, levelling off (+46.8, +5.9 MiB/hour)'
    >>> memory_verdict((21.1, 21.7), 105.5, (47.4, 22.9), 317.2, drained=(90.7, 100.2), live_states_added=1918)  # 040bcd5
    'verdict: no leak, filling with live card states (in use outside RocksDB: 90.7 MiB after the warm-up, 100.2 drained; 1,918 live card states added, 5.1 KiB each); RSS rising, levelling off (+47.4, +22.9 MiB/hour)'
    >>> memory_verdict((21.1, 21.7), 105.5, (47.4, 22.9), 317.2, drained=(90.7, 100.2), live_states_added=100)
    'verdict: A LEAK (in use outside RocksDB: 90.7 MiB after the warm-up, 100.2 drained); RSS rising (+47.4, +22.9 MiB/hour)'
    """
    if drained is not None:
        grew = drained[1] - drained[0] > 0.05 * drained[0]
        evidence = f"{drained[0]:.1f} MiB after the warm-up, {drained[1]:.1f} drained"
    else:
        grew = min(in_use) > 0.01 * in_use_mib
        evidence = f"{in_use[0]:+.1f}, {in_use[1]:+.1f} MiB/hour"
    levelling = grew and in_use[0] > 0 and in_use[1] < in_use[0] / 2
    states = False
    if grew and not levelling and drained is not None and live_states_added:
        each = (drained[1] - drained[0]) * 1024 * 1024 / live_states_added  # bytes
        states = each <= LIVE_STATE_BYTES
        if states:
            evidence += f"; {live_states_added:,} live card states added, {each / 1024:.1f} KiB each"
    leak = grew and not levelling and not states
    if levelling and drained is not None:
        evidence += f"; {in_use[0]:+.1f}, {in_use[1]:+.1f} MiB/hour"
    if max(abs(r) for r in rss) < 0.01 * rss_mib:
        shape = "flat"
    elif leak:
        shape = "rising"
    elif rss[1] < rss[0] / 2:
        shape = "rising, levelling off"
    else:
        shape = "rising at a steady pace"
    said = ("A LEAK" if leak else "no leak, filling and levelling off" if levelling
            else "no leak, filling with live card states" if states else "no leak")
    return f"verdict: {said} (in use outside RocksDB: {evidence}); RSS {shape} ({rss[0]:+.1f}, {rss[1]:+.1f} MiB/hour)"


#: The latency goal (issue 18): the p99 of the last 5 minutes within 2x of the p99 of minutes 3-5 (120-300 s, right after
#: the shortest warm-up). On a broker whose fetch slows as it fills, the p99 grows with the run.
P99_GROWTH_GOAL = 2.0
EARLY_WINDOW_S = (120.0, 300.0)
LATE_WINDOW_S = 300.0


def p99_growth(windows: list[tuple[float, float, Any]]) -> tuple[float, float] | None:
    """The p99 (ms) of minutes 3-5 and of the last 5 minutes, each over every latency read in the report intervals
    whose middle falls in it; None for a run too short for the two to be apart (under 10 minutes).

    >>> minute = lambda k, ms: (60.0 * k, 60.0 * (k + 1), [ms] * 100)
    >>> p99_growth([minute(k, 100.0 + 10 * k) for k in range(10)])
    (140.0, 190.0)
    >>> p99_growth([minute(k, 100.0) for k in range(6)]) is None
    True
    """
    if not windows or windows[-1][1] < 2 * LATE_WINDOW_S:
        return None
    end = windows[-1][1]
    early = [v for a, b, values in windows if EARLY_WINDOW_S[0] <= (a + b) / 2 <= EARLY_WINDOW_S[1] for v in values]
    late = [v for a, b, values in windows if (a + b) / 2 >= end - LATE_WINDOW_S for v in values]
    p_early, p_late = percentile(early, 99), percentile(late, 99)
    return None if p_early is None or p_late is None else (float(p_early), float(p_late))


def summary(run: Run) -> list[str]:
    cfg = run.cfg
    out = ["", f"soak summary: {cfg.rate:g} authorizations/s for {cfg.minutes:g} min"
           + (" (interrupted)" if run.interrupted else "")]
    if run.worker_died:
        out.append(f"  WORKER DIED: {run.worker_died}")
    if run.rss_warm and run.rss_last:
        (t0, r0), (t1, r1) = run.rss_warm, run.rss_last
        growth = (r1 - r0) / r0 * 100.0 if r0 else float("nan")
        out.append(f"  worker RSS after warm-up ({t0:.0f}s): {r0 / MIB:.1f} MiB; at the end ({t1:.0f}s): {r1 / MIB:.1f} MiB; "
                   f"growth {growth:+.1f}%; peak {run.rss_peak / MIB:.1f} MiB")
        if t1 > t0:
            out.append(f"  RSS slope after warm-up: {(r1 - r0) / MIB / ((t1 - t0) / 3600.0):+.1f} MiB/hour")
        later = [s for s in run.samples if s.elapsed >= t0 and s.heap_kib is not None]
        if len(later) >= 2 and later[-1].elapsed > later[0].elapsed:
            w, d = run.warm, run.drained
            drained = None
            wa, wr = (w.alloc_in_use_kib, w.rocksdb_kib) if w else (None, None)
            da, dr, drss = (d.alloc_in_use_kib, d.rocksdb_kib, d.rss_kib) if d else (None, None, None)
            la, lr = later[-1].alloc_in_use_kib, later[-1].rocksdb_kib
            if (d and wa is not None and wr is not None and da is not None and dr is not None and drss is not None
                    and la is not None and lr is not None):
                drained = ((wa - wr) / MIB, (da - dr) / MIB)
                out.append(f"  drained ({d.elapsed:.0f}s): worker RSS {drss / MIB:.1f} MiB, RocksDB {dr / MIB:.1f}, "
                           f"malloc in use outside RocksDB {drained[1]:.1f} (after the warm-up {drained[0]:.1f}, at the end of "
                           f"the traffic {(la - lr) / MIB:.1f})")
            out.extend(memory_breakdown(later, drained))
            first, last = later[0], later[-1]
            if first.live_cards is not None and last.live_cards is not None:
                out.append(f"  live card states: {first.live_cards:,.0f} -> {last.live_cards:,.0f} "
                           f"(at most {cfg.live_states_max:,})")
    elif run.rss_last:
        out.append(f"  the warm-up never ended (bounded memories not full): RSS at the end {run.rss_last[1] / MIB:.1f} MiB")
    if run.samples:
        out.append("  over time:   elapsed   scored/s   p50 ms   p99 ms      lag   RSS MiB   of it RocksDB   worker cores"
                   "   broker cores   broker MiB   load")
        for s in run.samples:
            cores = "   -" if s.worker_cores is None else f"{s.worker_cores:4.2f}"
            bcores = "   -" if s.broker_cores is None else f"{s.broker_cores:4.2f}"
            out.append(f"             {s.elapsed:7.0f}   {s.scored_per_s:8.0f}   {_fmt_ms(s.p50_ms)}    {_fmt_ms(s.p99_ms)}  "
                       f"{s.lag:7.0f}   {_fmt_mib(s.rss_kib)}         {_fmt_mib(s.rocksdb_kib)}           {cores}           {bcores}"
                       f"      {_fmt_mib(s.broker_rss_kib)}   "
                       f"{s.load1:4.1f}")
        warm = run.rss_warm[0] if run.rss_warm else cfg.warmup_s
        steady = [s for s in run.samples if s.elapsed >= warm] or run.samples
        rates = [s.scored_per_s for s in steady]
        p99s = [s.p99_ms for s in steady if s.p99_ms is not None]
        out.append(f"  {'after warm-up' if run.rss_warm else f'after {warm:.0f}s'}: scored/s min {min(rates):.0f} mean {sum(rates) / len(rates):.0f} max {max(rates):.0f}"
                   + (f"; p99 min {min(p99s):.0f} ms, max {max(p99s):.0f} ms" if p99s else ""))
        last = run.samples[-1]
        out.append(f"  totals: alerts {last.alerts:.0f}, dead letters {last.dead_letters:.0f}, labels {last.labels:.0f}")
    windows = p99_growth(run.latencies)
    if windows is not None:
        p99_early, p99_late = windows
        ratio = p99_late / p99_early if p99_early > 0 else float("inf")
        out.append(f"  latency goal: p99 of the last 5 minutes {p99_late:,.0f} ms, of minutes 3-5 {p99_early:,.0f} ms: {ratio:.2f}x "
                   f"(goal <= {P99_GROWTH_GOAL:g}x) {'met' if ratio <= P99_GROWTH_GOAL else 'NOT met'}")
    return out


# --- main ------------------------------------------------------------------------------------


def soak(cfg: SoakConfig) -> int:
    stop = threading.Event()
    interrupted = threading.Event()

    traffic_stop = threading.Event()  # the traffic alone: the worker then drains what it has in flight

    def on_signal(signum: int, _frame: Any) -> None:
        interrupted.set()
        traffic_stop.set()
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    run = Run(cfg)
    log_dir = Path(cfg.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    state = Path(tempfile.mkdtemp(prefix="fraudstream-soak-"))
    broker = EmbeddedBroker(0, log_path=log_dir / f"soak-{stamp}-broker.log")
    worker: WorkerProcess | None = None
    producer: Producer | None = None
    reader: LatencyReader | None = None
    try:
        broker.start()
        base = Settings.load()
        settings = base.with_embedded_broker(broker.url).with_overrides(app_id=f"soak-{stamp}", state_dir=str(state), metrics_port=free_port(),
                                       store=cfg.store, live_states_max=cfg.live_states_max,
                                       rocksdb_memory_mb=cfg.rocksdb_mb)
        create_topics(settings)
        if cfg.rules:
            # Production runs with countermeasures: their evaluation, alerts and per-rule statistics are load too.
            rules_command(settings, argparse.Namespace(action="apply", target=cfg.rules, days=None))
        worker = WorkerProcess(settings, log_dir / f"soak-{stamp}-worker.log", new_session=True, extra_env=cfg.worker_env)
        url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
        print(f"soak: {cfg.rate:g} authorizations/s for {cfg.minutes:g} min, {cfg.cards} cards at {cfg.merchants} merchants; "
              f"report every {cfg.report_every:g}s; warm-up at least {cfg.warmup_s:.0f}s; live states at most {cfg.live_states_max}; "
              f"RocksDB {cfg.rocksdb_mb} MB; rules {Path(cfg.rules).name if cfg.rules else 'none'}"
              + "".join(f"; worker {k}={v}" for k, v in cfg.worker_env.items()), flush=True)
        print(f"  broker {broker.bootstrap_servers}; worker pid {worker.pid}, metrics {url}, log {worker.log_path}", flush=True)

        _wait_ready(settings, url, worker.process, stop)
        reader = LatencyReader(settings, stop)
        reader.start()
        producer = Producer(settings, cfg, traffic_stop)
        t0 = time.monotonic()
        producer.start()
        _monitor(run, cfg, url, worker.process, broker, producer, reader, stop, t0)
        if not stop.is_set() and not run.worker_died:
            traffic_stop.set()
            producer.join(15)
            run.drained = _drain(url, worker.process, producer.sent, stop, t0)
    except RuntimeError as exc:
        run.worker_died = run.worker_died or str(exc)
    finally:
        run.interrupted = interrupted.is_set()
        if run.interrupted:
            print("\nstopping: traffic, worker, consumer, broker", flush=True)
        traffic_stop.set()
        stop.set()
        if producer is not None:
            producer.join(15)
        if worker is not None:
            worker.stop()
        if reader is not None:
            reader.join(10)
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for line in summary(run):
        print(line)
    if producer is not None:
        print(f"  produced {producer.sent} authorizations ({producer.traffic.frauds} fraudulent), {producer.labels} labels, "
              f"{producer.reissues} reissues; delivery errors {producer.delivery_errors}; "
              f"score records read {reader.received if reader else 0}")
    sys.stdout.flush()
    return 1 if run.worker_died else 0


def _memory(m: dict[str, float]) -> dict[str, Any]:
    """The memory fields of a `Sample`, from the worker's scraped metrics."""
    return {"rocksdb_kib": _kib(m.get("fraudstream_rocksdb_memory_bytes")),
            "live_cards": m.get('fraudstream_live_states{kind="card"}'),
            "alloc_in_use_kib": _kib(m.get('fraudstream_allocator_bytes{kind="in_use"}')),
            "alloc_free_kib": _kib(m.get('fraudstream_allocator_bytes{kind="free"}'))}


def _drain(url: str, worker: subprocess.Popen, sent: int, stop: threading.Event, t0: float,
           timeout: float = 300.0) -> Sample | None:
    """After the traffic: wait until the worker has scored everything (the probe too) and its lag is zero, then one
    heap release and one gauge report later, read its memory. What was in flight (fetched batches, outputs, the
    backlog of a slow broker) is gone then; a leak is not. None if it did not catch up within ``timeout``."""
    print(f"  traffic stopped: waiting for the worker to score all {sent:,} authorizations", flush=True)
    start = time.monotonic()
    while not stop.is_set() and time.monotonic() - start < timeout and worker.poll() is None:
        try:
            m = scrape(url)
        except OSError:
            m = {}
        if m.get("fraudstream_authorizations_scored_total", 0.0) >= sent + 1 and m.get("fraudstream_consumer_lag", 1) == 0:
            caught_up = time.monotonic() - start
            stop.wait(HEAP_RELEASE_EVERY_S + 6.0)
            m = scrape(url)
            elapsed = time.monotonic() - t0
            sample = Sample(elapsed=elapsed, rss_kib=rss_kib(worker.pid), produced_per_s=0, scored_per_s=0, p50_ms=None,
                            p99_ms=None, n_latency=0, lag=m.get("fraudstream_consumer_lag", 0.0), alerts=0, dead_letters=0,
                            snapshots=0, cards=m.get("fraudstream_cards_tracked", 0.0), labels=0, **_memory(m))
            print(f"  drained: caught up {caught_up:.0f}s after the traffic stopped; memory {HEAP_RELEASE_EVERY_S + 6:.0f}s "
                  f"later: {report_line(sample).split(')')[0].split('] ')[1]})", flush=True)
            return sample
        stop.wait(1.0)
    print(f"  the worker did not catch up within {timeout:.0f}s of the traffic's end", flush=True)
    return None


def _monitor(run: Run, cfg: SoakConfig, url: str, worker: subprocess.Popen, broker: EmbeddedBroker, producer: Producer,
             reader: LatencyReader, stop: threading.Event, t0: float) -> None:
    assert broker.process is not None
    broker_pid = broker.process.pid
    last_t, last_scored, last_sent, last_cpu = t0, 0.0, 0, cpu_seconds(worker.pid)
    last_broker_cpu = cpu_seconds(broker_pid)
    next_report = t0 + cfg.report_every
    end = t0 + cfg.seconds
    while not stop.is_set():
        stop.wait(min(1.0, max(0.0, min(next_report, end) - time.monotonic())))
        now = time.monotonic()
        elapsed = now - t0
        if worker.poll() is not None:
            run.worker_died = f"the worker exited with code {worker.returncode} after {elapsed:.0f}s"
            print(run.worker_died, file=sys.stderr, flush=True)
            return
        if broker.process is None or broker.process.poll() is not None:
            run.worker_died = f"the embedded broker exited after {elapsed:.0f}s"
            print(run.worker_died, file=sys.stderr, flush=True)
            return
        for thread in (producer, reader):
            if thread.error is not None:
                raise RuntimeError(f"{thread.name} failed: {thread.error!r}")
        rss = rss_kib(worker.pid)
        if rss is not None:
            run.rss_last = (elapsed, rss)
            run.rss_peak = max(run.rss_peak, rss)
        if now < next_report and now < end:
            continue
        try:
            m = scrape(url)
        except OSError:
            m = {}
        scored = m.get("fraudstream_authorizations_scored_total", last_scored)
        dt = max(now - last_t, 1e-9)
        cpu, broker_cpu = cpu_seconds(worker.pid), cpu_seconds(broker_pid)
        latencies = reader.take()
        run.latencies.append((last_t - t0, elapsed, latencies))
        sample = Sample(
            elapsed=elapsed, rss_kib=rss, produced_per_s=(producer.sent - last_sent) / dt, scored_per_s=(scored - last_scored) / dt,
            p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99), n_latency=len(latencies),
            lag=m.get("fraudstream_consumer_lag", 0.0), alerts=m.get("fraudstream_alerts_total", 0.0),
            dead_letters=m.get("fraudstream_dead_letters_total", 0.0), snapshots=m.get("fraudstream_snapshots_pending", 0.0),
            cards=m.get("fraudstream_cards_tracked", 0.0), labels=m.get("fraudstream_labels_total", 0.0),
            worker_cores=None if cpu is None or last_cpu is None else (cpu - last_cpu) / dt, load1=os.getloadavg()[0],
            broker_cores=None if broker_cpu is None or last_broker_cpu is None else (broker_cpu - last_broker_cpu) / dt,
            broker_rss_kib=rss_kib(broker_pid), **_memory(m),
        )
        run.samples.append(sample)
        print(report_line(sample), flush=True)
        if run.rss_warm is None and rss is not None and cfg.warmed_up(sample):
            run.rss_warm, run.warm = (elapsed, rss), sample
            print(f"  warm-up over at {elapsed:.0f}s: {sample.cards:,.0f} cards in the tables (the heap holds at most "
                  f"{cfg.live_states_max:,}), RocksDB {_fmt_mib(sample.rocksdb_kib).strip()} MiB of {cfg.rocksdb_mb}",
                  flush=True)
        last_t, last_scored, last_sent, last_cpu, last_broker_cpu = now, scored, producer.sent, cpu, broker_cpu
        next_report += cfg.report_every
        if now >= end:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudstream.tools.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run (default 30)")
    parser.add_argument("--rate", type=float, default=50.0, help="authorizations per second (default 50: the embedded "
                        "broker slows as it fills, see the README)")
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds between report lines (default 60)")
    parser.add_argument("--cards", type=int, default=0, help="card population (default: 1,800 per authorization a "
                        "second, at least 20,000: each card two authorizations an hour)")
    parser.add_argument("--merchants", type=int, default=2_000, help="merchant population (default 2000)")
    parser.add_argument("--live-states", type=int, default=None, help="the worker's FRAUDSTREAM_LIVE_STATES_MAX "
                        "(default: a quarter of the cards, so that the bound is reached within the warm-up)")
    parser.add_argument("--rocksdb-mb", type=int, default=16, help="the worker's FRAUDSTREAM_ROCKSDB_MEMORY_MB (default 16: "
                        "so that RocksDB's memory reaches its bound within the warm-up; at least 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--store", default="rocksdb://", help="the worker's table store (default rocksdb://, production's)")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="add to the worker's environment only, e.g. an allocator to try: "
                        "--worker-env LD_PRELOAD=libjemalloc.so.2 (repeatable)")
    parser.add_argument("--rules", default=SoakConfig.rules, metavar="FILE", help="countermeasure rules applied before "
                        "the traffic starts (default rules/examples.json; '' for none)")
    parser.add_argument("--log-dir", default="var/log", help="where the worker's and the broker's logs go (default var/log)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.report_every <= 0 or args.cards < 0 or args.merchants <= 0:
        parser.error("--minutes, --rate, --report-every and --merchants must be positive, --cards too if given")
    if args.live_states is not None and args.live_states <= 0:
        parser.error("--live-states must be positive")
    if args.rocksdb_mb < 8:
        parser.error("--rocksdb-mb must be at least 8")
    worker_env = {}
    for item in args.worker_env:
        name, eq, value = item.partition("=")
        if not eq or not name:
            parser.error(f"--worker-env takes NAME=VALUE, not {item!r}")
        worker_env[name] = value
    if args.rules:
        try:
            RuleSet.from_json(Path(args.rules).read_bytes(), known_names=RULE_FIELDS)
        except OSError as exc:
            parser.error(f"--rules: cannot read {args.rules}: {exc.strerror or exc}")
        except RuleError as exc:
            parser.error(f"--rules: {args.rules}: {exc}")
    cfg = SoakConfig(minutes=args.minutes, rate=args.rate, report_every=args.report_every, cards=args.cards,
                     merchants=args.merchants, seed=args.seed, log_dir=args.log_dir, store=args.store,
                     live_states=args.live_states, rocksdb_mb=args.rocksdb_mb, worker_env=worker_env,
                     rules=args.rules or None)
    return soak(cfg)


if __name__ == "__main__":
    sys.exit(main())
