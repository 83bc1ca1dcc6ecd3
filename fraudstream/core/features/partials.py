"""A merchant's features where its authorizations are scored: in their cards' partitions, with no repartition.

Why: today a merchant's state lives in the merchant's partition, so every authorization crosses the broker twice
more (to the merchant's partition and back to the card's) before it is scored. The merchant's features are sums that
merge (counts, amounts and confirmed frauds per hour and day; recent cards, which partitions never share, since a card
lives in one; the newest fraud), so each card partition can keep its own contributions to each merchant and tell the
others what they add up to, now and then, instead.

How, deterministically: card partition p keeps its own ``MerchantState`` per merchant, exact (its authorizations and
labels). Each time its event time passes a boundary (every ``every_ms``) it publishes the states it changed since the
last one: as they were before its first authorization at or past the boundary. An authorization at ``ts`` in p is
scored with p's own state plus every other partition's partial as of boundary index ``(ts - lag_ms) // every_ms``
(:meth:`MerchantPartials.boundary`). Each partition's partials depend on its own records and their order only, so
the features are the same for any number of workers, live or replayed, for a given partition count.

The trade-off: the other partitions' last one to two minutes (``lag_ms`` plus up to ``every_ms``) are missing from a
merchant's features, that is (P - 1)/P of its most recent traffic; its shortest window is a day.

>>> from fraudstream.contracts import Authorization
>>> from fraudstream.core.features.merchant import merchant_features
>>> book, states = MerchantPartials(partitions=2), {}
>>> def scored(card, partition, ts):
...     book.cross(ts, lambda key: states.setdefault(key, MerchantState()))
...     own = states.setdefault(book.key(partition, "m1"), MerchantState())
...     f = merchant_features(own, Authorization(f"t{ts}", card, "m1", 10.0, ts), others=book.others(partition, "m1", book.boundary(ts)))
...     book.touch(partition, "m1")
...     return f["merchant_count_1d"]
>>> t0 = 1_700_000_000_000
>>> scored("c1", 0, t0), scored("c2", 1, t0 + 1_000)   # partition 1 does not see partition 0's yet
(1.0, 1.0)
>>> scored("c3", 1, t0 + 125_000)   # two minutes later it does: its own two, and partition 0's one
3.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from fraudstream.core.features.card import DAY_MS, MINUTE_MS
from fraudstream.core.features.merchant import MERCHANT_IDLE_MS, MerchantState
from fraudstream.core.partitioner import partition_of

__all__ = ["MerchantPartials", "PARTIALS_EVERY_MS", "PARTIALS_LAG_MS"]

#: How often (event time) a card partition publishes what it changed: one record per merchant it touched, at most.
PARTIALS_EVERY_MS: Final = MINUTE_MS
#: How far behind an authorization the other partitions' partials it reads may be: with live traffic every partition
#: has passed that boundary long before, so nothing waits for it.
PARTIALS_LAG_MS: Final = MINUTE_MS

_KNOWN_CARDS: Final = 1_000_000  # cards whose partition is remembered (then forgotten all at once)
_Versions = list[tuple[int, MerchantState]]  # (boundary index, state), oldest first


class MerchantPartials:
    """Every card partition's contributions to each merchant, as of event-time boundaries; and the ones a scorer
    changed, published as its event time passes a boundary (:meth:`cross`)."""

    __slots__ = ("partitions", "every_ms", "lag_ms", "versions", "crossed", "touched", "card_partitions")

    def __init__(self, partitions: int, every_ms: int = PARTIALS_EVERY_MS, lag_ms: int = PARTIALS_LAG_MS) -> None:
        self.partitions = partitions
        self.every_ms = every_ms
        self.lag_ms = lag_ms
        self.versions: dict[str, dict[int, _Versions]] = {}  # merchant -> partition -> versions
        self.crossed = -1  # index of the newest boundary passed (-1: none yet)
        self.touched: set[tuple[int, str]] = set()  # (partition, merchant) changed since then
        self.card_partitions: dict[str, int] = {}  # murmur2 in Python costs 4 us: each card's, once

    def card_partition(self, card_id: str) -> int:
        """The card partition ``card_id`` lives in (as the platform's producer puts it)."""
        partition = self.card_partitions.get(card_id)
        if partition is None:
            if len(self.card_partitions) >= _KNOWN_CARDS:
                self.card_partitions.clear()
            partition = self.card_partitions[card_id] = partition_of(card_id, self.partitions)
        return partition

    def boundary(self, ts: int) -> int:
        """The index of the boundary whose partials an authorization at ``ts`` reads."""
        return (ts - self.lag_ms) // self.every_ms

    @staticmethod
    def key(partition: int, merchant_id: str) -> str:
        """Where a partition keeps its own state of a merchant, in the scorer's merchant store."""
        return f"{merchant_id}@{partition}"

    def publish(self, partition: int, merchant_id: str, boundary: int, state: MerchantState) -> None:
        """``partition``'s state of ``merchant_id`` as of boundary index ``boundary`` (kept as given: not changed
        afterwards). The same boundary again (a redelivery) replaces it."""
        by_partition = self.versions.get(merchant_id)
        if by_partition is None:
            by_partition = self.versions[merchant_id] = {}
        versions = by_partition.get(partition)
        if versions is None:
            versions = by_partition[partition] = []
        while versions and versions[-1][0] >= boundary:
            versions.pop()
        versions.append((boundary, state))
        # Versions that no authorization still to come reads: older than the newest one at or before the lowest
        # boundary still read, that of an authorization at the newest boundary passed (the backtest's single order).
        floor = self.crossed - (self.lag_ms + self.every_ms - 1) // self.every_ms
        while len(versions) > 1 and versions[1][0] <= floor:
            del versions[0]

    def others(self, partition: int, merchant_id: str, boundary: int) -> tuple[MerchantState, ...]:
        """What every partition but ``partition`` had contributed to ``merchant_id`` as of boundary index
        ``boundary``, in partition order (the same floats wherever they are added up). Read only."""
        by_partition = self.versions.get(merchant_id)
        if by_partition is None:
            return ()
        states = []
        for q in sorted(by_partition):
            if q != partition:
                for index, state in reversed(by_partition[q]):
                    if index <= boundary:
                        states.append(state)
                        break
        return tuple(states)

    def touch(self, partition: int, merchant_id: str) -> None:
        """``partition`` changed its state of ``merchant_id``: published at the next boundary passed."""
        self.touched.add((partition, merchant_id))

    def cross(self, ts: int, own: Callable[[str], MerchantState]) -> None:
        """Event time is at ``ts``: past a boundary, the states changed since the last one are published, as they
        are now (before the authorization at ``ts``), for the first boundary passed. ``own`` gives a state by its
        :meth:`key`. Every partition passes a boundary at once here (the backtest's single event order)."""
        index = ts // self.every_ms
        if index <= self.crossed:
            return
        first = self.crossed + 1 if self.crossed >= 0 else index
        new_day = ts // DAY_MS > self.crossed * self.every_ms // DAY_MS
        self.crossed = index
        for partition, merchant_id in sorted(self.touched):
            self.publish(partition, merchant_id, first, own(self.key(partition, merchant_id)).copy())
        self.touched.clear()
        if new_day:
            self.forget_idle(ts)

    def forget_idle(self, now: int) -> int:
        """Forgets the merchants no partition has changed for ``MERCHANT_IDLE_MS`` (as their states are evicted)."""
        idle = [m for m, by_partition in self.versions.items()
                if all(v[-1][1].clock < now - MERCHANT_IDLE_MS for v in by_partition.values())]
        for merchant_id in idle:
            del self.versions[merchant_id]
        return len(idle)
