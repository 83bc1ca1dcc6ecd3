"""Snapshots: the worker's bytes round-trip, and snapshots written by earlier releases still read."""

from __future__ import annotations

from fraudstream.contracts import Authorization, decode, encode
from fraudstream.core.decision import Decision
from fraudstream.core.snapshot import EncodedSnapshots, Snapshot

AUTH = Authorization("t1", "c1", "m1", 50.0, 1_700_000_000_000, channel="ecom")


def test_a_snapshot_round_trips_through_the_workers_bytes_with_its_decision_number() -> None:
    snap = Snapshot(AUTH, {"amount": 50.0, "card_count_1h": 3.0}, 0.42, "logistic-9", Decision("update", 0.3, "a-t0", ("R1",)), ["why"], ("R1", "R2"),
                    True, label=False, provisional=True, decision_number=17)
    table: dict[str, bytes] = {}
    EncodedSnapshots(table)["t1"] = snap
    assert decode(table["t1"])["n"] == 17
    assert EncodedSnapshots(table)["t1"] == snap and EncodedSnapshots(table).get("nope") is None


def test_a_snapshot_written_before_provisional_learning_reads_as_not_yet_learned() -> None:
    old = encode({"a": AUTH.as_dict(), "x": [50.0, None], "s": 0.1, "v": "logistic-0",
                  "d": {"action": "none", "threshold": 0.5, "alert_id": None, "rules": []}, "r": [], "h": [], "late": False,
                  "l": None, "n": 4})
    snap = Snapshot.from_bytes(old)
    assert (snap.provisional, snap.label, snap.decision_number, snap.auth) == (False, None, 4, AUTH)
    assert snap.features == {"amount": 50.0}
    again, before = decode(snap.to_bytes()), decode(old)
    assert again["x"][:2] == [50.0, None] and not any(again["x"][2:])  # the vector of every feature, in order
    assert {k: v for k, v in again.items() if k != "x"} == {k: v for k, v in before.items() if k != "x"} | {"p": False}
