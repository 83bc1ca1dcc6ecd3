"""One logical model across workers, checkpoints and restore, against real workers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fraudstream.kafka.topics import create_topics
from fraudstream.simulate import HandbookSimulator, LabelDelays, produce

from ..conftest import WorkerProcess, isolated_settings, read_distinct, read_topic, wait_for

pytestmark = pytest.mark.broker


def test_every_worker_learns_every_example_and_resumes_from_its_checkpoint(broker, tmp_path: Path):
    s = isolated_settings(broker, tmp_path, partitions=4, checkpoint_interval_s=1.0)
    create_topics(s)
    a = WorkerProcess(s.with_overrides(state_dir=str(tmp_path / "a")), tmp_path / "a.log")
    b = WorkerProcess(s.with_overrides(state_dir=str(tmp_path / "b")), tmp_path / "b.log")
    try:
        # Both in the group before traffic starts: this test is about the model, tests/reliability about rebalances.
        def settled(log: Path) -> bool:
            text = log.read_text()
            return text.count("Executing _on_partitions_assigned") >= 1 and text.count("Revoking previously") == text.count(
                "Setting newly assigned")

        wait_for(lambda: settled(tmp_path / "a.log") and settled(tmp_path / "b.log"), timeout=60)
        time.sleep(4)  # a second join round, if any, starts within half a session timeout
        wait_for(lambda: settled(tmp_path / "a.log") and settled(tmp_path / "b.log"), timeout=60)
        sim = HandbookSimulator(n_customers=150, n_terminals=300, n_days=20, seed=11)
        counts = produce(s, sim, LabelDelays(seed=11), investigator_k=20, investigator_linger_s=4.0)
        assert counts.labels > 0
        n = len(sim.transactions())
        assert len(read_distinct(s, s.topic_scores, n)) == n

        # Labels were joined on whichever worker owns the card; every example reaches both workers,
        # and both apply all of them: the same version is the same model.
        state: dict = {}

        def agreed() -> bool:
            examples = len(read_topic(s, s.topic_training, idle=1, timeout=30))
            values = [a.metric("fraudstream_model_learn_total"), b.metric("fraudstream_model_learn_total"),
                      a.metric("fraudstream_model_examples_learned"), b.metric("fraudstream_model_examples_learned")]
            state.update(examples=examples, values=values)
            return examples > 0 and all(v == examples for v in values)

        wait_for(agreed, timeout=120, interval=1.0)
        examples = state["examples"]

        # A clean stop checkpoints; the restarted worker scores with the model it had, not a fresh one.
        b.stop()
        checkpoint = tmp_path / "b" / f"{s.app_id}.model"
        assert checkpoint.exists() and checkpoint.stat().st_size > 0
        b = WorkerProcess(s.with_overrides(state_dir=str(tmp_path / "b")), tmp_path / "b2.log")
        wait_for(lambda: b.metric("fraudstream_model_examples_learned") == examples, timeout=60)
        assert "model restored at version" in (tmp_path / "b2.log").read_text()
    finally:
        a.stop()
        b.stop()
