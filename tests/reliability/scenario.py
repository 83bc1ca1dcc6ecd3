"""The reliability tests' scenario: reproducible traffic, a reference run, taps on the outputs, paced producers,
progress-based waits and the reports that say what was lost where.

The input is the Handbook simulator's traffic with one twist that makes a run reproducible to the bit: every
terminal is split into one merchant per card partition (``aligned_events``), so that a merchant's authorizations
all come from one partition, which sees them in the order they were produced, whatever the scheduling, and no other
partition's merchant partials add to it. A worker that nothing disturbs then gives exactly what the pure core gives
on the same events in the same order (``reference``), record for record: features, score, model version, decision.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from fraudstream.config import Settings
from fraudstream.contracts import decode, decode_authorization, encode
from fraudstream.core.partitioner import partition_of
from fraudstream.core.scorer import FraudScorer
from fraudstream.simulate import HandbookSimulator

from ..conftest import read_topic, wait_for

SEED = 20261124
#: The worker's log line when it has rebuilt the card index of the partitions it recovered (fraudstream.stream.card_index).
REBUILT = re.compile(r"card index of partitions \[[\d, ]*\] rebuilt from their snapshots: (\d+) entries")
#: ... and the maturity queue's entries of those partitions (fraudstream.stream.maturity).
MATURITY_REBUILT = re.compile(r"maturity queue of partitions \[[\d, ]*\] rebuilt from their snapshots: (\d+) entries")


# --- helpers shared with test_rebalance.py and test_stall.py ----------------------------------------------------


def aligned_events(sim: HandbookSimulator, partitions: int) -> list[dict[str, Any]]:
    """The simulator's authorizations, each terminal split into one merchant per partition chain (module doc)."""
    names: dict[tuple[str, int], str] = {}
    out = []
    for auth in sim.iter_authorizations():
        event = auth.as_event()
        p = partition_of(event["card_id"], partitions)
        key = (event["merchant_id"], p)
        if key not in names:
            j = 0
            while partition_of(f"{key[0]}~{j}", partitions) != p:
                j += 1
            names[key] = f"{key[0]}~{j}"
        event["merchant_id"] = names[key]
        out.append(event)
    assert len({e["tx_id"] for e in out}) == len(out)
    return out


def reference(settings: Settings, events: list[dict[str, Any]]) -> tuple[dict[str, dict], dict[tuple[str, str], dict]]:
    """The crash-free answer: the pure core on the same events in the same per-partition order.

    Returns every score record by tx_id and every alert record by (alert_id, tx_id), both as they look on the topic.
    """
    scorer = FraudScorer(settings, learn_inline=False)
    scores: dict[str, dict] = {}
    alerts: dict[tuple[str, str], dict] = {}
    for event in events:
        auth = decode_authorization(encode(event), event["card_id"].encode())
        assert not hasattr(auth, "reason"), auth
        scored = scorer.process(auth, partition=partition_of(auth.card_id, settings.partitions))
        scores[auth.tx_id] = decode(encode(scored.score_record()))
        if scored.alerted:
            rec = decode(encode(scored.alert_record()))
            alerts[(rec["alert_id"], rec["tx_id"])] = rec
    return scores, alerts


