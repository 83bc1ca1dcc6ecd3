"""Intake: authorizations validated (bad ones dead-lettered), the card's features, then on to the merchant's partition.

Here a card's authorizations arrive in order (fraud.authorizations is keyed by card). Each goes on to
fraud.authorizations-by-merchant with its card features; after each batch, every merchant partition is told how
far the card partitions of the batch have got, and, by a timer, which have gone quiet, so the merchant stage can
keep event-time order (``fraudstream.core.features.ordering.EventTimeOrder``). Only what changed is said, in one
record per merchant partition: every record there costs the broker (the embedded one keeps them all), and an
idle worker would otherwise repeat itself at every tick of its idle timer (see :meth:`IntakeStage.announce_again`).

Crash safety: outputs first, then state. The card's state is written (by :meth:`IntakeStage.commit`, once the
batch's outputs are on the broker) tagged with the offset of the newest authorization it includes; a redelivered
authorization at or before that offset is skipped, its output exists.

>>> from prometheus_client import CollectorRegistry
>>> from fraudstream.config import Settings
>>> from fraudstream.core.scorer import FraudScorer
>>> from fraudstream.metrics import Metrics
>>> from fraudstream.stream.stages.base import DeadLetters, Message
>>> class Outputs(list):
...     def produce(self, topic, value, key=None, partition=None): self.append((topic, key, partition))
...     def poll(self): pass
>>> class Cards(dict):  # the card table, tagged with offsets (fraudstream.stream.tables.TaggedMapping)
...     def tag(self, key): return None
...     def route(self, key, partition): pass
...     def clear_routes(self): pass
...     def send_pending(self): pass
>>> s, out, metrics = Settings.load(env={}).with_overrides(partitions=2), Outputs(), Metrics(CollectorRegistry())
>>> intake = IntakeStage(s, metrics, out, DeadLetters(s, metrics, out), FraudScorer(s), Cards(), Cards())
>>> auth = b'{"tx_id": "t1", "card_id": "c1", "merchant_id": "m1", "amount": 5.0, "ts": 1700000000000}'
>>> intake.batch([Message(s.topic_authorizations, 1, 40, b"c1", auth), Message(s.topic_authorizations, 1, 41, b"c1", b"?")])
>>> [(topic.split(".")[-1], key, partition) for topic, key, partition in out]
[('authorizations-by-merchant', b'm1', None), ('dead-letter', None, None), ('authorizations-by-merchant', None, 0), ('authorizations-by-merchant', None, 1)]
>>> intake.card_offset("c1"), intake.source_marks, intake.announced
(40, {1: 1700000000000}, {1: 1700000000000})

Card partition 1's progress went to both merchant partitions; a batch that does not move it on says no more:

>>> del out[:]; intake.batch([Message(s.topic_authorizations, 1, 42, b"c1", auth.replace(b"t1", b"t2"))])
>>> [(topic.split(".")[-1], key, partition) for topic, key, partition in out]
[('authorizations-by-merchant', b'm1', None)]
"""

from __future__ import annotations

import time
from typing import Any

from fraudstream.config import Settings
from fraudstream.contracts import Rejection, decode_authorization, encode
from fraudstream.core.scorer import FraudScorer
from fraudstream.metrics import Metrics
from fraudstream.stream.stages.base import DeadLetters, Sink, Stage, arrival_ms

__all__ = ["ANNOUNCE_AGAIN_S", "IntakeStage"]

#: What was announced is announced again this often (wall clock), changed or not: a safety net only (see
#: `IntakeStage.announce_again`). An idle worker then writes a record per merchant partition this often, not 4 a second.
ANNOUNCE_AGAIN_S = 30.0


