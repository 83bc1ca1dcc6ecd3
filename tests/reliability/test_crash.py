"""Crash safety: SIGKILL the worker mid-stream, restart it, and nothing is lost, doubled or changed.

The input is the Handbook simulator's traffic with one twist that makes a run reproducible to the bit: every
terminal is split into one merchant per card partition (``aligned_events``), so that a merchant's authorizations all
come from one partition, in the order they were produced, whatever the scheduling. A crash-free worker then gives
exactly what the pure core gives on the same events in the same order (``reference``), record for record: features,
score, model version, decision.

Any difference from the reference (see scenario.py) is therefore the crash's doing.
"""

from __future__ import annotations

import random
import re
import time

import pytest

from fraudstream.simulate import HandbookSimulator, LabelDelays

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
    kill_and_restart,
    kill_when_busy,
    missing_report,
    model_examples,
    reference,
    wait_all_scored,
    wait_growing,
    wait_produced,
    wait_progressing,
    worker_report,
)

pytestmark = pytest.mark.broker


@pytest.mark.timeout(RELIABILITY_TIMEOUT_S)
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
    workers = [start_worker(s, "crash-0")]
    producer = PacedProducer(s, events, rate=220)
    kill_and_restart(start_worker, s, workers, tap, rng, n, (250, 600), 3, "crash",
                     report=lambda: missing_report(s, tap, events[: producer.sent], workers))
    worker = workers[-1]
    wait_produced(producer, tap, report=lambda: missing_report(s, tap, events[: producer.sent], workers))
    wait_all_scored(s, tap, events, workers, "after 3 SIGKILLs")
    tap.settle(quiet=1.5)
    tap.close()
    assert worker.alive()

    scored = assert_all_scored_once_or_identically(tap.snapshot(), events)
    assert_matches_reference(scored, ref_scores, "after 3 SIGKILLs")
    assert_alerts_match(s, ref_alerts, "after 3 SIGKILLs")


@pytest.mark.timeout(RELIABILITY_TIMEOUT_S)
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
    workers = [worker]
    # The last quarter after the kills. A card-level label (a customer's report: the card's authorizations since T)
    # reaching a worker that lags behind the producer, as on a loaded machine, would find none of them scored yet and
    # teach the model nothing: each label waits until every authorization sent before it is scored.
    tx_ids = [e["tx_id"] for e in events]
    producer = PacedProducer(s, events, rate=150, labels=labels, hold_at=3 * n // 4,
                             label_gate=lambda sent: tap.has_all(tx_ids[:sent]))
    boundaries: list[tuple[dict[int, int], int, set[str]]] = []  # per incarnation after a kill: offsets, version, tx seen
    # labels have been arriving for a while
    wait_growing(tap.distinct, n // 3, "model-0: scores", report=lambda: missing_report(s, tap, events[: n // 3], workers))
    # The model has learned, and checkpointed since (every checkpoint_interval_s): a kill now loses nothing of it.
    wait_progressing(lambda: worker.metric("fraudstream_model_examples_learned") > 0,
                     lambda: (tap.distinct(), worker.metric("fraudstream_labels_total")), "model-0: learned",
                     report=lambda: worker_report(worker))
    time.sleep(s.checkpoint_interval_s + 0.5)
    for i in range(2):
        learned_before = kill_when_busy(worker, tap, rng, 3 * n // 4, (100, 400),
                                        just_before=lambda: worker.metric("fraudstream_model_examples_learned"),  # noqa: B023
                                        report=lambda: missing_report(s, tap, events[: producer.sent], workers))
        tap.settle(quiet=0.7)
        before = tap.snapshot()
        last = {p: max(o for q, o, _ in before if q == p) for p in {q for q, _, _ in before}}
        version = max(model_examples(v["model_version"]) for _, _, v in before)
        assert version > 0, "the model learned nothing before the kill: the test would prove nothing"
        boundaries.append((last, version, {v["tx_id"] for _, _, v in before}))
        worker = start_worker(s, f"model-{i + 1}")
        workers.append(worker)
        if i == 1:
            producer.release.set()
        restored = re.compile(r"model restored at version (\S+) \(training offset (\d+)\)")
        # As long as the restarting worker gets on (its log grows), however slowly on a loaded machine.
        wait_progressing(lambda: restored.search(worker.log_path.read_text()),  # noqa: B023
                         lambda: worker.log_path.stat().st_size, f"model-{i + 1}: restored",  # noqa: B023
                         report=lambda: worker_report(worker))  # noqa: B023
        m = restored.search(worker.log_path.read_text())
        assert int(m.group(2)) > 0 and model_examples(m.group(1)) > 0, f"restart {i + 1} did not resume a checkpoint: {m.group(0)}"
        wait_progressing(lambda: worker.metric("fraudstream_model_examples_learned") >= max(learned_before, 1),  # noqa: B023
                         lambda: (worker.metric("fraudstream_model_examples_learned"),  # noqa: B023
                                  worker.log_path.stat().st_size, tap.distinct()),  # noqa: B023
                         f"model-{i + 1}: caught up with {learned_before} examples",
                         report=lambda: worker_report(worker))  # noqa: B023
        # The card index (what card-level labels label) is not on the broker: rebuilt from the recovered snapshots.
        rebuilt = REBUILT.findall(worker.log_path.read_text())
        assert any(int(n) > 0 for n in rebuilt), f"restart {i + 1}: no card index rebuilt from the snapshots: {rebuilt}"
        # So is the maturity queue (what is learned as legitimate for now, and when snapshots go).
        queued = MATURITY_REBUILT.findall(worker.log_path.read_text())
        assert any(int(n) > 0 for n in queued), f"restart {i + 1}: no maturity queue rebuilt from the snapshots: {queued}"
    wait_produced(producer, tap, report=lambda: missing_report(s, tap, events[: producer.sent], workers))
    wait_all_scored(s, tap, events, workers, "after 2 SIGKILLs with labels")
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
