"""This worker's card partitions' merchant states, and the merchant events they take, for every worker's replicas.

Why: a merchant's features are scored where its authorizations arrive, in their cards' partitions, from each
partition's own contributions plus the others' as of a minute back (``fraudstream.core.features.partials``). Every
worker keeps a replica of each card partition's merchant states, fed with that partition's merchant events in its
order (fraud.merchant-partials: one record per batch, each event tagged with its input offset), so the replicas are
the same everywhere, bit for bit. A partition assigned here is scored with its replica as its own state, changed as
it is scored: its events are then published for the other workers (and skipped, by their offsets, when this worker
reads them back). So the merchant states need no changelog, and a partition moves to another worker as its events
do: the next owner reads them to their end before it scores anything there.

The order of the broker's writes keeps the replicas true (the score stage awaits them in this order):

- an authorization's events go with its score, after its snapshot is on its changelog. Read again after a crash,
  an authorization whose events were published (its offset at or before what the replica has applied) is found in
  its snapshot, and its merchant state is read, not changed (it includes it);
- a label's events go with the label's outputs, before its snapshot is marked labelled: read again, its news is
  applied only if its offset is past what the replica has applied.

A batch that took events but did not publish them leaves them in this worker's replicas only: its worker stops
(``fraudstream.stream.app``), and its next reads every partition's events from the topic again.

>>> from fraudstream.config import Settings
>>> from fraudstream.core.features.partials import MerchantPartials
>>> from fraudstream.core.scorer import FraudScorer, MerchantLabel
>>> s = Settings.load(env={}).with_overrides(partitions=2)
>>> scorer = FraudScorer(s, merchant_partials=MerchantPartials(2, grace_ms=s.grace_ms, replicated=True))
>>> own = OwnMerchants(scorer)
>>> own.fresh(1, 7)
True
>>> own.label(MerchantLabel("m1", "c2", 1700000000000, 1, 1700000001000), "l", 3)  # c2 lives in partition 1
>>> own.label(MerchantLabel("m1", "c2", 1700000000000, 1, 1700000001000), "l", 3)  # read again: once
>>> [(record.partition, record.events) for record in own.records()]
[(1, [('l', 3, 'm1', 'c2', 1700000000000, 1)])]
"""

from __future__ import annotations

from fraudstream.contracts import MAX_MERCHANT_EVENTS, Authorization, MerchantEvent, MerchantEvents, encode
from fraudstream.core.features.partials import MerchantPartials
from fraudstream.core.scorer import FraudScorer, MerchantLabel
from fraudstream.stream.stages.base import Sink

__all__ = ["OwnMerchants"]


