"""Crash safety: SIGKILL the worker mid-stream, restart it, and nothing is lost, doubled or changed.

The input is the Handbook simulator's traffic with one twist that makes a run reproducible to the bit: every
terminal is split into one merchant per partition chain (``aligned_events``), named so that murmur2 puts the
merchant on the same partition number as the card. Authorization partition p then feeds by-merchant partition p,
which feeds enriched partition p, and nothing else: each chain sees its events in the order they were produced,
whatever the scheduling. A crash-free worker then gives exactly what the pure core gives on the same events in
the same order (``reference``), record for record: features, score, model version, decision. Without the
alignment a merchant receives the cards of three source partitions interleaved by timing, and merchant windows
(a later event already in the bucket, the grace period) depend on that interleaving even without any crash.

Any difference from the reference below is therefore the crash's doing.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from fraudstream.config import Settings
from fraudstream.contracts import decode, decode_authorization, encode
from fraudstream.core.scorer import FraudScorer
from fraudstream.simulate import HandbookSimulator, LabelDelays

from ..conftest import read_topic, wait_for

pytestmark = pytest.mark.broker

SEED = 20261124


# --- helpers shared with test_rebalance.py and test_stall.py ----------------------------------------------------


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's default partitioner, and librdkafka's ``murmur2_random``)."""
    length, m = len(data), 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    rest, i = length & 3, length & ~3
    if rest == 3:
        h ^= data[i + 2] << 16
    if rest >= 2:
        h ^= data[i + 1] << 8
    if rest >= 1:
        h ^= data[i]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_of(key: str, partitions: int) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


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
                    if m.error() is None and m.value():
                        value = decode(m.value())
                        with self.lock:
                            self.records.append((m.partition(), m.offset(), value))
                            self.seen.add(value.get("tx_id"))
                            self.last_message = time.monotonic()
        finally:
            self.consumer.close()

    def distinct(self) -> int:
        return len(self.seen)

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
    """Produces the authorizations at ``rate`` a second, keyed by card; labels once the stream passed their ts."""

    def __init__(self, settings: Settings, events: list[dict], rate: float, labels: list[dict] | None = None,
                 hold_at: int | None = None) -> None:
        super().__init__(daemon=True)
        self.settings, self.events, self.rate, self.labels = settings, events, rate, labels or []
        self.hold_at = hold_at  # stop before this event until `release` is set
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


@pytest.fixture
def taps() -> Any:
    """``taps(settings, topic)``: a :class:`TopicTap`, closed at the end of the test whatever happens."""
    opened: list[TopicTap] = []

    def tap(settings: Settings, topic: str) -> TopicTap:
        opened.append(TopicTap(settings, topic))
        return opened[-1]

    yield tap
    for t in opened:
        t.close()


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
                   just_before: Any = None) -> Any:
    """SIGKILL ``worker`` once it has scored a random number (in ``progress``) of new authorizations, a random
    fraction of a batch later: mid-stream, whatever the pace of the restart before it. Returns what
    ``just_before()`` (called right before the kill) returns."""
    target = min(tap.distinct() + rng.randint(*progress), n - 100)
    wait_for(lambda: tap.distinct() >= target, timeout=60, interval=0.01)
    time.sleep(rng.uniform(0.0, 0.25))
    assert worker.alive(), f"worker died before it was killed: {worker.log_path.read_text()[-2000:]}"
    seen = just_before() if just_before is not None else None
    worker.kill()
    return seen


# --- tests ---------------------------------------------------------------------------------------------------------