class IntakeStage(Stage):
    """fraud.authorizations (by card) -> fraud.authorizations-by-merchant (by merchant), with the card's features.

    ``card_table``: the card states' table (routes, pending writes); ``card_durable``: the same, each value tagged
    with the offset it includes (``TaggedMapping``), which the scorer's card store reads and writes.
    """

    def __init__(self, settings: Settings, metrics: Metrics, outputs: Sink, dead_letters: DeadLetters, scorer: FraudScorer,
                 card_table: Any, card_durable: Any, positions: dict[tuple[str, int], int] | None = None) -> None:
        super().__init__(settings, metrics, outputs, dead_letters, positions)
        self.scorer = scorer
        self.card_table = card_table
        self.card_durable = card_durable
        # Crash safety: each card's state carries the offset of the newest authorization it includes.
        self.card_offsets: dict[str, int] = {}
        # Event-time order at the merchant stage: what intake has handed on per card partition.
        self.source_marks: dict[int, int] = {}
        self.source_seen: dict[int, float] = {}  # card partition -> wall clock of its last authorization
        # What every merchant partition was last told of each card partition: its mark, or None (idle). Only a
        # change is announced; `announce_again` forgets it all, so that everything is announced afresh.
        self.announced: dict[int, int | None] = {}
        self.announced_since = time.monotonic()
        self._batch_sources: set[int] = set()

    def batch(self, messages: list[Any]) -> None:
        """Validate, then the card's features: here the card's authorizations arrive in order. Then tell every
        merchant partition how far the card partitions of the batch have got (see `EventTimeOrder`): those whose
        mark is not what was last announced (it advanced, or the partition was announced idle, or nothing was
        announced since `announce_again`)."""
        self.metrics.consumed.inc(len(messages))
        self._batch_sources = set()
        self.each(messages, self._one)
        now = time.monotonic()
        marks = []
        for source in sorted(self._batch_sources):
            self.source_seen[source] = now
            mark = self.source_marks[source]
            if self.announced.get(source) != mark:
                marks.append([source, mark])
                self.announced[source] = mark
        if marks:
            self.broadcast({"marks": marks})
        self.outputs.poll()

    def broadcast(self, record: dict[str, Any]) -> None:
        """To every partition of fraud.authorizations-by-merchant, after what was produced there before."""
        value = encode(record)
        for partition in range(self.settings.partitions):
            self.outputs.produce(self.settings.topic_by_merchant, value, partition=partition)

    def announce_idle(self, consumer: Any) -> None:
        """Card partitions of this worker that are caught up and quiet (for ``source_idle_s``), announced once, when
        they become so: merchant partitions stop waiting for them. Called often (a timer), so a quiet partition
        releases what waits for it ``source_idle_s`` after its last authorization, give or take a tick.
        ``consumer``: faust's, for the partitions assigned, their high-water marks and its read offsets."""
        topic = self.settings.topic_authorizations
        try:
            assignment = consumer.assignment()
        except Exception:  # not yet started
            return
        now, quiet = time.monotonic(), self.settings.source_idle_s
        if now - self.announced_since >= ANNOUNCE_AGAIN_S:
            self.announce_again()
        idle = []
        for tp in assignment:
            if tp.topic != topic or now - self.source_seen.get(tp.partition, 0.0) < quiet:
                continue
            if tp.partition in self.announced and self.announced[tp.partition] is None:
                continue  # announced idle already, and nothing came since
            hw = consumer.highwater(tp)
            # Where reading resumes: after the last authorization handled here, or, for a partition this worker has
            # handled nothing of since it was assigned, faust's read offset (its committed offset after the seek).
            done = max(self.positions.get((topic, tp.partition), -1) + 1, consumer._read_offset.get(tp) or 0)
            if hw is None or done < hw:
                continue  # behind, or not fetched yet: it is not idle, it is late
            idle.append(tp.partition)
            self.announced[tp.partition] = None
        if idle:
            self.broadcast({"idle": sorted(idle)})
        self.outputs.poll()

    def announce_again(self) -> None:
        """Forget what was announced: each card partition's progress goes to every merchant partition again, with
        its next batch, or at the next `announce_idle` if it is idle.

        Only changes are announced, but a merchant stage that forgets its orders (``MerchantStage.forget``, at a
        rebalance) or starts afresh (a restarted worker) must hear from every card partition again before it
        releases anything; what it heard before lies behind the offsets committed. The worker calls this when it
        is assigned partitions (``fraudstream.stream.app``): under faust's eager rebalancing every member's
        partitions are all revoked (each merchant stage forgets) before the new assignment is handed to any member,
        and a restarted worker joins its group, a rebalance too, so what is announced after an assignment reaches
        every merchant stage after it forgot. `announce_idle` also calls it every ``ANNOUNCE_AGAIN_S`` as a safety
        net for whatever that misses (a revoked partition's late acknowledgements committed past an announcement,
        static group membership, where a restart is no rebalance): held authorizations would otherwise wait for a
        quiet card partition for good; this bounds the wait, at one record per merchant partition that often.
        """
        self.announced.clear()
        self.announced_since = time.monotonic()

    def commit(self) -> None:
        """After the batch's outputs are on the broker: the cards' state, tagged with the offsets it includes."""
        self.scorer.cards.flush()
        for card_id in self.scorer.cards.trim():
            self.card_offsets.pop(card_id, None)  # written with the state; read back with it
        self.card_table.clear_routes()
        self.card_table.send_pending()

    def card_offset(self, card_id: str) -> int:
        """Offset in fraud.authorizations of the newest authorization in the card's state (-1: none)."""
        offset = self.card_offsets.get(card_id)
        if offset is None:
            tag = self.card_durable.tag(card_id)
            offset = self.card_offsets[card_id] = -1 if not tag else int(tag)
        return offset

    def _one(self, msg: Any) -> None:
        auth = decode_authorization(msg.value, msg.key)
        if isinstance(auth, Rejection):
            self.dead_letters.send(auth, msg)
            return
        card_id = auth.card_id
        if auth.ts > self.source_marks.get(msg.partition, auth.ts - 1):
            self.source_marks[msg.partition] = auth.ts
        self._batch_sources.add(msg.partition)
        if msg.offset <= self.card_offset(card_id):
            return  # redelivered after a crash: in the card's state already, and its output was sent before that
        self.card_table.route(card_id, msg.partition)
        step = self.scorer.card_stage(auth)
        # The features last: the merchant stage passes them on without decoding them (`contracts.decode_forwarded`).
        value = encode({"auth": auth.as_dict(), "late": step.late, "duplicate": step.duplicate, "src": [msg.partition, msg.offset],
                        "arr": arrival_ms(msg), "features": step.features})
        self.outputs.produce(self.settings.topic_by_merchant, value, auth.merchant_id.encode())
        self.card_offsets[card_id] = msg.offset
        self.scorer.cards.mark(card_id)  # the offset is written with the state, even when the state did not change
