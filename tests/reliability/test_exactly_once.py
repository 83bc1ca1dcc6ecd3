"""Exactly once (``FRAUDSTREAM_PROCESSING_GUARANTEE=exactly_once``): SIGKILL the worker mid-stream, restart it, and a
``read_committed`` reader of fraud.scores gets every authorization once, exactly as without a crash.

The same traffic as test_crash.py (one merchant per partition chain: a crash-free worker gives the pure core's
records), where at least once gives the same records, some of them twice.

The embedded broker keeps a transaction from ``read_committed`` readers while it is open, but shows an aborted one's
records (it lists no aborted transactions in its fetch responses), so the reader here leaves out aborted
transactions from their markers, as the worker's own consumer does (``faust_patches.read_committed_records``): what a
``read_committed`` reader gets from Apache Kafka.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest

from fraudstream.config import Settings
from fraudstream.contracts import decode
from fraudstream.simulate import HandbookSimulator
from fraudstream.stream.faust_patches import read_committed_records

from .scenario import (
    RELIABILITY_TIMEOUT_S,
    SEED,
    STALLED_AFTER_S,
    PacedProducer,
    aligned_events,
    assert_matches_reference,
    kill_and_restart,
    missing_report,
    reference,
    wait_all_scored,
    wait_produced,
)

pytestmark = pytest.mark.broker


def read_committed(settings: Settings, topic: str) -> list[tuple[int, int, dict]]:
    """Every record of ``topic`` a ``read_committed`` reader gets, to the end: (partition, offset, value)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    read_committed_records()

    async def read() -> list[tuple[int, int, dict]]:
        c = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, isolation_level="read_committed",
                             enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        try:
            tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            ends = await c.end_offsets(tps)
            out: list[tuple[int, int, dict]] = []
            quiet = 0
            while quiet < 3:
                got = await c.getmany(timeout_ms=200)
                quiet = 0 if got else quiet + 1
                out += [(m.partition, m.offset, decode(m.value)) for ms in got.values() for m in ms if m.value]
                if not got and all([await c.position(tp) >= ends[tp] for tp in tps]):
                    break
            return out
        finally:
            await c.stop()

    return asyncio.run(read())


def wait_committed(settings: Settings, topic: str, tx_ids: set[str], timeout: float = STALLED_AFTER_S) -> None:
    """Until a ``read_committed`` reader of ``topic`` gets every one of ``tx_ids`` (at ``timeout``, the test's
    assertions say what is missing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not tx_ids <= {v["tx_id"] for _, _, v in read_committed(settings, topic)}:
        time.sleep(0.5)


@pytest.mark.timeout(RELIABILITY_TIMEOUT_S)
def test_sigkill_mid_stream_gives_each_score_once(topics, start_worker, taps):
    """Two SIGKILLs at random points while scoring: every authorization scored once, as without a crash."""
    s = topics.with_overrides(processing_guarantee="exactly_once")
    rng = random.Random(SEED + 7)
    events = aligned_events(HandbookSimulator(n_customers=80, n_terminals=160, n_days=15, seed=11), s.partitions)
    n = len(events)
    ref_scores, _ref_alerts = reference(s, events)

    tap = taps(s, s.topic_scores)  # progress only: it sees aborted transactions' records too
    workers = [start_worker(s, "eos-0")]
    producer = PacedProducer(s, events, rate=220)
    kill_and_restart(start_worker, s, workers, tap, rng, n, (250, 500), 2, "eos",
                     report=lambda: missing_report(s, tap, events[: producer.sent], workers))
    wait_produced(producer, tap, report=lambda: missing_report(s, tap, events[: producer.sent], workers))
    wait_all_scored(s, tap, events, workers, "after 2 SIGKILLs")
    # The tap counts aborted scores too: those of a worker killed after it had scored the last authorizations are
    # committed only once the last worker has joined and scored them again.
    wait_committed(s, s.topic_scores, {e["tx_id"] for e in events})
    tap.settle(quiet=1.5)
    assert workers[-1].alive()

    records = read_committed(s, s.topic_scores)
    copies = Counter(v["tx_id"] for _, _, v in records)
    twice = {tx: k for tx, k in copies.items() if k > 1}
    missing = [e["tx_id"] for e in events if e["tx_id"] not in copies]
    assert not missing, f"{len(missing)} of {n} authorizations never scored (committed), e.g. {missing[:5]}"
    assert not twice, f"{len(twice)} of {n} authorizations scored more than once, e.g. {list(twice.items())[:5]}"
    assert_matches_reference({v["tx_id"]: v for _, _, v in records}, ref_scores, "exactly once, after 2 SIGKILLs")
    assert len(tap.snapshot()) >= len(records)  # what the broker shows a plain reader: aborted records included
