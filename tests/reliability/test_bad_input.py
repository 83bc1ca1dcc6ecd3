"""The bad-input catalogue, against a real worker on the embedded broker.

One worker serves the whole module (isolated topics, its own group). Every message of the catalogue is produced
once, in order, with its delivery report (partition, offset) kept; then each case checks its own fate:

- a rejected message lands on ``fraud.dead-letter`` with the exact ``reason``, a ``detail`` that names the
  problem, and the ``topic``/``partition``/``offset``/``key``/``raw`` of the original, and
  ``fraudstream_dead_letters_total{topic, reason}`` counts it;
- an accepted one is handled as the contract says (scored; a redelivery answered from its snapshot and counted
  once; an early label waits; a contradicting label is learned too);
- the worker keeps going: an authorization produced after all the bad input is scored, with the rule that a
  malformed update could not replace.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from fraudstream.contracts import MAX_MESSAGE_BYTES, MIN_TS_MS, decode
from fraudstream.kafka.topics import create_topics

from ..conftest import WorkerProcess, isolated_settings, wait_for

pytestmark = pytest.mark.broker

NOW = int(time.time() * 1000)
DAY = 86_400_000
RULE_ID = "R-RELIABILITY-ANY"
RULE = {"id": RULE_ID, "description": "every authorization (shadow)", "condition": "amount > 0", "mode": "shadow", "action": "alert"}


@dataclass
class Case:
    """One message of the catalogue and what must become of it."""

    id: str
    topic: str  # the Settings field naming the topic
    key: bytes | None
    value: bytes | None
    reason: str | None  # None: accepted
    detail: tuple[str, ...] = ()  # fragments the dead letter's detail must contain
    partition: int = -1
    offset: int = -1


def auth(n: str, **fields: Any) -> dict[str, Any]:
    """A valid authorization on its own card, ``fields`` overriding (None removes a field)."""
    base = {"tx_id": f"tx-{n}", "card_id": f"card-{n}", "merchant_id": "merchant-1", "amount": 25.0, "ts": NOW - 60_000,
            "currency": "EUR", "channel": "pos"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def raw_auth(n: str, **fields: Any) -> bytes:
    return orjson.dumps(auth(n, **fields))


def with_literal(n: str, name: str, literal: bytes) -> bytes:
    """An authorization whose ``name`` is written as a raw JSON literal (NaN, 1e400, "\\ud800" ...)."""
    obj = auth(n)
    obj.pop(name, None)
    return orjson.dumps(obj)[:-1] + b',"' + name.encode() + b'":' + literal + b"}"


def label(tx: str | None, card: str, **fields: Any) -> dict[str, Any]:
    base = {"tx_id": tx, "card_id": card, "is_fraud": True, "ts": NOW - 1000, "source": "analyst"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


A = "topic_authorizations"
L = "topic_labels"


def authorization_cases() -> list[Case]:
    c = [
        Case("not-json", A, b"card-nj", b"{not json", "not_json", ("not valid JSON",)),
        Case("null-value", A, b"card-nv", None, "not_json", ("empty",)),
        Case("array", A, b"card-ar", b'[{"tx_id": "x"}]', "not_object", ("list", "object")),
        Case("string", A, b"card-st", b'"card-st"', "not_object", ("str", "object")),
        Case("number", A, b"card-nu", b"42", "not_object", ("int", "object")),
        Case("null-literal", A, b"card-nl", b"null", "not_object", ("NoneType", "object")),
    ]
    for field in ("tx_id", "card_id", "merchant_id", "amount", "ts"):
        n = f"missing-{field}"
        key = b"card-k" if field == "card_id" else f"card-{n}".encode()
        c.append(Case(n, A, key, raw_auth(n, **{field: None}), "missing_field", (field, "required")))
    wrong = {
        "amount-string": ("amount", "25.00", "str"),
        "amount-bool": ("amount", True, "bool"),
        "ts-float": ("ts", float(NOW - 60_000), "float"),
        "ts-string": ("ts", "2026-01-01T00:00:00Z", "str"),
        "ts-bool": ("ts", True, "bool"),
        "card_id-number": ("card_id", 123456, "int"),
        "card_id-bool": ("card_id", False, "bool"),
        "merchant_id-object": ("merchant_id", {"id": "m"}, "dict"),
        "channel-list": ("channel", ["pos"], "list"),
        "channel-object": ("channel", {"pos": 1}, "dict"),
    }
    for n, (field, value, type_name) in wrong.items():
        key = b"card-number" if field == "card_id" else f"card-{n}".encode()
        c.append(Case(n, A, key, raw_auth(n, **{field: value}), "wrong_type", (field, type_name)))
    c += [
        Case("amount-zero", A, b"card-amount-zero", raw_auth("amount-zero", amount=0), "amount_out_of_range", ("amount=0",)),
        Case("amount-negative", A, b"card-amount-negative", raw_auth("amount-negative", amount=-5.5), "amount_out_of_range", ("amount=-5.5",)),
        # orjson refuses the NaN and Infinity literals, and reads 1e400 as infinity: not JSON at all.
        Case("amount-nan", A, b"card-amount-nan", with_literal("amount-nan", "amount", b"NaN"), "not_json", ("not valid JSON",)),
        Case("amount-infinity", A, b"card-amount-infinity", with_literal("amount-infinity", "amount", b"Infinity"), "not_json", ("not valid JSON",)),
        Case("amount-1e400", A, b"card-amount-1e400", with_literal("amount-1e400", "amount", b"1e400"), "not_json", ("infinity",)),
        Case("amount-1e308", A, b"card-amount-1e308", raw_auth("amount-1e308", amount=1e308), "amount_out_of_range", ("amount=1e+308",)),
        Case("amount-1e11", A, b"card-amount-1e11", raw_auth("amount-1e11", amount=1e11), "amount_out_of_range", ("amount=100000000000", "1e+10")),
        Case("amount-huge-int", A, b"card-amount-huge-int", with_literal("amount-huge-int", "amount", b"1" + b"0" * 40),
             "amount_out_of_range", ("amount=1e+40",)),
        Case("ts-future", A, b"card-ts-future", raw_auth("ts-future", ts=NOW + 3 * DAY), "ts_out_of_range", ("future",)),
        Case("ts-year-3000", A, b"card-ts-year-3000", raw_auth("ts-year-3000", ts=32_503_680_000_000), "ts_out_of_range", ("future",)),
        Case("ts-1999", A, b"card-ts-1999", raw_auth("ts-1999", ts=MIN_TS_MS - 1), "ts_out_of_range", ("before 2000",)),
        Case("ts-zero", A, b"card-ts-zero", raw_auth("ts-zero", ts=0), "ts_out_of_range", ("before 2000",)),
        Case("ts-negative", A, b"card-ts-negative", raw_auth("ts-negative", ts=-1), "ts_out_of_range", ("before 2000",)),
        Case("ts-beyond-u64", A, b"card-ts-beyond-u64", with_literal("ts-beyond-u64", "ts", b"1" + b"0" * 25), "wrong_type", ("ts", "float")),
        # Odd Unicode in identifiers.
        Case("card-control", A, b"card-\x07bell", raw_auth("x1", card_id="card-\x07bell"), "invalid_value", ("card_id", "unprintable")),
        Case("card-nul", A, b"card-\x00", raw_auth("x2", card_id="card-\x00"), "invalid_value", ("card_id", "unprintable")),
        Case("card-rtl-override", A, "card-\u202e321".encode(), raw_auth("x3", card_id="card-\u202e321"), "invalid_value",
             ("card_id", "unprintable")),
        Case("card-zero-width", A, "card-\u200b9".encode(), raw_auth("x4", card_id="card-\u200b9"), "invalid_value", ("card_id", "unprintable")),
        Case("tx-lone-surrogate", A, b"card-surrogate", with_literal("surrogate", "tx_id", b'"tx-\\ud800"'), "not_json",
             ("surrogate",)),
        Case("card-10k", A, b"c" * 10_000, raw_auth("x5", card_id="c" * 10_000), "invalid_value", ("card_id", "1..128", "10000")),
        Case("merchant-empty", A, b"card-merchant-empty", raw_auth("merchant-empty", merchant_id=""), "invalid_value",
             ("merchant_id", "got 0")),
        Case("currency-lowercase", A, b"card-currency", raw_auth("currency", currency="eur"), "invalid_value", ("currency", "'eur'")),
        Case("channel-unknown", A, b"card-channel", raw_auth("channel", channel="telepathy"), "invalid_value", ("channel", "'telepathy'")),
        Case("oversize", A, b"card-oversize", raw_auth("oversize", memo="x" * (MAX_MESSAGE_BYTES + 10)), "oversize",
             ("bytes is over", str(MAX_MESSAGE_BYTES))),
        # Keys.
        Case("key-empty", A, b"", raw_auth("key-empty"), "empty_key", ("key",)),
        Case("key-missing", A, None, raw_auth("key-missing"), "empty_key", ("key",)),
        Case("key-mismatch", A, b"card-someone-else", raw_auth("key-mismatch"), "key_mismatch", ("disagrees", "card_id")),
        # Accepted as the contract says.
        Case("ok-unicode-merchant", A, b"card-ok-unicode", raw_auth("ok-unicode", merchant_id="\u6771\u4eac\u30b9\u30c8\u30a2-\U0001f6d2"), None),
        Case("ok-amount-max", A, b"card-ok-amount-max", raw_auth("ok-amount-max", amount=1e10), None),
        Case("ok-ts-2000", A, b"card-ok-ts-2000", raw_auth("ok-ts-2000", ts=MIN_TS_MS), None),
        Case("ok-ts-hour-ahead", A, b"card-ok-ts-ahead", raw_auth("ok-ts-ahead", ts=NOW + 3_600_000), None),
        Case("ok-unknown-extra-field", A, b"card-ok-extra", raw_auth("ok-extra", extra={"nested": [1, 2]}), None),
        # A redelivered authorization, then a later one of the same card.
        Case("dup-first", A, b"card-dup", raw_auth("dup", ts=NOW - 50_000), None),
        Case("dup-again", A, b"card-dup", raw_auth("dup", ts=NOW - 50_000), None),
        Case("dup-later", A, b"card-dup", raw_auth("dup-later", card_id="card-dup", ts=NOW - 40_000), None),
        # The authorization the contradicting labels are about.
        Case("labelled", A, b"card-labelled", raw_auth("labelled"), None),
    ]
    return c


def label_cases() -> list[Case]:
    return [
        Case("label-not-json", L, b"card-labelled", b"\xff\xfe not json", "not_json", ("not valid JSON",)),
        Case("label-array", L, b"card-labelled", b"[]", "not_object", ("list",)),
        Case("label-is_fraud-string", L, b"card-labelled", orjson.dumps(label("tx-labelled", "card-labelled", is_fraud="yes")),
             "wrong_type", ("is_fraud", "str")),
        Case("label-is_fraud-number", L, b"card-labelled", orjson.dumps(label("tx-labelled", "card-labelled", is_fraud=1)),
             "wrong_type", ("is_fraud", "int")),
        Case("label-is_fraud-missing", L, b"card-labelled", orjson.dumps(label("tx-labelled", "card-labelled", is_fraud=None)),
             "missing_field", ("is_fraud",)),
        Case("label-card-level-no-since", L, b"card-labelled", orjson.dumps(label(None, "card-labelled")), "missing_field",
             ("since",)),
        Case("label-card-level-legit", L, b"card-labelled", orjson.dumps(label(None, "card-labelled", is_fraud=False, since=NOW - DAY)),
             "invalid_value", ("card-level",)),
        Case("label-source-missing", L, b"card-labelled", orjson.dumps(label("tx-labelled", "card-labelled", source=None)),
             "missing_field", ("source",)),
        Case("label-ts-1999", L, b"card-labelled", orjson.dumps(label("tx-labelled", "card-labelled", ts=MIN_TS_MS - 1)),
             "ts_out_of_range", ("before 2000",)),
        Case("label-key-mismatch", L, b"card-other", orjson.dumps(label("tx-labelled", "card-labelled")), "key_mismatch", ("disagrees",)),
        # Accepted: waits for its authorization (counted early), and a legitimate-then-fraud contradiction.
        Case("label-unknown-tx", L, b"card-labelled", orjson.dumps(label("tx-never-seen", "card-labelled")), None),
        Case("label-legit", L, b"card-labelled", orjson.dumps(label("tx-labelled", "card-labelled", is_fraud=False, ts=NOW - 900)), None),
        Case("label-then-fraud", L, b"card-labelled", orjson.dumps(label("tx-labelled", "card-labelled", is_fraud=True, ts=NOW - 800,
                                                                           source="chargeback")), None),
    ]


def rule_cases() -> list[Case]:
    key = RULE_ID.encode()
    return [
        Case("rule-valid", "topic_rules", key, orjson.dumps(RULE), None),
        Case("rule-malformed", "topic_rules", key, orjson.dumps({**RULE, "condition": "amount >>> 0"}), "invalid_value",
             ("rule rejected", RULE_ID, "condition", "unexpected")),
        Case("rule-unknown-field", "topic_rules", key, orjson.dumps({**RULE, "condition": "no_such_feature > 1"}), "invalid_value",
             ("rule rejected", RULE_ID, "unknown field 'no_such_feature'")),
    ]


class Tail:
    """A consumer that keeps reading one topic from the beginning, decoding as it goes."""

    def __init__(self, settings: Any, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"tail-{uuid.uuid4().hex[:6]}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        md = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.consumer.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        self.records: list[tuple[bytes | None, Any]] = []

    def poll(self) -> list[tuple[bytes | None, Any]]:
        for m in self.consumer.consume(1000, 0.2):
            if m.error() is None:
                self.records.append((m.key(), decode(m.value()) if m.value() else None))
        return self.records

    def until(self, predicate: Any, timeout: float = 30.0, fail: bool = True) -> list[tuple[bytes | None, Any]]:
        deadline = time.monotonic() + timeout
        while not predicate(self.poll()):
            if time.monotonic() > deadline:
                if fail:
                    raise AssertionError(f"not seen within {timeout}s; have {len(self.records)} records")
                break
        return self.records

    def close(self) -> None:
        self.consumer.close()


def produce_cases(settings: Any, cases: list[Case]) -> None:
    """Produce in order, recording where each message landed (partition, offset)."""
    p = Producer(settings.producer_config(**{"message.max.bytes": 2 * 1024 * 1024}))
    for case in cases:
        def delivered(err: Any, msg: Any, case: Case = case) -> None:
            assert err is None, f"{case.id}: {err}"
            case.partition, case.offset = msg.partition(), msg.offset()

        p.produce(getattr(settings, case.topic), case.value, case.key, on_delivery=delivered)
    assert p.flush(30) == 0
    assert all(c.offset >= 0 for c in cases)


ALL = rule_cases() + authorization_cases() + label_cases()


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (in any order)."""
    total = 0.0
    for line in worker.metrics().splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


