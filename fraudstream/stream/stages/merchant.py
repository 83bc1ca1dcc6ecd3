"""Merchant features in event-time order, then back to the card's partition for the decision; merchant labels.

fraud.authorizations-by-merchant is keyed by merchant, so a merchant's state lives here. Its authorizations come
from every card partition, each in offset order but not in event time: they are held
(``fraudstream.core.features.ordering.EventTimeOrder``) until every card partition has passed them (intake's
progress marks), then applied in event time, so that live equals the backtest. One that comes after its time has
passed is applied at once (counted as out of order).

Crash safety: outputs first, then state. Each merchant's state is written (by :meth:`MerchantStage.commit`, once
the batch's outputs are on the broker) tagged with which authorizations it includes (:meth:`MerchantStage.progress`);
a copy of one it includes is skipped, its output exists. A held authorization is not acknowledged
(``fraudstream.stream.delivery.hold``) until it is released and its outputs and state are written: a crash or a
rebalance brings it back.

The stage hands back the messages it held, once released, for its loop to acknowledge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fraudstream.config import Settings
from fraudstream.contracts import Authorization, decode, decode_forwarded, decode_progress, encode, encode_progress, with_features
from fraudstream.core.features.ordering import EventTimeOrder
from fraudstream.core.scorer import FraudScorer, MerchantLabel
from fraudstream.metrics import Metrics
from fraudstream.stream.delivery import hold
from fraudstream.stream.stages.base import DeadLetters, Sink, Stage

__all__ = ["Applied", "MerchantStage", "card_progress"]


@dataclass(slots=True)
class Applied:
    """Which authorizations a merchant's state includes (its tag, `MerchantStage.progress`): ``newest``, the newest
    applied in event-time order, ``(ts, tx_id)``; ``sources``, per partition of fraud.authorizations, the newest
    offset applied from it."""

    newest: tuple[int, str] | None = None
    sources: dict[int, int] = field(default_factory=dict)


class MerchantStage(Stage):
    """fraud.authorizations-by-merchant -> fraud.authorizations-enriched (by card); fraud.merchant-labels applied.

    ``merchant_table``: the merchant states' table (routes, pending writes); ``merchant_durable``: the same, each
    value tagged with what it includes (``TaggedMapping``), which the scorer's merchant store reads and writes.
    """

    def __init__(self, settings: Settings, metrics: Metrics, outputs: Sink, dead_letters: DeadLetters, scorer: FraudScorer,
                 merchant_table: Any, merchant_durable: Any, positions: dict[tuple[str, int], int] | None = None) -> None:
        super().__init__(settings, metrics, outputs, dead_letters, positions)
        self.scorer = scorer
        self.merchant_table = merchant_table
        # Crash safety: each merchant's state carries which authorizations it includes (see `progress`), in its tag
        # (`tag`: the worker's TaggedMapping writes it with the state).
        self.merchant_durable = merchant_durable
        self.applied: dict[str, Applied] = {}
        # Per merchant partition, the authorizations held until every card partition has passed them.
        self.orders: dict[int, EventTimeOrder] = {}

    def batch(self, messages: list[Any]) -> list[Any]:
        """The merchant's features in event-time order, then back to the card's partition for the decision.

        Returns the held authorizations released now: they are acknowledged (may be committed) only once their
        outputs and their merchants' state are written."""
        touched: set[int] = set()
        for msg in messages:
            self.positions[(msg.topic, msg.partition)] = msg.offset
            self.guarded(msg, lambda: self._arrival(msg, touched))  # noqa: B023
        released = []
        for partition in sorted(touched):
            for msgs, d in self.orders[partition].release():
                self.guarded(msgs[0], lambda: self._one(d, partition))  # noqa: B023
                released.extend(msgs)
        self.metrics.held.set(sum(len(o) for o in self.orders.values()))
        self.outputs.poll()
        return released

    def _arrival(self, msg: Any, touched: set[int]) -> None:
        """A card partition's progress, or an authorization: held for event-time order, or (out of order) now."""
        d = decode_forwarded(msg.value)  # the card's features stay encoded: passed on unread
        order = self.orders.get(msg.partition)
        if order is None:
            order = self.orders[msg.partition] = EventTimeOrder(self.settings.partitions)
        touched.add(msg.partition)
        if "auth" not in d:  # card partitions' progress (`IntakeStage`): only what changed since it last said
            marks, idle = card_progress(d, self.settings.partitions)
            for source, mark in marks:
                order.advance(source, mark)
            for source in idle:
                order.go_idle(source)
            return
        a = d["auth"]
        # Copies re-sent by a restarted intake share their source offset; a redelivery by the platform does not.
        key = (a["tx_id"], *(d.get("src") or (-1, msg.offset)))
        held = order.held(a["ts"], key)
        if held is not None:
            # The same authorization again (re-sent, or read again after a seek back) while it is held: settled with
            # it, and not committed before it either.
            hold(msg)
            held[0].append(msg)
        elif order.offer(a["ts"], key, ([msg], d)):
            hold(msg)  # not committed while held: a crash or rebalance brings it back (see the merchant agent)
        else:
            self.metrics.out_of_order.inc()
            self._one(d, msg.partition, in_order=False)

    def commit(self) -> None:
        """After the batch's outputs are on the broker: the merchants' state, tagged with what it includes."""
        self.scorer.merchants.flush()
        for merchant_id in self.scorer.merchants.trim():
            self.applied.pop(merchant_id, None)
        self.merchant_table.clear_routes()
        self.merchant_table.send_pending()

    def progress(self, merchant_id: str) -> Applied:
        """Which authorizations the merchant's state includes (read from its tag the first time)."""
        applied = self.applied.get(merchant_id)
        if applied is None:
            tag = self.merchant_durable.tag(merchant_id)
            applied = self.applied[merchant_id] = Applied(*decode_progress(tag)) if tag else Applied()
        return applied

    def tag(self, merchant_id: str) -> bytes:
        """The tag written with the merchant's state: its `progress`."""
        applied = self.progress(merchant_id)
        return encode_progress(applied.newest, applied.sources)

    def _one(self, d: dict[str, Any], partition: int, in_order: bool = True) -> None:
        a = d["auth"]
        auth = Authorization(**a)
        merchant_id = auth.merchant_id
        duplicate = d["duplicate"]
        source, offset = d.get("src") or (-1, -1)
        applied = self.progress(merchant_id)
        key = (auth.ts, auth.tx_id)
        if not duplicate:
            # A copy of what the state includes already (redelivered after a crash, or re-sent by an intake that
            # crashed): skipped, its output was sent before the state was written. Each card partition's
            # authorizations reach a merchant in offset order, and only a restarted intake sends older ones again:
            # a copy comes from a card partition after a later offset of it was applied. In event-time order it is
            # also not newer than the newest applied (held ones are applied by time, not offset). An authorization
            # merely older than what the merchant has seen, released in order after a rebalance reset the order,
            # has a newer offset: it is new. (A redelivery by the platform is a new message, marked duplicate,
            # and answered again.)
            newest, included = applied.newest, applied.sources.get(source, -1)
            if offset <= included and (not in_order or (newest is not None and key <= newest)):
                return
        self.merchant_table.route(merchant_id, partition)
        feats = with_features(d["features"], self.scorer.enrich_merchant(auth, duplicate))
        if not duplicate:
            # The newest applied, in order or not: after a rebalance order starts afresh and can go back in time,
            # and a copy of one applied out of order may then come in order.
            if applied.newest is None or key > applied.newest:
                applied.newest = key
            if offset > included:
                applied.sources[source] = offset
            self.scorer.merchants.mark(merchant_id)  # written with the state
        self.outputs.produce(self.settings.topic_enriched, encode({"auth": a, "features": feats, "late": d["late"],
                                                                   "arr": d.get("arr")}), auth.card_id.encode())

    def label_batch(self, messages: list[Any]) -> None:
        """fraud.merchant-labels: confirmed fraud (or its correction) counted in the merchant's state."""
        self.each(messages, self._label_one)
        self.scorer.merchants.flush()
        for merchant_id in self.scorer.merchants.trim():
            self.applied.pop(merchant_id, None)
        self.merchant_table.clear_routes()

    def _label_one(self, msg: Any) -> None:
        d = decode(msg.value)
        self.merchant_table.route(d["merchant_id"], msg.partition)
        self.scorer.apply_merchant_label(MerchantLabel(d["merchant_id"], d["card_id"], d["tx_ts"], d["fraud_delta"], d["ts"]))

    def forget(self) -> None:
        """Partitions revoked: what they held comes again to their next owner; tags read back from the tables.
        Every card partition's progress is announced afresh after the rebalance (``IntakeStage.announce_again``)."""
        self.applied.clear()
        self.orders.clear()