class TopicTap(threading.Thread):
    """Reads every message of a topic from the beginning, in the background, keeping (partition, offset, value)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({**settings.kafka_client_config(), "group.id": f"tap-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        md = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions])
        self.records: list[tuple[int, int, dict]] = []
        self.seen: set[str] = set()
        self.last_message = time.monotonic()
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.start()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                for m in self.consumer.consume(1000, 0.05):
                    raw, partition, offset = m.value(), m.partition(), m.offset()
                    if m.error() is None and raw and partition is not None and offset is not None:
                        value = decode(raw)
                        with self.lock:
                            self.records.append((partition, offset, value))
                            self.seen.add(value.get("tx_id"))
                            self.last_message = time.monotonic()
        finally:
            self.consumer.close()

    def distinct(self) -> int:
        return len(self.seen)

    def has_all(self, tx_ids: Iterable[str]) -> bool:
        with self.lock:
            return self.seen.issuperset(tx_ids)

    def snapshot(self) -> list[tuple[int, int, dict]]:
        with self.lock:
            return list(self.records)

    def settle(self, quiet: float = 1.0, timeout: float = 15.0) -> None:
        """Wait until nothing arrived for ``quiet`` seconds."""
        wait_for(lambda: time.monotonic() - self.last_message > quiet, timeout=timeout, interval=0.05)

    def close(self) -> None:
        self.halt.set()
        self.join(10)


class PacedProducer(threading.Thread):
    """Produces the authorizations at ``rate`` a second, keyed by card; labels once the stream passed their ts.

    ``label_gate(i)``, when given, holds each label (and the stream with it) until it returns true for the number
    of authorizations sent before it: a card-level label teaches the model only about authorizations scored already.
    """

    def __init__(self, settings: Settings, events: list[dict], rate: float, labels: list[dict] | None = None,
                 hold_at: int | None = None, label_gate: Callable[[int], bool] | None = None) -> None:
        super().__init__(daemon=True)
        self.settings, self.events, self.rate, self.labels = settings, events, rate, labels or []
        self.hold_at = hold_at  # stop before this event until `release` is set
        self.label_gate = label_gate
        self.release = threading.Event()
        self.sent = 0
        self.labels_sent = 0
        self.undelivered: int | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            s = self.settings
            p = Producer(s.producer_config())
            labels, li = self.labels, 0
            started = time.monotonic()
            last_ts = None
            for i, event in enumerate(self.events):
                if i == self.hold_at:
                    p.flush(30)
                    self.release.wait(120)
                    started = time.monotonic() - i / self.rate
                while li < len(labels) and labels[li]["ts"] < event["ts"]:
                    if self.label_gate is not None and not self.label_gate(i):
                        p.poll(0)
                        gate_deadline = time.monotonic() + 120
                        while not self.label_gate(i) and time.monotonic() < gate_deadline:
                            time.sleep(0.02)
                        started = time.monotonic() - i / self.rate
                    p.produce(s.topic_labels, encode(labels[li]), labels[li]["card_id"].encode())
                    li += 1
                p.produce(s.topic_authorizations, encode(event), event["card_id"].encode())
                self.sent = i + 1
                last_ts = event["ts"]
                if i % 20 == 19:
                    p.poll(0)
                    delay = started + (i + 1) / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            for label in labels[li:]:
                if last_ts is not None and label.get("since", 0) <= last_ts:
                    p.produce(s.topic_labels, encode(label), label["card_id"].encode())
                    li += 1
            self.labels_sent = li
            self.undelivered = p.flush(120)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


#: A wait for scores fails once the count has not grown for this long, not after a fixed time: a slow machine only
#: makes it longer. A restart re-reads what its last checkpoint had not covered (thousands of records, no new score)
#: before it scores again: under `pytest -n 4` (four modules side by side on two cores) that took over 30 s.
STALLED_AFTER_S = 60.0

#: pytest's own limit for these tests (300 s in pyproject.toml): the waits above end them when the worker stops
#: getting on; a loaded machine (2 cores shared with other runs) can take 4 minutes to get through one.
RELIABILITY_TIMEOUT_S = 900


def wait_progressing(done: Callable[[], bool], progress: Callable[[], Any], what: str,
                     report: Callable[[], str] | None = None, stalled_after: float = STALLED_AFTER_S,
                     interval: float = 0.05) -> None:
    """Wait until ``done()``, as long as ``progress()`` keeps changing: fail once it stood still ``stalled_after`` s,
    with ``report()`` in the message."""
    started = now = time.monotonic()
    last, since, longest = progress(), started, 0.0
    while not done():
        time.sleep(interval)
        now, current = time.monotonic(), progress()
        if current != last:
            longest = max(longest, now - since)
            last, since = current, now
        elif now - since > stalled_after:
            detail = report() if report is not None else ""
            raise AssertionError(f"{what}: not after {now - started:.0f}s, no progress ({last}) for the last "
                                 f"{now - since:.0f}s\n{detail}")
    longest = max(longest, now - since)
    print(f"{what}: done in {now - started:.1f}s, longest pause {longest:.1f}s")


def wait_growing(count: Callable[[], int], target: int, what: str, report: Callable[[], str] | None = None,
                 stalled_after: float = STALLED_AFTER_S, interval: float = 0.05) -> None:
    """Wait until ``count() >= target``, as long as it keeps growing."""
    wait_progressing(lambda: count() >= target, count, f"{what} ({target})", report, stalled_after, interval)


def worker_report(worker: Any, metrics: tuple[str, ...] = ("fraudstream_authorizations_scored_total",
                  "fraudstream_labels_total", "fraudstream_model_learn_total", "fraudstream_model_examples_learned",
                  "fraudstream_consumer_lag", "fraudstream_broker_errors_total", "fraudstream_merchant_held",
                  "fraudstream_authorizations_rerouted_total")) -> str:
    """What a worker's metrics and log say now."""
    lines = [f"--- {worker.log_path.name} ({'alive' if worker.alive() else f'exited {worker.process.returncode}'})"]
    if worker.alive():
        try:
            text = worker.metrics()
            lines += [line for line in text.splitlines() if line.startswith(metrics)]
        except Exception as exc:
            lines.append(f"metrics unreadable: {exc}")
    log_text = worker.log_path.read_text(errors="replace")
    notable = [line for line in log_text.splitlines() if re.search(r"WARNING|ERROR|CRITICAL|Traceback", line)
               and "producer buffer full" not in line]
    lines.append(f"{len(notable)} warnings/errors, the last ones:")
    lines += notable[-15:]
    lines.append("last lines:")
    lines += log_text.splitlines()[-15:]
    return "\n".join(lines)