@dataclass
class Run:
    settings: Any
    worker: WorkerProcess
    cases: list[Case]
    scores: dict[str, list[dict[str, Any]]]  # tx_id -> every score record
    letters: dict[tuple[str, int, int], dict[str, Any]]  # (topic, partition, offset) -> dead letter
    sentinel: dict[str, Any]


@pytest.fixture(scope="module")
def run(broker, tmp_path_factory) -> Any:
    tmp = tmp_path_factory.mktemp("bad-input")
    s = isolated_settings(broker, tmp)
    create_topics(s)
    worker = WorkerProcess(s, tmp / "worker.log")
    scores_tail, letters_tail = Tail(s, s.topic_scores), Tail(s, s.topic_dead_letter)
    try:
        rules, auths, labels = rule_cases(), authorization_cases(), label_cases()
        produce_cases(s, rules + auths)
        accepted_tx = {orjson.loads(c.value)["tx_id"] for c in auths if c.reason is None}
        # Labels after their authorization is scored: else they would wait as early labels.
        scores_tail.until(lambda recs: {v["tx_id"] for _, v in recs} >= {"tx-labelled"})
        produce_cases(s, labels)
        # After every bad message, the rule rejections applied: one more authorization of the redelivered card.
        wait_for(lambda: worker.metric("fraudstream_rule_rejections_total") >= 2, timeout=30)
        sentinel = Case("sentinel", A, b"card-dup", raw_auth("sentinel", card_id="card-dup", ts=NOW - 30_000), None)
        produce_cases(s, [sentinel])
        recs = scores_tail.until(lambda recs: {v["tx_id"] for _, v in recs} >= accepted_tx | {"tx-sentinel"}, timeout=60)
        scores: dict[str, list[dict[str, Any]]] = {}
        for _, v in recs:
            scores.setdefault(v["tx_id"], []).append(v)
        rejected = [c for c in rules + auths + labels if c.reason is not None]
        # Each case checks its own letter: a missing one fails its test, not the module.
        letters_tail.until(lambda recs: len(recs) >= len(rejected), timeout=15, fail=False)
        time.sleep(0.5)  # and nothing more than expected arrives
        letters = {(v["topic"], v["partition"], v["offset"]): v for _, v in letters_tail.poll()}
        # The labels went through the card-events hop: let their metrics settle.
        wait_for(lambda: metric(worker, "fraudstream_labels_total", status="contradiction") >= 1, timeout=30)
        yield Run(s, worker, rules + auths + labels, scores, letters, scores["tx-sentinel"][0])
    finally:
        scores_tail.close()
        letters_tail.close()
        worker.stop()


