"""Score: card features joined with the merchant's, the model's score, rules and the decision, where the card's
alerts are decided (fraud.authorizations-enriched is keyed by card).

Crash safety: state first, then outputs. :meth:`ScoreStage.batch` puts the batch's scores, alerts and training
examples in an outbox; the worker writes the batch's state to its changelogs (snapshots, then standings, then
thresholds: ``fraudstream.stream.flushing.Flusher.durable``) and only then :meth:`ScoreStage.send` produces the outbox. A redelivered
authorization is answered from its snapshot. Each snapshot carries the number of the decision it records in its
partition (``n``), kept with the partition's threshold: a snapshot that reached its changelog when its threshold and
standing did not, before a crash, is replayed into them (:meth:`ScoreStage.replay`, with
``DecisionPolicy.replay``), so the decisions after it are the ones an uninterrupted worker takes.

>>> from prometheus_client import CollectorRegistry
>>> from fraudstream.config import Settings
>>> from fraudstream.core.scorer import FraudScorer
>>> from fraudstream.metrics import Metrics
>>> from fraudstream.stream.stages.base import DeadLetters, Message
>>> from fraudstream.stream.stages.labels import CardStage, LabelOutcomes
>>> from fraudstream.stream.stages.tables import CardTables
>>> class Outputs(list):
...     def produce(self, topic, value, key=None, partition=None): self.append((topic, key))
...     def poll(self): pass
>>> class Table(dict):  # a TableMapping without faust: routes are bookkeeping here
...     partition = 0
...     def route(self, key, partition): pass
...     def clear_routes(self): pass
>>> s, out, metrics = Settings.load(env={}).with_overrides(partitions=2), Outputs(), Metrics(CollectorRegistry())
>>> tables = CardTables(*(Table() for _ in range(6)))
>>> stage = ScoreStage(s, metrics, out, DeadLetters(s, metrics, out), FraudScorer(s), tables, LabelOutcomes(s, metrics, out))
>>> auth = {"tx_id": "t1", "card_id": "c1", "merchant_id": "m1", "amount": 5.0, "ts": 1700000000000}
>>> stage.batch([Message(s.topic_enriched, 1, 0, b"c1", encode({"auth": auth, "features": {}, "late": False}))])
>>> out, [topic for topic, _value, _key in stage.outbox]  # nothing produced before the batch's state is written
([], ['fraud.scores'])
>>> stage.send(); out, stage.decisions, sorted(tables.thresholds)
([('fraud.scores', b'c1')], {1: 1}, ['1'])
"""

from __future__ import annotations

import logging
import struct
import time
import zlib
from typing import Any

from fraudstream.config import Settings
from fraudstream.contracts import Authorization, decode, encode
from fraudstream.core.decision import DecisionPolicy
from fraudstream.core.features.card import HOUR_MS
from fraudstream.core.scorer import FraudScorer
from fraudstream.metrics import Metrics, observe_all
from fraudstream.stream.stages.base import DeadLetters, Sink, arrival_ms
from fraudstream.stream.stages.labels import CardStage, LabelOutcomes
from fraudstream.stream.stages.tables import CardTables

__all__ = ["ScoreStage"]

log = logging.getLogger("fraudstream.worker")


