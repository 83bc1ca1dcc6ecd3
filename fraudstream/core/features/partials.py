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

>>> from fraudstream.contracts import Authorization, MerchantEvents
>>> book, states = MerchantPartials(partitions=2, grace_ms=300_000), {}
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

from fraudstream.contracts import Authorization, MerchantEvents
from fraudstream.core.features.card import DAY_MS, MINUTE_MS
from fraudstream.core.features.merchant import MERCHANT_IDLE_MS, MerchantState, merchant_features, merchant_label
from fraudstream.core.partitioner import partition_of

__all__ = ["MerchantPartials", "PARTIALS_EVERY_MS", "PARTIALS_LAG_MS"]

#: How often (event time) a card partition takes versions of the merchant states it changed: the partials the others
#: read (how they travel between workers: docs/capacity.md, "What is left").
PARTIALS_EVERY_MS: Final = MINUTE_MS
#: How far behind an authorization the other partitions' partials it reads may be: with live traffic every partition
#: has passed that boundary long before, so nothing waits for it.
PARTIALS_LAG_MS: Final = MINUTE_MS

_Versions = list[tuple[int, MerchantState]]  # (boundary index, state), oldest first


class MerchantPartials:
    """Every card partition's contributions to each merchant, as of event-time boundaries.

    A partition's versions come from its own states (the backtest: :meth:`cross`, every partition passing a boundary
    at once) or from a replica fed with the merchant events it applied, in its order (a worker reading another's:
    :meth:`receive_authorization`, :meth:`receive_label`); the replica is bit for bit the partition's own state,
    since it makes the same calls on the same events.
    """

    __slots__ = ("partitions", "every_ms", "lag_ms", "grace_ms", "replicated", "versions", "passed", "newest", "crossed",
                 "touched", "replicas", "applied", "idle", "forgotten")

    def __init__(self, partitions: int, *, grace_ms: int, every_ms: int = PARTIALS_EVERY_MS,
                 lag_ms: int = PARTIALS_LAG_MS, replicated: bool = False) -> None:
        self.partitions = partitions
        #: Every partition's versions come from its replica (a worker: :meth:`apply`), not from the scorer's own states
        #: crossing boundaries (the backtest: :meth:`cross`).
        self.replicated = replicated
        self.every_ms = every_ms
        self.lag_ms = lag_ms
        self.grace_ms = grace_ms  # the scorers' (Settings.grace_ms): a replica stores what the partition stored
        self.versions: dict[str, dict[int, _Versions]] = {}  # merchant -> partition -> versions
        self.passed: dict[int, int] = {}  # partition -> index of the newest boundary it passed
        self.newest = -1  # the newest boundary any passed
        self.crossed = -1  # the newest every partition passed at once (`cross`)
        self.touched: dict[int, set[str]] = {}  # partition -> merchants it changed since then
        self.replicas: dict[int, dict[str, MerchantState]] = {}  # partition -> merchant -> state, from its events
        #: (partition, "a" or "l") -> the newest input offset applied from fraud.authorizations ("a": authorizations and
        #: the labels they found waiting) or fraud.card-events ("l"): an event at or before it is applied already.
        self.applied: dict[tuple[int, str], int] = {}
        self.idle: set[int] = set()  # partitions quiet and caught up: nobody waits for them
        self.forgotten = 0  # merchants forgotten so far (`forget_idle`)

    def card_partition(self, card_id: str) -> int:
        """The card partition ``card_id`` lives in (as the platform's producer puts it: murmur2, compiled with the
        core, so no cache of every card seen)."""
        return partition_of(card_id, self.partitions)

    def boundary(self, ts: int) -> int:
        """The index of the boundary whose partials an authorization at ``ts`` reads."""
        return (ts - self.lag_ms) // self.every_ms

    @staticmethod
    def key(partition: int, merchant_id: str) -> str:
        """Where a partition keeps its own state of a merchant, in the scorer's merchant store."""
        return f"{merchant_id}@{partition}"

    def others(self, partition: int, merchant_id: str, boundary: int) -> tuple[MerchantState, ...]:
        """What every partition but ``partition`` had contributed to ``merchant_id`` as of boundary index
        ``boundary``, in partition order (the same floats wherever they are added up). Read only."""
        by_partition = self.versions.get(merchant_id)
        if by_partition is None:
            return ()
        states = []
        for q in range(self.partitions):
            versions = by_partition.get(q) if q != partition else None
            if versions is not None:
                for index, state in reversed(versions):
                    if index <= boundary:
                        states.append(state)
                        break
        return tuple(states)

    def touch(self, partition: int, merchant_id: str) -> None:
        """``partition`` changed its state of ``merchant_id``: a version of it is taken at the next boundary passed."""
        touched = self.touched.get(partition)
        if touched is None:
            touched = self.touched[partition] = set()
        touched.add(merchant_id)

    def cross(self, ts: int, own: Callable[[str], MerchantState]) -> None:
        """Event time is at ``ts`` in every partition (the backtest's single order): each passing a boundary takes
        versions of the states it changed since the last, as they are now. ``own`` gives a state by its :meth:`key`."""
        index = ts // self.every_ms
        if index <= self.crossed:
            return  # the common case: the same minute
        self.crossed = index
        for partition in range(self.partitions):
            if index > self.passed.get(partition, -1):
                self._pass(partition, index, lambda m: own(self.key(partition, m)))  # noqa: B023

    def apply(self, record: MerchantEvents) -> int:
        """A partition's record of merchant events (fraud.merchant-partials), applied to its replica in its order;
        returns how many were new. A record sent again (its batch redelivered after a crash or a rebalance) holds
        events at offsets applied already: those are skipped, so a replica takes each event once. (A record holds every
        event of each input offset it holds: an authorization's and the label it found waiting go together.)"""
        p, applied = record.partition, self.applied
        floor_a, floor_l = applied.get((p, "a"), -1), applied.get((p, "l"), -1)
        new_a, new_l, n = floor_a, floor_l, 0
        for kind, offset, merchant_id, card_id, x, y in record.events:
            if kind == "l":
                if offset <= floor_l:
                    continue
                new_l = max(new_l, offset)
            elif offset <= floor_a:
                continue
            else:
                new_a = max(new_a, offset)
            if kind == "a":
                self.receive_authorization(p, Authorization("", card_id, merchant_id, x, y))
            else:
                self.receive_label(p, merchant_id, card_id, int(x), y)
            n += 1
        applied[(p, "a")], applied[(p, "l")] = new_a, new_l
        if record.next_ts is not None:
            self.receive_progress(p, record.next_ts)
        if record.idle_after is not None and new_a <= record.idle_after:  # not if it took more since (its own worker)
            self.idle.add(p)
        return n

    def ready(self, partition: int, ts: int) -> bool:
        """Whether an authorization at ``ts`` in ``partition`` can be scored: every other partition has passed the
        boundary it reads, or is idle. Until then it waits (with live traffic every partition has passed it a minute
        before it is read)."""
        boundary, passed, idle = self.boundary(ts), self.passed, self.idle
        for q in range(self.partitions):
            if q != partition and passed.get(q, -1) < boundary and q not in idle:
                return False
        return True

    def receive_authorization(self, partition: int, auth: Authorization) -> None:
        """An authorization ``partition`` gave its merchant state (its amount in the base currency), in its order."""
        self.idle.discard(partition)
        self.receive_progress(partition, auth.ts)
        merchant_features(self.writable(partition, auth.merchant_id), auth, self.grace_ms, base_amount=auth.amount)
        self.touch(partition, auth.merchant_id)

    def receive_label(self, partition: int, merchant_id: str, card_id: str, tx_ts: int, fraud_delta: int) -> None:
        """A label's news for a merchant, as ``partition`` applied it (``merchant_label``), in its order."""
        merchant_label(self.writable(partition, merchant_id), card_id, tx_ts, fraud_delta)
        self.touch(partition, merchant_id)

    def receive_progress(self, partition: int, ts: int) -> None:
        """``partition`` has nothing before ``ts`` left to give (its next authorization is at ``ts``, or it is idle)."""
        index = ts // self.every_ms
        if index > self.passed.get(partition, -1):
            self._pass(partition, index, lambda m: self.replica(partition, m))

    def replica(self, partition: int, merchant_id: str) -> MerchantState:
        """``partition``'s state of ``merchant_id``, as its events made it (a worker's own partition: the state its
        authorizations are scored with, and change, as :meth:`receive_authorization` does elsewhere)."""
        states = self.replicas.get(partition)
        if states is None:
            states = self.replicas[partition] = {}
        state = states.get(merchant_id)
        if state is None:
            state = states[merchant_id] = MerchantState()
        return state

    def writable(self, partition: int, merchant_id: str) -> MerchantState:
        """:meth:`replica`, to be changed: a copy first when it is kept as a version too (copy on write).

        Why: a version is the state as it was when its partition passed a boundary. Most merchants see a card of a
        partition now and then, so the state they were kept as is the replica itself for hours or days: one object,
        not two, until the next change (a copy of each version taken cost as much, and the worker's heap, which the
        garbage collector walks, twice as many merchant states).

        >>> from fraudstream.contracts import Authorization
        >>> book = MerchantPartials(partitions=2, grace_ms=300_000, replicated=True)
        >>> book.receive_authorization(0, Authorization("", "c1", "m1", 10.0, 60_000))
        >>> book.receive_progress(0, 120_000)          # passes a boundary: the replica is kept as it is
        >>> kept = book.versions["m1"][0][-1][1]
        >>> kept is book.replica(0, "m1"), kept.shared
        (True, True)
        >>> book.receive_authorization(0, Authorization("", "c2", "m1", 30.0, 130_000))
        >>> book.replica(0, "m1") is kept, kept.days.totals(130_000), book.replica(0, "m1").days.totals(130_000)
        (False, [1.0, 10.0, 0.0], [2.0, 40.0, 0.0])
        """
        state = self.replica(partition, merchant_id)
        if state.shared:
            state = self.replicas[partition][merchant_id] = state.copy()
        return state

    def _pass(self, partition: int, index: int, state_of: Callable[[str], MerchantState]) -> None:
        """``partition`` passes boundary ``index``: what it changed since its last one, as of the first passed."""
        last = self.passed.get(partition, -1)
        first = last + 1 if last >= 0 else index
        self.passed[partition] = index
        touched = self.touched.pop(partition, None)
        if touched:
            # Versions no authorization still to come reads: before the newest one at or before the lowest boundary
            # still read. A partition's next authorization (in event-time order) reads no further back than the lag
            # behind the boundary it passed, and the slowest partition (not idle) has passed the fewest: a partition
            # may run ahead of it (announcing where it holds), never the versions the slowest still reads.
            idle, slowest = self.idle, index
            for q, passed in self.passed.items():
                if passed < slowest and q not in idle:
                    slowest = passed
            floor = slowest - 2 * ((self.lag_ms + self.every_ms - 1) // self.every_ms) - 1
            for merchant_id in sorted(touched):
                state = state_of(merchant_id)
                if self.replicated:
                    state.shared = True  # the replica itself, until it next changes (`writable`)
                else:
                    state = state.copy()  # the backtest: the scorer's own state goes on in its store
                self._keep(partition, merchant_id, first, state, floor)
        if index > self.newest:
            if self.newest >= 0 and index * self.every_ms // DAY_MS > self.newest * self.every_ms // DAY_MS:
                self.forget_idle(index * self.every_ms)
            self.newest = index

    def _keep(self, partition: int, merchant_id: str, boundary: int, state: MerchantState, floor: int) -> None:
        by_partition = self.versions.get(merchant_id)
        if by_partition is None:
            by_partition = self.versions[merchant_id] = {}
        versions = by_partition.get(partition)
        if versions is None:
            versions = by_partition[partition] = []
        versions.append((boundary, state))
        while len(versions) > 1 and versions[1][0] <= floor:
            del versions[0]

    def forget_idle(self, now: int) -> int:
        """Forgets the merchants no partition has changed for ``MERCHANT_IDLE_MS`` (as their states are evicted): their
        versions and replicas. (A worker may apply a partition's news of one just before or just after another's day
        boundary: it then starts from a fresh state or from the idle one, whose windows are all empty.)"""
        cutoff = now - MERCHANT_IDLE_MS
        candidates = set(self.versions)
        for states in self.replicas.values():
            candidates.update(states)
        idle = []
        for merchant_id in candidates:
            by_partition = self.versions.get(merchant_id, {})
            if any(v[-1][1].clock >= cutoff for v in by_partition.values()):
                continue
            if any((state := states.get(merchant_id)) is not None and state.clock >= cutoff for states in self.replicas.values()):
                continue
            idle.append(merchant_id)
        for merchant_id in idle:
            self.versions.pop(merchant_id, None)
            for states in self.replicas.values():
                states.pop(merchant_id, None)
        self.forgotten += len(idle)
        return len(idle)