def _case(run: Run, case_id: str) -> Case:
    return next(c for c in run.cases if c.id == case_id)


@pytest.mark.parametrize("case_id", [c.id for c in ALL if c.reason is not None])
def test_rejected_message_is_dead_lettered_with_its_reason(run, case_id):
    case = _case(run, case_id)
    topic = getattr(run.settings, case.topic)
    letter = run.letters.get((topic, case.partition, case.offset))
    assert letter is not None, f"{case_id} not dead-lettered at {topic}[{case.partition}]@{case.offset}"
    assert letter["reason"] == case.reason, letter["detail"]
    for fragment in case.detail:
        assert fragment.lower() in letter["detail"].lower(), f"{fragment!r} not in detail {letter['detail']!r}"
    assert letter["raw"] == (case.value or b"")[:MAX_MESSAGE_BYTES].decode("utf-8", "replace")
    if case.key:
        assert letter["key"] == case.key.decode("utf-8", "replace")
    else:
        assert letter["key"] in (None, ""), letter["key"]
    assert isinstance(letter["ts"], int) and abs(letter["ts"] - time.time() * 1000) < 600_000


def test_nothing_else_is_dead_lettered(run):
    expected = {(getattr(run.settings, c.topic), c.partition, c.offset) for c in run.cases if c.reason is not None}
    unexpected = [v for k, v in run.letters.items() if k not in expected]
    assert not unexpected


