"""Stand-ins for what a stage writes to, without faust or a broker: the sink, tables that keep routes, the consumer
the idle timer asks (`FakeConsumer`), and the worker's parts around the score stage (`one_pass`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from fraudstream.config import Settings
from fraudstream.contracts import MerchantEvents, decode, decode_merchant_events, encode
from fraudstream.core.features.card import MINUTE_MS
from fraudstream.core.features.partials import MerchantPartials
from fraudstream.core.scorer import FraudScorer
from fraudstream.core.snapshot import EncodedSnapshots
from fraudstream.metrics import Metrics
from fraudstream.stream.stages import CardTables, DeadLetters, LabelOutcomes, Message, OwnMerchants, ScoreStage

T0 = 1_700_000_000_000


class FakeOutputs:
    """The sink: every output, in order, as (topic, value, key, partition)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.polls = 0

    def produce(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None) -> None:
        self.sent.append((topic, value, key, partition))

    def poll(self) -> None:
        self.polls += 1

    def to(self, topic: str) -> list[tuple[dict[str, Any], bytes | None, int | None]]:
        return [(decode(v), k, p) for t, v, k, p in self.sent if t == topic and v is not None]


class FakeTable(dict):
    """A ``TableMapping`` as the stages use it: bytes by key, the batch's routes, pending writes."""

    def __init__(self) -> None:
        super().__init__()
        self.partition = 0
        self.routes: dict[str, int] = {}
        self.sent_pending = 0

    def route(self, key: str, partition: int) -> None:
        self.routes[key] = partition

    def clear_routes(self) -> None:
        self.routes.clear()

    def send_pending(self) -> None:
        self.sent_pending += 1


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class FakeConsumer:
    """faust's consumer as `ScoreStage.announce_idle` asks it: the partitions assigned, their high-water marks (all
    read here: the stage's positions reach them) and its read offsets."""

    def __init__(self, topic: str, partitions: range, highwaters: dict[int, int] | None = None) -> None:
        self.tps = {TP(topic, p) for p in partitions}
        self.highwaters = highwaters or {}
        self._read_offset: dict[TP, int] = {}

    def assignment(self) -> set[TP]:
        return self.tps

    def highwater(self, tp: TP) -> int:
        return self.highwaters.get(tp.partition, 0)


def harness(partitions: int = 2) -> tuple[Settings, Metrics, FakeOutputs, DeadLetters]:
    s = Settings.load(env={}).with_overrides(partitions=partitions)
    metrics, out = Metrics(CollectorRegistry()), FakeOutputs()
    return s, metrics, out, DeadLetters(s, metrics, out)


def authorization(i: int, card: str = "card-1", merchant: str = "m-1", amount: float = 20.0, minutes: int = 7) -> dict[str, Any]:
    return {"tx_id": f"tx-{i}", "card_id": card, "merchant_id": merchant, "amount": amount, "ts": T0 + i * minutes * MINUTE_MS,
            "channel": "ecom"}


def message(topic: str, partition: int, offset: int, value: Any, key: bytes | None = None) -> Message:
    return Message(topic, partition, offset, key, value if isinstance(value, bytes) else encode(value), 1_700_000_000.0)


def one_pass(partitions: int = 2, snapshots: FakeTable | None = None, cards: FakeTable | None = None,
             book: MerchantPartials | None = None) -> tuple[ScoreStage, FakeOutputs]:
    """A score stage as the worker builds it, every partition seeded (replicas as ``book`` has them)."""
    s, metrics, out, dead = harness(partitions)
    tables = CardTables(FakeTable(), FakeTable(), FakeTable() if snapshots is None else snapshots, FakeTable(), FakeTable(),
                        FakeTable())
    book = MerchantPartials(partitions, grace_ms=s.grace_ms, replicated=True) if book is None else book
    scorer = FraudScorer(s, snapshots=EncodedSnapshots(tables.snapshots), learn_inline=False, merchant_partials=book)
    own = OwnMerchants(scorer)
    cards = FakeTable() if cards is None else cards
    stage = ScoreStage(s, metrics, out, dead, scorer, tables, LabelOutcomes(s, metrics, out, own), own, cards,
                       TaggedCards(cards))
    for p in range(partitions):
        own.seed(p)
    return stage, out


class TaggedCards:
    """The card table's tags as `TaggedMapping` reads them: none written here unless a test puts them."""

    def __init__(self, table: FakeTable) -> None:
        self.table = table
        self.tags: dict[str, bytes] = {}

    def tag(self, key: str) -> bytes | None:
        return self.tags.get(key)


def follow(book: MerchantPartials, out: FakeOutputs, topic: str, start: int = 0) -> int:
    """What `PartialsFollower` does: the merchant events published since ``start`` (an index of ``out.sent``)
    applied to ``book``'s replicas; returns the index to start from next time."""
    for t, value, _key, partition in out.sent[start:]:
        if t == topic:
            record = decode_merchant_events(value)
            assert isinstance(record, MerchantEvents) and record.partition == partition
            book.apply(record)
    return len(out.sent)