def locate(settings: Settings, topic: str, tx_ids: set[str], timeout: float = 30.0) -> dict[str, list[tuple[int, int]]]:
    """Partition and offset of every copy of the given tx_ids on ``topic`` (the value's tx_id, or its auth's)."""
    c = Consumer({**settings.kafka_client_config(), "group.id": f"locate-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": True})
    found: dict[str, list[tuple[int, int]]] = defaultdict(list)
    try:
        parts = list(c.list_topics(topic, timeout=10).topics[topic].partitions)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(parts) and time.monotonic() < deadline:
            for m in c.consume(1000, 0.2):
                error, partition, offset = m.error(), m.partition(), m.offset()
                if error is not None or partition is None or offset is None:
                    if error is not None and error.code() == KafkaError._PARTITION_EOF and partition is not None:
                        at_end.add(partition)
                    continue
                try:
                    v = decode(m.value() or b"")
                    tx = v.get("tx_id") or (v.get("auth") or {}).get("tx_id")
                except Exception:
                    continue
                if tx in tx_ids:
                    found[tx].append((partition, offset))
    finally:
        c.close()
    return found


def committed_offsets(settings: Settings, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The offsets the workers' consumer group has committed (read only: this consumer never joins the group)."""
    c = Consumer({**settings.kafka_client_config(), "group.id": settings.app_id, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(t, p) for t in topics for p in range(settings.partitions)], timeout=10)
        return {(tp.topic, tp.partition): tp.offset for tp in tps}
    finally:
        c.close()


def missing_report(settings: Settings, tap: TopicTap, events: list[dict], workers: Iterable[Any]) -> str:
    """Which authorizations are not on fraud.scores, whether they reached fraud.authorizations and whether the group
    has committed past them (then they are lost: nobody will read them again), and what the workers say."""
    with tap.lock:
        seen = set(tap.seen)
    missing = [e["tx_id"] for e in events if e["tx_id"] not in seen]
    if not missing:
        return "nothing is missing any more"
    wanted = set(missing)
    stages = [("auth", settings.topic_authorizations)]
    where = {name: locate(settings, topic, wanted) for name, topic in stages}
    try:
        committed = committed_offsets(settings, [topic for _, topic in stages])
    except Exception as exc:
        committed = {}
        lines_committed = f"committed offsets unreadable: {exc}"
    else:
        lines_committed = "committed offsets: " + ", ".join(
            f"{name}[{p}]={committed.get((topic, p))}" for name, topic in stages for p in range(settings.partitions))
    lines = [f"{len(missing)} of {len(events)} authorizations not on {settings.topic_scores} (tap "
             f"{'reading' if tap.is_alive() else 'DEAD'})", lines_committed]
    furthest: dict[str, int] = defaultdict(int)
    stuck: dict[tuple[str, int], list[int]] = defaultdict(list)  # (stage, partition) -> offsets there
    lost = 0
    for tx in missing:
        reached = [name for name, _ in stages if where[name].get(tx)]
        furthest[reached[-1] if reached else "nowhere"] += 1
        name, topic = stages[len(reached) - 1] if reached else stages[0]
        for p, o in where[name].get(tx, []):
            stuck[(name, p)].append(o)
        if reached and all(o < committed.get((topic, p), -1) for p, o in where[name][tx]):
            lost += 1
    lines.append(f"furthest stage reached: {dict(furthest)}; committed past at that stage (LOST: never read again): {lost}")
    lines.append("offsets where they stopped: " + ", ".join(
        f"{name}[{p}] {len(os)} at {_runs(sorted(os))}" for (name, p), os in sorted(stuck.items())))
    for tx in missing[:10]:
        lines.append(f"  {tx}: " + "; ".join(f"{name} {where[name].get(tx) or 'absent'}" for name, _ in stages))
    lines += [worker_report(w) for w in workers]
    return "\n".join(lines)


def wait_produced(producer: PacedProducer, tap: TopicTap, report: Callable[[], str] | None = None) -> None:
    """Wait for the producer to finish, as long as it sends or the workers score (a label gate waits for them)."""
    wait_progressing(lambda: not producer.is_alive(), lambda: (producer.sent, tap.distinct()), "producer finished",
                     report=report)
    assert producer.error is None and producer.undelivered == 0, (producer.error, producer.undelivered)


def _runs(offsets: list[int]) -> str:
    """1 2 3 7 8 -> '1..3 7..8'"""
    out: list[str] = []
    for o in offsets:
        if out and int(out[-1].rsplit("..", 1)[-1]) == o - 1:
            out[-1] = f"{out[-1].split('..')[0]}..{o}"
        else:
            out.append(str(o))
    return " ".join(out)


def wait_all_scored(settings: Settings, tap: TopicTap, events: list[dict], workers: Iterable[Any], what: str,
                    stalled_after: float = STALLED_AFTER_S) -> None:
    """Wait until every authorization of ``events`` is on fraud.scores, as long as more keep arriving."""
    wait_growing(tap.distinct, len(events), f"{what}: authorizations scored",
                 report=lambda: missing_report(settings, tap, events, workers), stalled_after=stalled_after)


def model_examples(version: str) -> int:
    """``model_version`` is ``<name>-<examples learned>``."""
    return int(version.rsplit("-", 1)[1])


def group_by_tx(records: list[tuple[int, int, dict]]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for _p, _o, v in records:
        out[v["tx_id"]].append(v)
    return out


def differences(got: dict, want: dict) -> dict[str, tuple[Any, Any]]:
    """Field by field (features one level down), what differs."""
    out: dict[str, tuple[Any, Any]] = {}
    for k in sorted(set(got) | set(want)):
        if k == "features" and isinstance(got.get(k), dict) and isinstance(want.get(k), dict):
            for f in sorted(set(got[k]) | set(want[k])):
                if got[k].get(f) != want[k].get(f):
                    out[f"features.{f}"] = (got[k].get(f), want[k].get(f))
        elif got.get(k) != want.get(k):
            out[k] = (got.get(k), want.get(k))
    return out


def assert_all_scored_once_or_identically(records: list[tuple[int, int, dict]], events: list[dict]) -> dict[str, dict]:
    """Every tx_id is on fraud.scores; every redelivered copy is the same record. Returns one record per tx_id."""
    by_tx = group_by_tx(records)
    missing = [e["tx_id"] for e in events if e["tx_id"] not in by_tx]
    assert not missing, f"{len(missing)} of {len(events)} authorizations never scored, e.g. {missing[:5]}"
    unequal = {tx: differences(copies[i], copies[0]) for tx, copies in by_tx.items() for i in range(1, len(copies))
               if copies[i] != copies[0]}
    assert not unequal, (f"{len(unequal)} tx_ids scored twice with different records, e.g. "
                         f"{dict(list(unequal.items())[:3])}")
    return {tx: copies[0] for tx, copies in by_tx.items()}


def assert_matches_reference(scored: dict[str, dict], ref: dict[str, dict], what: str) -> None:
    diffs = {tx: differences(scored[tx], ref[tx]) for tx in ref if scored.get(tx) != ref[tx]}
    fields: dict[str, int] = defaultdict(int)
    for d in diffs.values():
        for f in d:
            fields[f] += 1
    first = sorted(diffs)[:3]
    assert not diffs, (f"{what}: {len(diffs)} of {len(ref)} scored authorizations differ from the crash-free reference; "
                       f"fields: {dict(fields)}; first: {[(tx, diffs[tx]) for tx in first]}")


def assert_alerts_match(settings: Settings, ref_alerts: dict[tuple[str, str], dict], what: str) -> None:
    alerts = read_topic(settings, settings.topic_alerts, idle=2.0, timeout=30)
    got: dict[tuple[str, str], dict] = {}
    for _k, v in alerts:
        key = (v["alert_id"], v["tx_id"])
        assert got.setdefault(key, v) == v, f"{what}: alert {key} published twice with different content: {differences(v, got[key])}"
    missing = sorted(set(ref_alerts) - set(got))
    extra = sorted(set(got) - set(ref_alerts))
    changed = [k for k in ref_alerts if k in got and got[k] != ref_alerts[k]]
    assert not missing, f"{what}: {len(missing)} of {len(ref_alerts)} reference alerts never raised, e.g. {missing[:5]}"
    assert not extra, f"{what}: {len(extra)} alerts the crash-free reference does not raise, e.g. {extra[:5]}"
    assert not changed, f"{what}: {len(changed)} alerts differ, e.g. {[(k, differences(got[k], ref_alerts[k])) for k in changed[:3]]}"


def kill_when_busy(worker: Any, tap: TopicTap, rng: random.Random, n: int, progress: tuple[int, int],
                   just_before: Any = None, report: Callable[[], str] | None = None) -> Any:
    """SIGKILL ``worker`` once it has scored a random number (in ``progress``) of new authorizations, a random
    fraction of a batch later: mid-stream, whatever the pace of the restart before it. Returns what
    ``just_before()`` (called right before the kill) returns."""
    target = min(tap.distinct() + rng.randint(*progress), n - 100)
    wait_growing(tap.distinct, target, f"{worker.log_path.name}: scores before the kill", interval=0.01,
                 report=report or (lambda: worker_report(worker)))
    time.sleep(rng.uniform(0.0, 0.25))
    assert worker.alive(), f"worker died before it was killed: {worker.log_path.read_text()[-2000:]}"
    seen = just_before() if just_before is not None else None
    worker.kill()
    return seen



def kill_and_restart(start_worker: Callable[..., Any], settings: Settings, workers: list[Any], tap: TopicTap,
                     rng: random.Random, n: int, progress: tuple[int, int], times: int, name: str,
                     report: Callable[[], str] | None = None) -> None:
    """``times`` over: SIGKILL the newest of ``workers`` mid-stream (:func:`kill_when_busy`), and start the next one,
    ``{name}-{i}``, appended to ``workers``."""
    for i in range(times):
        kill_when_busy(workers[-1], tap, rng, n, progress, report=report)
        workers.append(start_worker(settings, f"{name}-{i + 1}"))

# --- tests ---------------------------------------------------------------------------------------------------------
