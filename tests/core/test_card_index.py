"""Each card's (ts, tx_id) list derived from its snapshots: what the score stage's live list holds."""

from __future__ import annotations

from fraudstream.config import Settings
from fraudstream.contracts import Authorization
from fraudstream.core.card_index import derive_card_lists, index_entry
from fraudstream.core.scorer import FraudScorer
from fraudstream.core.snapshot import Snapshot

DAY = 86_400_000
T0 = 1_700_438_400_000


def scorer(**overrides: object) -> FraudScorer:
    return FraudScorer(Settings.load(env={}).with_overrides(partitions=1, legit_sample_rate=0.0, **overrides))


def derived(s: FraudScorer) -> dict[str, list[tuple[int, str]]]:
    """The lists rebuilt from the snapshots the scorer holds, as their bytes (the worker's table) give them."""
    return derive_card_lists((index_entry(snap.to_bytes()) for snap in s.snapshots.values()), s.card_index.cap)


def held(s: FraudScorer, card: str) -> list[tuple[int, str]]:
    """The live list, but for entries whose snapshot has matured (every reader skips those)."""
    return [e for e in s.card_index.since(card, 0) if e[1] in s.snapshots]


def test_the_lists_derived_from_the_snapshots_are_the_live_ones() -> None:
    s = scorer(maturity_days=3.0)
    n = 0
    for day in range(8):
        for card in ("c1", "c2", "c3"):
            for k in range(3):
                n += 1
                # Some arrive late: the list is in the order scored, not in event time.
                ts = T0 + day * DAY + (k * 3_600_000 if k != 2 else -7_200_000)
                s.score(Authorization(f"t{n}", card, "m1", 10.0, ts), {}, decision_number=n)
        s.mature(T0 + day * DAY + 2 * 3_600_000)
    lists = derived(s)
    assert set(lists) == {"c1", "c2", "c3"}
    for card in lists:
        assert lists[card] == held(s, card), card
        assert lists[card] != sorted(lists[card])  # late ones kept their place
    # Matured snapshots are in neither; the live list may still have some of them.
    assert all(tx in s.snapshots for entries in lists.values() for _, tx in entries)


def test_a_card_keeps_its_newest_entries_up_to_the_cap() -> None:
    entries = [("c1", T0 + i, f"t{i}", i) for i in range(10)]
    assert derive_card_lists(reversed(entries), cap=4)["c1"] == [(T0 + i, f"t{i}") for i in range(6, 10)]


def test_snapshots_of_an_earlier_release_without_decision_numbers_come_first_by_time() -> None:
    entries = [("c1", 300, "new", 1), ("c1", 200, "old-b", None), ("c1", 100, "old-a", None), ("c2", 5, "x", None)]
    assert derive_card_lists(entries, cap=512) == {"c1": [(100, "old-a"), (200, "old-b"), (300, "new")], "c2": [(5, "x")]}


def test_index_entry_reads_a_snapshot_as_the_worker_stores_it() -> None:
    s = scorer()
    s.score(Authorization("t1", "c1", "m1", 10.0, T0), {}, decision_number=7)
    s.score(Authorization("t2", "c1", "m1", 10.0, T0 + 1), {})
    raw: dict[str, bytes] = {tx: snap.to_bytes() for tx, snap in s.snapshots.items()}
    assert index_entry(raw["t1"]) == ("c1", T0, "t1", 7)
    assert index_entry(raw["t2"]) == ("c1", T0 + 1, "t2", None)
    assert Snapshot.from_bytes(raw["t1"]).decision_number == 7