def test_dead_letter_metric_counts_every_reason(run):
    expected = Counter((getattr(run.settings, c.topic), c.reason) for c in run.cases if c.reason is not None)
    for (topic, reason), n in expected.items():
        assert metric(run.worker, "fraudstream_dead_letters_total", topic=topic, reason=reason) == n, (topic, reason)
    assert metric(run.worker, "fraudstream_dead_letters_total") == sum(expected.values())
    assert metric(run.worker, "fraudstream_dead_letters_total", reason="processing_error") == 0


@pytest.mark.parametrize("case_id", [c.id for c in ALL if c.reason is None and c.topic == A])
def test_accepted_authorization_is_scored(run, case_id):
    case = _case(run, case_id)
    sent = orjson.loads(case.value)
    [record, *_] = run.scores[sent["tx_id"]]
    for name in ("card_id", "merchant_id", "amount", "ts"):
        assert record[name] == sent[name]
    assert 0.0 <= record["score"] <= 1.0


def test_redelivery_is_scored_again_identically_and_counted_once(run):
    first, again = run.scores["tx-dup"]
    assert first == again, "a redelivered authorization must get the very same score record"
    assert run.scores["tx-dup-later"][0]["features"]["card_count_24h"] == 2.0, "the redelivery was counted twice"
    assert run.sentinel["features"]["card_count_24h"] == 3.0
    assert run.worker.metric("fraudstream_duplicate_authorizations_total") == 1


