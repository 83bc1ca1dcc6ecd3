"""Rebalances: partitions move between workers of one group with their state, and nothing changes.

Two workers share the group (same app_id, their own state dirs and metrics ports). Mid-stream one is stopped
(SIGTERM): the other takes over its partitions, restoring their tables from the changelogs; later a third joins and
partitions move to it. The results must be exactly those of one worker alone. The input is built as in
test_crash.py (each partition chain independent), so one crash-free worker gives exactly what the pure core gives
on the same events (``reference``): that is the single-worker reference, record for record.
"""

from __future__ import annotations

import random

import pytest

from fraudstream.simulate import HandbookSimulator

from .scenario import (
    MATURITY_REBUILT,
    REBUILT,
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
    wait_progressing,
    worker_report,
)

pytestmark = pytest.mark.broker


def scored_by(worker) -> float:
    return worker.metric("fraudstream_authorizations_scored_total")


@pytest.mark.timeout(RELIABILITY_TIMEOUT_S)
def test_partitions_move_with_their_state(topics, start_worker, taps, tmp_path):  # noqa: F811
    s = topics
    rng = random.Random(SEED + 2)
    events = aligned_events(HandbookSimulator(n_customers=100, n_terminals=200, n_days=17, seed=13), s.partitions)
    n = len(events)
    ref_scores, ref_alerts = reference(s, events)

    def member(name: str):
        return start_worker(s.with_overrides(state_dir=str(tmp_path / f"state-{name}")), name)

    tap = taps(s, s.topic_scores)
    first, second = member("first"), member("second")
    workers = [first, second]
    # The last 40% waits for the third worker, so that it joins while authorizations flow.
    producer = PacedProducer(s, events, rate=150, hold_at=int(n * 0.6))

    def report() -> str:
        return missing_report(s, tap, events[: producer.sent], workers)

    # Both members of the group hold partitions and score. Every wait below lasts as long as the workers get on
    # (they score, or their logs grow while they start and join), however slowly on a loaded machine.
    wait_progressing(lambda: scored_by(first) > 0 and scored_by(second) > 0,
                     lambda: (tap.distinct(), first.log_path.stat().st_size, second.log_path.stat().st_size),
                     "both members score", report=lambda: worker_report(first) + "\n" + worker_report(second))
    wait_growing(tap.distinct, int(n * rng.uniform(0.2, 0.3)), "scores with two members", report=report)
    second.stop()  # SIGTERM: a clean leave, mid-stream
    assert second.process.returncode == 0, second.log_path.read_text()[-2000:]

    # The first takes over the second's partitions, with their tables, and carries on alone: 60% of the
    # authorizations of all three partitions get scored with only the first in the group.
    before = scored_by(first)
    wait_growing(tap.distinct, int(n * 0.6) - 50, "scores with the first member alone", report=report)
    assert scored_by(first) > before
    # The card index of the partitions taken over (not on the broker) was rebuilt from their recovered snapshots.
    rebuilt = REBUILT.findall(first.log_path.read_text())
    assert len(rebuilt) >= 2 and int(rebuilt[-1]) > 0, rebuilt
    queued = MATURITY_REBUILT.findall(first.log_path.read_text())  # and the maturity queue's entries
    assert len(queued) >= 2 and int(queued[-1]) > 0, queued

    third = member("third")
    workers.append(third)
    producer.release.set()
    # partitions moved to the newcomer, with their state
    wait_progressing(lambda: scored_by(third) > 0, lambda: (tap.distinct(), third.log_path.stat().st_size),
                     "the third member scores", report=lambda: worker_report(third))
    wait_produced(producer, tap, report=report)
    wait_all_scored(s, tap, events, workers, "across two rebalances")
    tap.settle(quiet=1.5)
    assert first.alive() and third.alive()

    scored = assert_all_scored_once_or_identically(tap.snapshot(), events)
    assert_matches_reference(scored, ref_scores, "across two rebalances")
    assert_alerts_match(s, ref_alerts, "across two rebalances")