def test_sigkill_mid_stream_loses_and_changes_nothing(topics, start_worker, taps):
    """Three SIGKILLs at random points while scoring; every authorization scored, exactly as without a crash."""
    s = topics
    rng = random.Random(SEED)
    events = aligned_events(HandbookSimulator(n_customers=100, n_terminals=200, n_days=17, seed=11), s.partitions)
    n = len(events)
    assert 2000 < n < 3000
    ref_scores, ref_alerts = reference(s, events)
    assert len(ref_alerts) > 50, "the reference raises too few alerts to test anything"

    tap = taps(s, s.topic_scores)
    worker = start_worker(s, "crash-0")
    producer = PacedProducer(s, events, rate=220)
    for i in range(3):
        kill_when_busy(worker, tap, rng, n, (250, 600))
        worker = start_worker(s, f"crash-{i + 1}")
    producer.join(60)
    assert producer.error is None and producer.undelivered == 0, (producer.error, producer.undelivered)
    wait_for(lambda: tap.distinct() >= n, timeout=60)
    tap.settle(quiet=1.5)
    tap.close()
    assert worker.alive()

    scored = assert_all_scored_once_or_identically(tap.snapshot(), events)
    assert_matches_reference(scored, ref_scores, "after 3 SIGKILLs")
    assert_alerts_match(s, ref_alerts, "after 3 SIGKILLs")


def test_model_resumes_after_sigkill(topics, start_worker, taps):
    """With labels flowing the model learns while it scores; after each SIGKILL the restarted worker resumes from its
    checkpoint plus the training examples since: its scores never carry an older model than before the kill."""
    s = topics
    rng = random.Random(SEED + 1)
    sim = HandbookSimulator(n_customers=100, n_terminals=200, n_days=20, seed=5)
    events = aligned_events(sim, s.partitions)
    labels = LabelDelays(seed=5).labels(sim)
    n = len(events)

    tap = taps(s, s.topic_scores)
    worker = start_worker(s, "model-0")
    producer = PacedProducer(s, events, rate=150, labels=labels, hold_at=3 * n // 4)  # the last quarter after the kills
    boundaries: list[tuple[dict[int, int], int, set[str]]] = []  # per incarnation after a kill: offsets, version, tx seen
    wait_for(lambda: tap.distinct() >= n // 3, timeout=60)  # labels have been arriving for a while
    # The model has learned, and checkpointed since (every checkpoint_interval_s): a kill now loses nothing of it.
    wait_for(lambda: worker.metric("fraudstream_model_examples_learned") > 0, timeout=60)
    time.sleep(s.checkpoint_interval_s + 0.5)
    for i in range(2):
        learned_before = kill_when_busy(worker, tap, rng, 3 * n // 4, (100, 400),
                                        just_before=lambda: worker.metric("fraudstream_model_examples_learned"))  # noqa: B023
        tap.settle(quiet=0.7)
        before = tap.snapshot()
        last = {p: max(o for q, o, _ in before if q == p) for p in {q for q, _, _ in before}}
        version = max(model_examples(v["model_version"]) for _, _, v in before)
        assert version > 0, "the model learned nothing before the kill: the test would prove nothing"
        boundaries.append((last, version, {v["tx_id"] for _, _, v in before}))
        worker = start_worker(s, f"model-{i + 1}")
        if i == 1:
            producer.release.set()
        restored = re.compile(r"model restored at version (\S+) \(training offset (\d+)\)")
        wait_for(lambda: restored.search(worker.log_path.read_text()), timeout=30)  # noqa: B023
        m = restored.search(worker.log_path.read_text())
        assert int(m.group(2)) > 0 and model_examples(m.group(1)) > 0, f"restart {i + 1} did not resume a checkpoint: {m.group(0)}"
        wait_for(lambda: worker.metric("fraudstream_model_examples_learned") >= max(learned_before, 1), timeout=30)  # noqa: B023
    producer.join(60)
    assert producer.error is None and producer.undelivered == 0, (producer.error, producer.undelivered)
    wait_for(lambda: tap.distinct() >= n, timeout=60)
    tap.settle(quiet=1.0)
    tap.close()

    records = tap.snapshot()
    assert_all_scored_once_or_identically(records, events)
    for i, (last, version, seen) in enumerate(boundaries):
        later = [v for p, o, v in records if o > last.get(p, -1) and v["tx_id"] not in seen]
        assert later, f"nothing scored after restart {i + 1}"
        older = [(v["tx_id"], v["model_version"]) for v in later if model_examples(v["model_version"]) < version]
        assert not older, (f"after restart {i + 1} {len(older)} new scores came from a model older than the one "
                           f"scoring before the kill (version {version}), e.g. {older[:5]}")
    assert worker.metric("fraudstream_model_examples_learned") >= boundaries[-1][1]