def test_labels_early_and_contradicting_are_accepted(run):
    w = run.worker
    assert metric(w, "fraudstream_labels_total", source="analyst", status="early") == 1  # tx-never-seen waits
    assert metric(w, "fraudstream_labels_total", source="analyst", status="learned") == 1  # legitimate first
    assert metric(w, "fraudstream_labels_total", source="chargeback", status="contradiction") == 1  # then fraud: learned too
    assert metric(w, "fraudstream_labels_total", status="contradiction") == 1
    rejected = sum(1 for c in run.cases if c.topic == L and c.reason is not None)
    assert metric(w, "fraudstream_labels_total", source="invalid", status="rejected") == rejected


def test_malformed_rules_are_refused_and_the_rule_in_force_stays(run):
    assert metric(run.worker, "fraudstream_rule_rejections_total") == 2
    assert RULE_ID in run.sentinel["rule_hits"], run.sentinel["rule_hits"]
    assert run.sentinel["decision"]["action"] == "none"  # shadow: measured, raises nothing
    assert metric(run.worker, "fraudstream_rule_hits_total", rule=RULE_ID, mode="shadow") >= 1


def test_worker_kept_going(run):
    """Produced after every bad message: scored, and the worker is alive."""
    assert run.sentinel["score"] is not None and 0.0 <= run.sentinel["score"] <= 1.0
    assert run.worker.alive()
    assert run.worker.metric("fraudstream_authorizations_scored_total") == sum(len(v) for v in run.scores.values())