def card_progress(d: dict[str, Any], sources: int) -> tuple[list[tuple[int, int]], list[int]]:
    """A progress record's card partitions that moved on (``marks``: partition, newest ts) and went ``idle``.

    Anything else raises ValueError (the record is dead-lettered): a card partition that is not one would count
    as one heard from, and release what waits for the real ones.

    >>> card_progress({"marks": [[0, 1700000000000]]}, 2), card_progress({"idle": [1]}, 2)
    (([(0, 1700000000000)], []), ([], [1]))
    >>> card_progress({"source": 1, "idle": True}, 2)  # as earlier versions wrote it, one card partition a record
    ([], [1])
    >>> card_progress({"features": {}}, 2)
    Traceback (most recent call last):
    ValueError: not a progress record: ['features']
    """
    if set(d) == {"source", "mark"}:  # earlier versions' forms (still in the topic at an upgrade)
        d = {"marks": [[d["source"], d["mark"]]]}
    elif set(d) == {"source", "idle"} and d["idle"] is True:
        d = {"idle": [d["source"]]}
    if not d or not set(d) <= {"marks", "idle"}:
        raise ValueError(f"not a progress record: {sorted(d)}")
    marks, idle = d.get("marks", []), d.get("idle", [])
    if not (isinstance(marks, list) and isinstance(idle, list)
            and all(isinstance(m, list) and len(m) == 2 and all(type(v) is int for v in m) for m in marks)
            and all(type(s) is int for s in idle)
            and all(0 <= s < sources for s in [m[0] for m in marks] + idle)):
        raise ValueError(f"malformed progress record: {d!r}"[:200])
    return [(s, ts) for s, ts in marks], idle