class OwnMerchants:
    """The card partitions this worker may score (their events read to their end: ``seeded``), and the merchant
    events they took since the last :meth:`records`."""

    __slots__ = ("scorer", "book", "seeded", "events", "next_ts", "idle_after")

    def __init__(self, scorer: FraudScorer) -> None:
        book = scorer.merchant_partials
        if book is None or not book.replicated:
            raise ValueError("the worker's scorer needs merchant partials fed by replicas (replicated=True)")
        self.scorer = scorer
        self.book: MerchantPartials = book
        self.seeded: set[int] = set()
        self.events: dict[int, list[MerchantEvent]] = {}
        self.next_ts: dict[int, int] = {}  # partition -> ts of the authorization it holds (nothing before it to come)
        self.idle_after: dict[int, int] = {}  # partition -> the offset it is quiet after

    def seed(self, partition: int) -> None:
        """``partition`` assigned here, its events read to their end: its replica is its own state now."""
        self.seeded.add(partition)

    def forget(self) -> None:
        """Partitions revoked: scored here again only once assigned and read to their end again."""
        self.seeded.clear()
        self.events.clear()
        self.next_ts.clear()
        self.idle_after.clear()

    def fresh(self, partition: int, offset: int) -> bool:
        """Whether the authorization at ``offset`` of ``partition`` is new to its merchant state."""
        return offset > self.book.applied.get((partition, "a"), -1)

    def authorization(self, partition: int, offset: int, auth: Authorization, base_amount: float) -> None:
        """The merchant state of ``partition`` took ``auth`` (its amount in the base currency) at ``offset``
        (``FraudScorer.enrich_merchant``)."""
        self._event(partition, ("a", offset, auth.merchant_id, auth.card_id, base_amount, auth.ts))
        self.book.applied[(partition, "a")] = offset

    def label(self, update: MerchantLabel, kind: str, offset: int) -> None:
        """A label's news for a merchant, applied to the labelled card's partition's state: ``kind`` "l", at
        ``offset`` of fraud.card-events (unless the state has it: the label read again), or "e", found waiting by the
        authorization at ``offset`` of fraud.authorizations (when it is first scored: read again, it is answered
        from its snapshot and finds none)."""
        book = self.book
        partition = book.card_partition(update.card_id)
        if kind == "l":
            if offset <= book.applied.get((partition, "l"), -1):
                return
            book.applied[(partition, "l")] = offset
        self.scorer.apply_merchant_label(update)
        self._event(partition, (kind, offset, update.merchant_id, update.card_id, update.tx_ts, update.fraud_delta))

    def holding(self, partition: int, ts: int) -> None:
        """``partition`` holds an authorization at ``ts`` (its next): it has passed the boundaries before it, here at
        once, and for the other workers when it is announced (if that moves it on)."""
        book = self.book
        before = book.passed.get(partition, -1)
        book.receive_progress(partition, ts)
        if book.passed.get(partition, -1) > before:
            self.next_ts[partition] = ts

    def quiet(self, partition: int) -> None:
        """``partition`` is caught up and quiet: nobody need wait for it until its next authorization."""
        book = self.book
        book.idle.add(partition)
        self.idle_after[partition] = book.applied.get((partition, "a"), -1)

    def _event(self, partition: int, event: MerchantEvent) -> None:
        events = self.events.get(partition)
        if events is None:
            events = self.events[partition] = []
        events.append(event)
        if event[0] == "a":
            self.idle_after.pop(partition, None)

    def records(self) -> list[MerchantEvents]:
        """The records to publish, one a partition (or more, past `MAX_MERCHANT_EVENTS`), and forgotten here."""
        out = []
        for partition in sorted(self.events.keys() | self.next_ts.keys() | self.idle_after.keys()):
            events = self.events.get(partition, [])
            cuts = _cuts(events)
            records = [MerchantEvents(partition, events[start:end]) for start, end in zip(cuts, cuts[1:], strict=False)]
            if not records:
                records.append(MerchantEvents(partition, []))
            records[-1].next_ts = self.next_ts.get(partition)
            records[-1].idle_after = self.idle_after.get(partition)
            out += records
        self.events.clear()
        self.next_ts.clear()
        self.idle_after.clear()
        return out

    def publish(self, sink: Sink, topic: str) -> None:
        """The records (:meth:`records`) to fraud.merchant-partials (``topic``), each to its card partition's number."""
        for record in self.records():
            sink.produce(topic, encode(record.as_dict()), None, record.partition)


def _cuts(events: list[MerchantEvent]) -> list[int]:
    """Where a partition's events are cut into records: every `MAX_MERCHANT_EVENTS` or so, never between two events
    of one input offset (a replica skips an offset it has applied, `MerchantPartials.apply`).

    >>> _cuts([]), _cuts([("a", 1, "m", "c", 1.0, 1)] * 3)
    ([0], [0, 3])
    """
    cuts, n = [0], len(events)
    while cuts[-1] < n:
        end = min(cuts[-1] + MAX_MERCHANT_EVENTS, n)
        while 0 < end < n and events[end][0] == "e" and events[end][1] == events[end - 1][1]:
            end += 1
        cuts.append(end)
    return cuts