class ScoreStage(CardStage):
    """fraud.authorizations-enriched -> fraud.scores, fraud.alerts (and training examples as snapshots mature)."""

    def __init__(self, settings: Settings, metrics: Metrics, outputs: Sink, dead_letters: DeadLetters, scorer: FraudScorer,
                 tables: CardTables, outcomes: LabelOutcomes, positions: dict[tuple[str, int], int] | None = None) -> None:
        super().__init__(settings, metrics, outputs, dead_letters, scorer, tables, outcomes, positions)
        #: (topic, value, key): the batch's outputs, produced by `send` once its state is on its changelogs.
        self.outbox: list[tuple[str, bytes, bytes | None]] = []
        # Decisions taken per partition of the enriched topic: stamped on each snapshot and kept with the
        # partition's threshold, so a snapshot that reached its changelog without them can be replayed into them.
        self.decisions: dict[int, int] = {}
        self.alerts_by_hour: dict[int, int] = {}  # hour of event time -> new alerts: a day is 24 counters
        self._touched: set[int] = set()
        self._newest = 0
        self._arrivals: list[int] = []  # ms: when each authorization of the batch reached fraud.authorizations
        self._scores: list[float] = []  # the batch's scores, observed together
        self._late = self._duplicates = 0  # the batch's, counted together
        self._policy_chunks: dict[int, list[tuple[bytes, bytes, int]]] = {}  # per partition, `pack_policy`'s last pieces

    def batch(self, messages: list[Any]) -> None:
        """Scores into the outbox: sent by `send` once the batch's state is on its changelogs."""
        self._touched.clear()
        s, m, scorer, tables = self.settings, self.metrics, self.scorer, self.tables
        started = time.perf_counter()
        self._newest = 0
        self._arrivals.clear()
        self.each(messages, self._one)
        m.scored.inc(len(messages))
        observe_all(m.score, self._scores)
        self._scores.clear()
        m.late.inc(self._late)
        m.duplicates.inc(self._duplicates)
        self._late = self._duplicates = 0
        newest = self._newest
        if newest:
            m.last_event_ts.set(newest / 1000.0)
            for ex in scorer.mature(newest):
                self.outbox.append((s.topic_training, encode(ex.as_dict()), None))
        scorer.standings.flush()
        scorer.card_index.flush()
        scorer.standings.trim()
        scorer.card_index.trim()
        for partition in self._touched:
            tables.thresholds.route(str(partition), partition)
            tables.thresholds[str(partition)] = pack_policy(scorer.policy(partition), self.decisions[partition],
                                                            self._policy_chunks.setdefault(partition, []))
        tables.standings.clear_routes()
        tables.index.clear_routes()
        tables.thresholds.clear_routes()
        tables.maturity.clear_routes()
        m.processing.observe(time.perf_counter() - started)
        m.batch_size.observe(len(messages))

    def _enqueue(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.outbox.append((topic, value, key))

    def send(self) -> None:
        """The outbox to the sink, once the batch's state is on its changelogs."""
        produce = self.outputs.produce
        for topic, value, key in self.outbox:
            produce(topic, value, key)
        self.outbox.clear()
        self.outputs.poll()
        # End-to-end latency: from each authorization's arrival on fraud.authorizations to its score produced. Not
        # from its event time: an authorization's own ts can be hours old (a terminal offline, a replay) while the
        # pipeline keeps up; how far event time is behind shows in fraudstream_last_authorization_timestamp_seconds.
        now = time.time()
        observe_all(self.metrics.latency, [max(0.0, now - arrived / 1000.0) for arrived in self._arrivals])
        self._arrivals.clear()

    def restore_policy(self, partition: int) -> None:
        """The decision policy of a partition as it was when last written, if it was (a restart, a rebalance)."""
        if partition in self.scorer.policies and partition in self.decisions:
            return
        policy = self.scorer.policy(partition)
        raw = self.tables.thresholds.get(str(partition))
        self.decisions[partition] = 0
        if raw is not None:
            self.decisions[partition] = unpack_policy(policy, raw)
            log.info("decision policy of partition %d restored (%d decisions)", partition, self.decisions[partition])

    def replay(self, partition: int, snap: dict[str, Any]) -> bool:
        """A snapshot that reached its changelog when the partition's threshold and the card's standing (other
        changelogs, written in later phases of ``Flusher.durable``) did not, before a crash. The batch's offsets were not
        committed, so its authorizations come again, first on their partition, and each is found by its snapshot:
        apply to the threshold and standing what `DecisionPolicy.decide` did when it was scored
        (`DecisionPolicy.replay`). Returns whether it did."""
        n = snap.get("n")
        if n is None or n <= self.decisions[partition]:
            return False
        a, d, scorer = snap["a"], snap["d"], self.scorer
        ts, card_id, tx_id = a["ts"], a["card_id"], a["tx_id"]
        self.tables.route_card(card_id, partition)
        scorer.policy(partition).replay(scorer.standings.get(card_id), ts, snap["s"], d["action"], d["alert_id"])
        scorer.standings.mark(card_id)
        if (ts, tx_id) not in scorer.card_index.since(card_id, ts):
            scorer.card_index.add(card_id, ts, tx_id)
        self.decisions[partition] = n
        self._touched.add(partition)
        return True

    def _one(self, msg: Any) -> None:
        s, m, scorer, produce = self.settings, self.metrics, self.scorer, self._enqueue
        d = decode(msg.value)
        auth = Authorization(**d["auth"])
        late = d["late"] is True
        self.tables.route_card(auth.card_id, msg.partition)
        self.tables.set_partition(msg.partition)
        self.restore_policy(msg.partition)
        self._touched.add(msg.partition)
        # A new snapshot carries the number of the decision it records (`decisions`): a redelivered authorization
        # whose snapshot got ahead of its partition's threshold is replayed into it (`replay`).
        scored = scorer.score(auth, d["features"], late, msg.partition, decision_number=self.decisions[msg.partition] + 1)
        if scored.duplicate:
            raw = self.tables.snapshots.get(auth.tx_id)
            if raw is not None and self.replay(msg.partition, decode(raw)):
                log.info("replayed decision of partition %d (%s) into its threshold and standing", msg.partition, auth.tx_id)
        else:
            self.decisions[msg.partition] += 1
        # Everything that can fail comes before the first output: a message is either scored or dead-lettered.
        key = auth.card_id.encode()
        score_value = encode(scored.score_record())
        alert_value = encode(scored.alert_record()) if scored.alerted else None
        if scored.label_outcome is not None:
            self.outcomes.publish(scored.label_outcome, "early", produce=produce)
        produce(s.topic_scores, score_value, key)
        if alert_value is not None:
            produce(s.topic_alerts, alert_value, key)
            if not scored.duplicate:
                m.alerts.labels(scored.decision.action).inc()
                if scored.decision.action in ("alert", "block"):
                    hour = auth.ts // HOUR_MS
                    self.alerts_by_hour[hour] = self.alerts_by_hour.get(hour, 0) + 1
        if scored.rule_hits and not scored.duplicate:
            modes = scorer.rules.modes
            for rule_id in scored.rule_hits:
                m.rule_hits.labels(rule_id, modes.get(rule_id, "unknown")).inc()
        self._scores.append(scored.score)  # observed with the batch's
        self._late += scored.late
        self._duplicates += scored.duplicate
        if auth.ts > self._newest:
            self._newest = auth.ts
        arrived = d.get("arr")
        # None from an older worker: when it reached the enriched topic, then.
        self._arrivals.append(arrived if type(arrived) is int else arrival_ms(msg))

    def forget(self) -> None:
        """Partitions revoked: decision counts are read back with the thresholds, by whoever owns them next."""
        self.decisions.clear()
        self._policy_chunks.clear()


_POLICY_EXTRA = struct.Struct("<qdq")


def pack_policy(policy: DecisionPolicy, decisions: int, chunks: list[tuple[bytes, bytes, int]] | None = None) -> bytes:
    """A partition's adaptive threshold, with its cached value so a restored one decides exactly the same, and
    the number of decisions it has taken: zlib-compressed.

    ``chunks``: what the same partition's last call compressed, kept in that list for the next. Its histogram is
    96 KB (an hour a row), of which a batch of decisions changes a row or two: each row is compressed on its own
    (raw deflate, ended at a byte boundary, so the pieces join into one deflate stream) and compressed again only
    once it changed; so is its checksum. The result is a zlib stream whatever the pieces: `unpack_policy` (every
    version's) reads it. A sixth of the time of compressing it whole (38 µs against 225), for an eighth more bytes.

    >>> from fraudstream.config import Settings
    >>> from fraudstream.core.scorer import FraudScorer
    >>> policy, kept = FraudScorer(Settings.load(env={})).policy(0), []
    >>> [unpack_policy(policy, pack_policy(policy, n, kept)) for n in (7, 8)], len(kept)
    ([7, 8], 25)
    """
    t = policy.threshold
    data = _POLICY_EXTRA.pack(decisions, t._cached, t._stale) + t.to_bytes()
    if chunks is None:
        return zlib.compress(data, 1)
    parts, s1, s2 = [_ZLIB_HEADER], 1, 0  # and the Adler-32 of the data so far, as two sums mod 65521
    # The first piece: the counts and the threshold's header, which change with each batch; then a row each.
    bounds = [0, *range(_POLICY_HEAD, len(data), _POLICY_CHUNK), len(data)]
    del chunks[len(bounds) - 1 :]
    for i in range(len(bounds) - 1):
        piece = data[bounds[i] : bounds[i + 1]]
        if i < len(chunks) and chunks[i][0] == piece:
            _, packed, adler = chunks[i]
        else:
            deflate = zlib.compressobj(1, zlib.DEFLATED, -_POLICY_WINDOW_BITS, 4)  # (a larger one costs more to set up)
            packed, adler = deflate.compress(piece) + deflate.flush(zlib.Z_SYNC_FLUSH), zlib.adler32(piece)
            if i < len(chunks):
                chunks[i] = (piece, packed, adler)
            else:
                chunks.append((piece, packed, adler))
        parts.append(packed)
        # Adler-32 of data + piece from that of each (zlib's adler32_combine): the data is not read again.
        p1 = adler & 0xFFFF
        s2 = (s2 + (adler >> 16) + len(piece) * (s1 - 1)) % _ADLER_BASE
        s1 = (s1 + p1 - 1) % _ADLER_BASE
    parts += (_DEFLATE_END, (s1 | s2 << 16).to_bytes(4, "big"))
    return b"".join(parts)


def unpack_policy(policy: DecisionPolicy, raw: bytes) -> int:
    """Restore ``policy``'s threshold from :func:`pack_policy`'s bytes; returns its number of decisions."""
    data = zlib.decompress(raw)
    t = policy.threshold
    t.load_bytes(data[_POLICY_EXTRA.size :])
    decisions, t._cached, t._stale = _POLICY_EXTRA.unpack_from(data)
    return int(decisions)


#: `pack_policy`'s pieces: the counts and the threshold's header (3 int64), then 4,000 bytes (an hour's row of bins).
_POLICY_HEAD = _POLICY_EXTRA.size + 24
_POLICY_CHUNK = 4000
_POLICY_WINDOW_BITS = 12  # 4 KB: a piece's own bytes; the header's 32 KB bounds what a reader must keep
_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KB window, fastest level (its check bits included)
_DEFLATE_END = b"\x03\x00"  # an empty final block (fixed Huffman codes)
_ADLER_BASE = 65521
