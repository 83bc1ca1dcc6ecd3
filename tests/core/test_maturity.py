"""The backtest's maturity queue: one entry per authorization, handed out once at its feedback delay, removed at
maturity; whether an authorization was handed out is derived from where learning stands."""

from __future__ import annotations

import random

from fraudstream.core.maturity import MemoryMaturityQueue

FEEDBACK, MATURITY = 1_000, 10_000


def test_every_entry_is_handed_out_once_then_removed_once_whatever_the_order_of_times() -> None:
    """Entries added out of order, some behind where learning stands, and `now` going back and forth (a worker's
    batches): each is handed out for learning exactly once, in ts order within a call, then removed at maturity."""
    rng = random.Random(3)
    queue = MemoryMaturityQueue(FEEDBACK, MATURITY)
    handed, removed, now, added = [], [], 0, {}
    for step in range(400):
        for i in range(rng.randrange(4)):
            ts = max(0, now - rng.randrange(15_000))
            added[f"t{step}-{i}"] = ts
            queue.add(ts, f"t{step}-{i}")
        now += rng.randrange(500)
        due = queue.pop_due(now - rng.randrange(300))
        assert due.learn == sorted(due.learn, key=lambda tx: (added[tx], tx))
        handed += due.learn
        removed += due.matured
        assert all(queue.learned(added[tx], tx) for tx in due.learn)
    assert len(handed) == len(set(handed)) and len(removed) == len(set(removed)) and set(removed) <= set(handed)
    waiting = [tx for tx in added if tx not in handed]
    assert not any(queue.learned(added[tx], tx) for tx in waiting)
    assert len(queue) == len(added) - len(removed) and queue.oldest() is not None
    due = queue.pop_due(now + 20 * MATURITY)
    assert sorted(due.learn) == sorted(waiting) and len(removed) + len(due.matured) == len(added) and len(queue) == 0


def test_an_entry_scored_behind_learning_is_not_learned_until_handed_out() -> None:
    queue = MemoryMaturityQueue(FEEDBACK, MATURITY)
    queue.pop_due(5_000)  # learning stands at 4,000
    queue.add(3_000, "late")
    assert queue.oldest() == 4_000 and not queue.learned(3_000, "late")  # due at once
    assert queue.pop_due(4_500).learn == ["late"] and queue.learned(3_000, "late")


def test_entries_read_back_from_storage_are_learned_up_to_where_learning_stood() -> None:
    queue = MemoryMaturityQueue(FEEDBACK, MATURITY, learned_until=2_000)
    queue.restore(1_500, "handed-out")
    queue.restore(2_500, "waiting")
    assert queue.learned(1_500, "handed-out") and not queue.learned(2_500, "waiting")
    assert queue.pop_due(4_000).learn == ["waiting"]
    assert queue.pop_due(13_000).matured == ["handed-out", "waiting"]
