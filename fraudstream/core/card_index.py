"""Each card's recent authorizations, derived from the snapshots held: what a card-level label labels.

A customer's report ("fraud on my card since T") labels every authorization of the card since T, so the score
stage keeps, per card, the ``(ts, tx_id)`` of the authorizations it scored (``fraudstream.core.state.CardTransactions``, appended in
the order they were scored). Every one of them has a snapshot until it matures (``Snapshot``: its card, its ts and
the number of its decision in its partition), so the lists are derived from the snapshots, never stored on their
own: the worker rebuilds a partition's lists from its snapshot table when it recovers it
(``fraudstream.stream.card_index``, rebuilt with the other views of the snapshots: ``fraudstream.stream.snapshot_views``).

Derived, a card's list holds its snapshots' entries in the order they were scored (their decision numbers; the ts
for snapshots written before decisions were numbered, which came first), at most the newest ``cap``: what the live
list holds, but for entries whose snapshot has matured since (which the live list keeps a while, and every reader
skips: there is nothing left to label or look at).

>>> from fraudstream.contracts import Authorization
>>> from fraudstream.core.decision import Decision
>>> from fraudstream.core.snapshot import Snapshot
>>> def snap(tx, ts, n):
...     auth = Authorization(tx, "c1", "m1", 5.0, ts)
...     return Snapshot(auth, {}, 0.1, "v1", Decision("none", 0.5, ""), [], (), False, decision_number=n).to_bytes()
>>> snapshots = [snap("t2", 2_000, 8), snap("t1", 1_000, 7), snap("t3", 1_500, 9)]
>>> lists = derive_card_lists(map(index_entry, snapshots), cap=512)
>>> lists["c1"]  # in the order scored: t3 came late
[(1000, 't1'), (2000, 't2'), (1500, 't3')]
"""

from __future__ import annotations

from collections.abc import Iterable

from fraudstream.contracts import decode

__all__ = ["IndexEntry", "derive_card_lists", "index_entry"]

#: A snapshot as the views derived from the snapshots read it: its card, ts, tx_id and decision number (None if unnumbered).
IndexEntry = tuple[str, int, str, int | None]


def index_entry(raw: bytes) -> IndexEntry:
    """A snapshot's bytes (``Snapshot.to_bytes``) -> its card, ts, tx_id and decision number (None if unnumbered).

    >>> index_entry(b'{"a":{"tx_id":"t1","card_id":"c1","ts":5},"n":3}')
    ('c1', 5, 't1', 3)
    """
    d = decode(raw)
    a = d["a"]
    return a["card_id"], a["ts"], a["tx_id"], d.get("n")


def derive_card_lists(entries: Iterable[IndexEntry], cap: int) -> dict[str, list[tuple[int, str]]]:
    """Each card's ``(ts, tx_id)`` list, in the order scored, the newest ``cap`` (``CardTransactions.cap``), from its
    snapshots' :func:`index_entry` (in any order)."""
    per_card: dict[str, list[tuple[tuple[int, int, int], int, str]]] = {}
    for card_id, ts, tx_id, n in entries:
        # Unnumbered snapshots (an earlier release's) were all scored before the numbered ones.
        order = (0, ts, 0) if n is None else (1, n, ts)
        per_card.setdefault(card_id, []).append((order, ts, tx_id))
    lists = {}
    for card_id, listed in per_card.items():
        listed.sort()
        lists[card_id] = [(ts, tx_id) for _, ts, tx_id in listed[-cap:]]
    return lists
