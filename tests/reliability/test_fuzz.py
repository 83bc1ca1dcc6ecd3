"""Property-based: nothing a producer can send makes a decoder, the core or a worker handler raise.

1. arbitrary bytes and arbitrary JSON (huge integers, non-finite floats, odd Unicode, deep nesting) through
   the three decoders of ``fraudstream.contracts``: each returns a record or a ``Rejection`` whose reason is in
   ``REJECTION_REASONS``;
2. valid authorizations with extreme but valid values, out of order and redelivered, through
   ``FraudScorer.process`` (with labels in between, so the model learns from them): scores in [0, 1], finite features;
3. the worker's per-message handlers of a real ``FraudApp`` built against an address nobody listens on (faust and
   confluent-kafka connect only when started or polled), its producer swapped for a recorder: every message comes
   out as exactly one output or one dead letter, counted in ``fraudstream_dead_letters_total``.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from fraudstream.config import Settings
from fraudstream.contracts import (
    CHANNELS,
    MAX_MESSAGE_BYTES,
    MIN_TS_MS,
    REJECTION_REASONS,
    Authorization,
    CardReissue,
    Label,
    Rejection,
    decode_authorization,
    decode_card_reissue,
    decode_label,
)
from fraudstream.core.partitioner import partition_of
from fraudstream.core.scorer import FraudScorer

NOW_MS = int(time.time() * 1000)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- strategies -----------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: beyond 64 bits orjson reads a float
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),  # NaN and Infinity: literals orjson refuses
    st.text(),  # any code point, lone surrogates included
    st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zs", "Mn"]), max_size=20),  # control, RTL override, zero-width
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)

AUTH_FIELDS = ("tx_id", "card_id", "merchant_id", "amount", "ts", "currency", "mcc", "country", "channel")
LABEL_FIELDS = ("tx_id", "card_id", "is_fraud", "ts", "since", "source")

plausible = st.one_of(
    json_values,
    st.sampled_from(["c1", "t1", "m1", "JPY", "5411", "JP", "ecom", "analyst", "", "c" * 129, "card\u202e1", "a\u200bb"]),
    st.integers(min_value=MIN_TS_MS - 10, max_value=NOW_MS + 2 * 86_400_000),
    st.floats(min_value=-1.0, max_value=2e10),
    st.booleans(),
)


def record_like(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the contract's field names (and some others) holding anything."""
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=8), plausible, max_size=len(names) + 2)


def to_bytes(value: Any, ascii_only: bool) -> bytes:
    """stdlib json: writes big integers, NaN/Infinity literals and lone surrogates that orjson would refuse."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


keys = st.one_of(st.none(), st.just(b""), st.just(b"c1"), st.binary(max_size=40))
raw_json = st.builds(to_bytes, st.one_of(json_values, record_like(AUTH_FIELDS), record_like(LABEL_FIELDS)), st.booleans())
raw_any = st.one_of(st.none(), st.binary(max_size=300), raw_json)


def _is_valid_or_rejection(result: Any, record_type: type) -> None:
    if isinstance(result, Rejection):
        assert result.reason in REJECTION_REASONS and result.reason != "processing_error"
        assert isinstance(result.detail, str) and result.detail
        orjson.dumps(result.detail)  # it goes into a JSON dead letter
    else:
        assert isinstance(result, record_type)
        orjson.dumps(result)  # whatever passed validation can be written to the next topic


# --- 1. decoders ------------------------------------------------------------------------


@FAST
@given(raw=raw_any, key=keys)
def test_decode_authorization_never_raises(raw, key):
    result = decode_authorization(raw, key)
    _is_valid_or_rejection(result, Authorization)
    if isinstance(result, Authorization):
        assert 0 < result.amount <= 1e10 and math.isfinite(result.amount)
        assert result.ts >= MIN_TS_MS and key == result.card_id.encode()
        assert result.channel is None or result.channel in CHANNELS


@FAST
@given(raw=raw_any, key=keys)
def test_decode_label_never_raises(raw, key):
    result = decode_label(raw, key)
    _is_valid_or_rejection(result, Label)
    if isinstance(result, Label):
        assert isinstance(result.is_fraud, bool) and (result.tx_id is not None or result.since is not None)


@FAST
@given(raw=raw_any, key=keys)
def test_decode_card_reissue_never_raises(raw, key):
    _is_valid_or_rejection(decode_card_reissue(raw, key), CardReissue)


VALID_AUTH = {"tx_id": "t1", "card_id": "c1", "merchant_id": "m1", "amount": 12.5, "ts": NOW_MS - 1000, "currency": "EUR",
              "mcc": "5411", "country": "JP", "channel": "ecom"}
VALID_LABEL = {"tx_id": "t1", "card_id": "c1", "is_fraud": True, "ts": NOW_MS - 1000, "since": NOW_MS - 5000, "source": "analyst"}


@st.composite
def one_field_wrong(draw: st.DrawFn, valid: dict[str, Any]) -> dict[str, Any]:
    """A valid record with one to three fields replaced by anything, or removed: every check gets reached."""
    obj = dict(valid)
    for name in draw(st.lists(st.sampled_from(sorted(valid)), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            obj[name] = draw(json_values)
        else:
            obj.pop(name)
    return obj


@FAST
@given(obj=one_field_wrong(VALID_AUTH), ascii_only=st.booleans())
def test_authorization_with_fields_wrong(obj, ascii_only):
    _is_valid_or_rejection(decode_authorization(to_bytes(obj, ascii_only), b"c1"), Authorization)


@FAST
@given(obj=one_field_wrong(VALID_LABEL), ascii_only=st.booleans())
def test_label_with_fields_wrong(obj, ascii_only):
    _is_valid_or_rejection(decode_label(to_bytes(obj, ascii_only), b"c1"), Label)


@FAST
@given(key=st.one_of(keys, st.just(b"c1"), st.text(max_size=5).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_key_must_be_the_card_id(key):
    """The partition holds the card's state: a message keyed otherwise is refused, whatever the record."""
    reissue = orjson.dumps({"card_id": "c1", "ts": NOW_MS - 1000})
    for decoder, raw in ((decode_authorization, orjson.dumps(VALID_AUTH)), (decode_label, orjson.dumps(VALID_LABEL)),
                         (decode_card_reissue, reissue)):
        result = decoder(raw, key)
        if key == b"c1":
            assert not isinstance(result, Rejection), result
        else:
            assert isinstance(result, Rejection) and result.reason == ("key_mismatch" if key else "empty_key"), (decoder, key, result)


NESTED_FIELDS = [(decode_authorization, f) for f in VALID_AUTH] + [(decode_label, f) for f in VALID_LABEL] + [
    (decode_card_reissue, "card_id"), (decode_card_reissue, "ts")]


@pytest.mark.parametrize("decoder,field", NESTED_FIELDS, ids=lambda x: getattr(x, "__name__", x))
@pytest.mark.parametrize("depth", [1, 990, 1023, 1100])
@pytest.mark.parametrize("bracket", [b"[]", b'{"a":}'])
def test_deep_nesting_in_every_field(decoder, field, depth, bracket):
    """A value nested as deep as orjson parses (1024) must not blow the stack of a repr() in a detail."""
    value = bracket[:-1] * depth + b"0" + bracket[-1:] * depth
    base = dict(VALID_AUTH if decoder is decode_authorization else VALID_LABEL)
    base.pop(field, None)
    raw = orjson.dumps(base)[:-1] + b',"' + field.encode() + b'":' + value + b"}"
    result = decoder(raw, b"c1")
    assert isinstance(result, Rejection) and result.reason in ("wrong_type", "invalid_value", "not_json"), result


@pytest.mark.parametrize("decoder", [decode_authorization, decode_label, decode_card_reissue], ids=lambda d: d.__name__)
def test_oversize_is_rejected_before_parsing(decoder):
    raw = b'{"pad":"' + b"x" * MAX_MESSAGE_BYTES + b'"}'
    assert decoder(raw, b"c1") == Rejection("oversize", f"{len(raw)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")


# --- 2. the core ---------------------------------------------------------------------------

printable_ids = st.text(alphabet=st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=128)


@st.composite
def authorization_streams(draw: st.DrawFn) -> list[Authorization]:
    cards = draw(st.lists(printable_ids, min_size=1, max_size=4, unique=True))
    merchants = draw(st.lists(printable_ids, min_size=1, max_size=4, unique=True))
    n = draw(st.integers(min_value=1, max_value=40))
    out: list[Authorization] = []
    for i in range(n):
        out.append(Authorization(
            tx_id=draw(st.sampled_from([f"tx-{i}", f"tx-{i}", draw(printable_ids)])),
            card_id=draw(st.sampled_from(cards)),
            merchant_id=draw(st.sampled_from(merchants)),
            amount=draw(st.one_of(st.floats(min_value=0.01, max_value=1e10), st.sampled_from([0.01, 1e10]))),
            ts=draw(st.one_of(st.integers(min_value=MIN_TS_MS, max_value=NOW_MS), st.sampled_from([MIN_TS_MS, NOW_MS]))),
            currency=draw(st.sampled_from(["JPY", "EUR", "USD"])),
            mcc=draw(st.none() | st.from_regex(r"\A[0-9]{4}\Z")),
            country=draw(st.none() | st.from_regex(r"\A[A-Z]{2}\Z")),
            channel=draw(st.none() | st.sampled_from(sorted(CHANNELS))),
        ))
    # Redeliveries: some authorizations again, later in the stream, identical.
    for j in draw(st.lists(st.integers(min_value=0, max_value=n - 1), max_size=6)):
        out.insert(draw(st.integers(min_value=j, max_value=len(out))), out[j])
    # Out of order: a shuffle of a slice, on top of the random timestamps.
    if draw(st.booleans()):
        out = draw(st.permutations(out))
    return out


def _check_scored(scored: Any) -> None:
    assert 0.0 <= scored.score <= 1.0, scored.score
    bad = {k: v for k, v in scored.features.items() if not (isinstance(v, float | int) and math.isfinite(v))}
    assert not bad, f"non-finite features: {bad}"
    orjson.dumps(scored.score_record())
    if scored.alerted:
        orjson.dumps(scored.alert_record())


@SLOW
@given(stream=authorization_streams(), labels=st.lists(st.tuples(st.integers(0, 60), st.booleans()), max_size=12), rounds=st.integers(1, 3))
def test_core_scores_extreme_valid_streams(stream, labels, rounds):
    """Redeliveries answer from the snapshot; labels teach the model both classes, so later rounds score with it."""
    scorer = FraudScorer(Settings.load(env={}).with_overrides(partitions=3))
    first: dict[str, Any] = {}
    for r in range(rounds):
        for i, auth in enumerate(stream):
            scored = scorer.process(Authorization(**auth.as_dict()), partition=i % 3)
            _check_scored(scored)
            key = auth.tx_id
            if key in first:
                assert scored.duplicate and scored.score == first[key].score
            else:
                first[key] = scored
        for idx, is_fraud in labels:
            auth = stream[idx % len(stream)]
            scorer.label(Label(card_id=auth.card_id, is_fraud=is_fraud, ts=auth.ts + 1, source="analyst", tx_id=auth.tx_id))
            if is_fraud:
                scorer.label(Label(card_id=auth.card_id, is_fraud=True, ts=auth.ts + 2, source="customer_report", since=auth.ts))
        # Fresh tx_ids on the second round: the same cards, now scored by a model that has learned.
        stream = [Authorization(**{**a.as_dict(), "tx_id": f"{a.tx_id}/r{r}"}) for a in stream]
    for ex in scorer.mature(NOW_MS + 10**12):
        assert all(math.isfinite(v) for v in ex.features.values())


def test_core_subnormal_amount_accepted_by_the_contract():
    raw = orjson.dumps({**VALID_AUTH, "amount": 5e-324})
    auth = decode_authorization(raw, b"c1")
    assert isinstance(auth, Authorization), auth  # valid by the contract (amount > 0)
    scorer = FraudScorer(Settings.load(env={}))
    scorer.process(auth)
    _check_scored(scorer.process(Authorization(**{**auth.as_dict(), "tx_id": "t2", "ts": auth.ts + 1000})))


# --- 3. the worker's handlers without a broker ----------------------------------------------


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None  # as faust gives it: seconds, None when the record has none

    def incref(self) -> None:
        """Held by the score stage (for the other partitions' merchant partials); acknowledging it is the loop's."""


@dataclass
class Event:
    message: Msg


class RecordingProducer:
    """Stands in for the confluent producer: the handlers' outputs, by topic."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    def produce(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None,
                on_delivery: Any = None) -> None:
        if partition is not None:
            return  # a record of merchant partials (to its partition's number), a changelog record: no output
        assert isinstance(value, bytes)
        self.sent.append((topic, value, key))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0

    def __len__(self) -> int:
        return 0

    def values(self, topic: str) -> list[tuple[bytes, bytes | None]]:
        return [(v, k) for t, v, k in self.sent if t == topic]


@pytest.fixture(scope="module")
def fraud_app(tmp_path_factory):
    from fraudstream.metrics import Metrics
    from fraudstream.stream.app import FraudApp

    s = Settings.load(env={}).with_overrides(state_dir=str(tmp_path_factory.mktemp("state")), partitions=3)
    # Port 1: nobody listens. Building the app connects nothing (faust connects when started; the confluent
    # producer and the rule follower's consumer only try in their background threads, and fail quietly).
    app = FraudApp(s, "127.0.0.1:1", Metrics(CollectorRegistry()))
    app.rule_follower.consumer.close()  # not polled here; closed so it stops retrying
    app.outputs.producer = app.producer = RecordingProducer()  # the handlers' outputs, by topic; the real one is released
    app.changelog.producer = app.producer  # table writes too (and changelog records with them, by partition)
    return app


def dead_letters(app: Any, topic: str | None = None) -> dict[str, float]:
    """fraudstream_dead_letters_total by reason, from the app's own registry."""
    out: dict[str, float] = Counter()
    for metric in app.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "fraudstream_dead_letters_total" and (topic is None or sample.labels["topic"] == topic):
                out[sample.labels["reason"]] += sample.value
    return out


def _delta(after: dict[str, float], before: dict[str, float]) -> Counter:
    return Counter({k: int(after[k] - before.get(k, 0)) for k in after if after[k] != before.get(k, 0)})


_offsets = iter(range(10**9))


def _events(topic: str, items: list[tuple[bytes | None, bytes | None]]) -> list[Event]:
    """Messages as faust hands them to an agent: partitioned by key as the producers do (Kafka's murmur2: a card's
    messages all reach one partition); offsets only grow, as on a partition."""
    return [Event(Msg(topic, partition_of((k or b"").decode("utf-8", "replace"), 3), next(_offsets), k, v)) for k, v in items]


def messages(events: list[Event]) -> list[Msg]:
    return [e.message for e in events]


# The score loop's sequence (fraudstream/stream/app.py `_define_agents`), without the awaits on the broker: the batch,
# then its outputs once its state is written, then the card states; then every partition quiet, so that what waited
# for the others' merchant partials goes too.
def run_score(app: Any, events: list[Event]) -> None:
    stage = app.score
    for p in range(app.settings.partitions):
        app.own_merchants.seed(p)
    stage.batch(messages(events))
    for _ in range(3):
        for p in range(app.settings.partitions):
            app.own_merchants.quiet(p)
        stage.batch([])
    assert not any(stage.waiting.values())
    stage.send()
    stage.commit()


def good_auth(draw_id: str, amount: float, ts: int) -> tuple[bytes, bytes]:
    card = f"card-{draw_id}"
    return card.encode(), orjson.dumps({"tx_id": f"tx-{draw_id}-{next(_offsets)}", "card_id": card, "merchant_id": f"m-{draw_id}",
                                        "amount": amount, "ts": ts, "channel": "ecom"})


good_auths = st.builds(good_auth, st.sampled_from(["a", "b", "c", "\u6771\u4eac"]), st.floats(0.01, 1e10),
                       st.integers(MIN_TS_MS, NOW_MS))
auth_messages = st.lists(st.one_of(good_auths, st.tuples(keys, raw_any)), min_size=1, max_size=12)
junk = st.lists(st.tuples(keys, raw_any), max_size=6)


@SLOW
@given(items=auth_messages)
def test_authorization_handlers_account_for_every_message(fraud_app, items):
    """Every authorization ends as one score or one dead letter, in one pass."""
    app, s = fraud_app, fraud_app.settings
    rec: RecordingProducer = app.producer

    rec.sent.clear()
    before = dead_letters(app)
    run_score(app, _events(s.topic_authorizations, items))
    expected = Counter()
    for key, value in items:
        r = decode_authorization(value, key)
        if isinstance(r, Rejection):
            expected[r.reason] += 1
    assert _delta(dead_letters(app), before) == expected
    scores = rec.values(s.topic_scores)
    assert len(scores) + sum(expected.values()) == len(items), "a valid authorization was not scored"
    assert len(rec.values(s.topic_dead_letter)) == sum(expected.values())
    event(f"scored {min(len(scores), 5)}+")
    for value, _key in scores:
        record = orjson.loads(value)
        assert 0.0 <= record["score"] <= 1.0
        assert all(math.isfinite(v) for v in record["features"].values())


def good_label(card: str, tx: str, is_fraud: bool) -> tuple[bytes, bytes]:
    return card.encode(), orjson.dumps({"tx_id": tx, "card_id": card, "is_fraud": is_fraud, "ts": NOW_MS - 1000, "source": "analyst"})


good_labels = st.builds(good_label, st.sampled_from(["card-a", "card-b"]), st.sampled_from(["tx-1", "tx-2", "nope"]), st.booleans())


@SLOW
@given(items=st.lists(st.one_of(good_labels, st.tuples(keys, raw_any)), min_size=1, max_size=12), junk_events=junk,
       reissues=st.lists(st.tuples(keys, raw_any), max_size=4))
def test_label_handlers_account_for_every_message(fraud_app, items, junk_events, reissues):
    app, s = fraud_app, fraud_app.settings
    rec: RecordingProducer = app.producer

    rec.sent.clear()
    before = dead_letters(app)
    app.card_events.intake(messages(_events(s.topic_labels, items)), "label")
    app.card_events.intake(messages(_events(s.topic_card_reissues, reissues)), "reissue")
    expected = Counter()
    for key, value in items:
        r = decode_label(value, key)
        if isinstance(r, Rejection):
            expected[r.reason] += 1
    for key, value in reissues:
        r = decode_card_reissue(value, key)
        if isinstance(r, Rejection):
            expected[r.reason] += 1
    assert _delta(dead_letters(app), before) == expected
    card_events = rec.values(s.topic_card_events)
    assert len(card_events) + sum(expected.values()) == len(items) + len(reissues)

    rec.sent.clear()
    before = dead_letters(app, s.topic_card_events)
    app.card_events.batch(messages(_events(s.topic_card_events, [(k, v) for v, k in card_events] + junk_events)))
    failed = _delta(dead_letters(app, s.topic_card_events), before)
    assert set(failed) <= {"processing_error"}
    assert failed["processing_error"] <= len(junk_events), "a valid label or reissue was dead-lettered"


@st.composite
def mutated(draw: st.DrawFn, record: Any) -> Any:
    """An internal record with one value somewhere replaced by anything, or removed."""
    out = orjson.loads(orjson.dumps(record))
    parent = out
    while True:
        names = sorted(parent) if isinstance(parent, dict) else list(range(len(parent)))
        name = draw(st.sampled_from(names))
        child = parent[name]
        if not isinstance(child, dict | list) or not child or draw(st.booleans()):
            break
        parent = child
    if draw(st.booleans()) or isinstance(parent, list):
        parent[name] = draw(json_values)
    else:
        del parent[name]
    return out


@SLOW
@given(data=st.data())
def test_merchant_partials_corrupted_one_value_at_a_time(fraud_app, data):
    """Every record of fraud.merchant-partials is applied whole to the replicas or dead-lettered, never in part,
    never the end of the worker."""
    from fraudstream.contracts import decode_merchant_events
    from fraudstream.core.features.partials import MerchantPartials
    from fraudstream.stream.partials import PartialsFollower

    s = fraud_app.settings
    good = {"partition": 1, "events": [["a", 7, "m-z", "card-z", 12.5, NOW_MS - 5000], ["e", 7, "m-z", "card-z", NOW_MS - 5000, 1],
                                       ["l", 3, "m-z", "card-z", NOW_MS - 9000, -1]], "next_ts": NOW_MS - 4000}
    bad = to_bytes(data.draw(mutated(good)), True)
    letters: list[Any] = []
    book = MerchantPartials(3, grace_ms=s.grace_ms, replicated=True)
    follower = PartialsFollower.__new__(PartialsFollower)  # its consumer is not needed to apply a record
    follower.book, follower.dead_letter = book, lambda rejection, msg: letters.append(rejection)
    record = decode_merchant_events(bad)
    n = follower.take(Msg(s.topic_merchant_partials, 1, 0, None, bad))
    if letters:
        assert n == 0 and not book.replicas, "dead-lettered, not applied in part"
        assert letters[0].reason in REJECTION_REASONS
    else:
        assert not isinstance(record, Rejection) and n == len(record.events)
    assert follower.take(Msg(s.topic_merchant_partials, 1, 1, None, orjson.dumps(good))) in (0, 1, 2, 3)


def test_an_output_the_broker_cannot_take_is_dead_lettered_not_raised(fraud_app):
    """librdkafka refuses a message over ``message.max.bytes`` from ``produce`` itself. In the middle of a batch
    that raised out of the agent; now the worker's `Outputs` hands it to the app, which dead-letters its first
    bytes and where it was going, and counts it."""
    import jsonschema
    from confluent_kafka import Producer

    from fraudstream.kafka.topics import load_specs
    from fraudstream.stream.outputs import Outputs

    app, s = fraud_app, fraud_app.settings
    rec: RecordingProducer = app.producer
    refusing = Outputs({"bootstrap.servers": "127.0.0.1:1", "message.max.bytes": 1000, "log_level": 0},  # no broker
                       on_failed=app.flusher.output_failed, on_rejected=app._on_output_rejected)
    assert isinstance(refusing.producer, Producer)
    rec.sent.clear()
    before = dead_letters(app, s.topic_models)
    refusing.produce(s.topic_models, b"m" * 5000, b"app")
    assert refusing.undelivered == 0, "not kept: it can never go"
    assert _delta(dead_letters(app, s.topic_models), before) == {"output_rejected": 1}
    [(value, _key)] = rec.values(s.topic_dead_letter)
    letter = orjson.loads(value)
    spec = {sp.name: sp for sp in load_specs()}["fraud.dead-letter"]
    jsonschema.Draft202012Validator(spec.value_schema).validate(letter)
    assert (letter["reason"], letter["topic"], letter["offset"], letter["key"]) == ("output_rejected", s.topic_models, -1, "app")
    assert "5000 bytes" in letter["detail"] and letter["raw"].startswith("mmm")


def test_alerts_of_the_last_24_hours_are_counted_by_hour(fraud_app):
    """24 hourly counters of event time, not a list of every alert's time (a day of rule alerts is 100,000s)."""
    app = fraud_app
    saved, app.score.alerts_by_hour = app.score.alerts_by_hour, {100: 3, 101: 4, 110: 2, 124: 1}
    try:
        app.gauges.report()
        assert app.score.alerts_by_hour == {101: 4, 110: 2, 124: 1}  # hour 100 is 24 hours before the newest
        assert app.metrics.registry.get_sample_value("fraudstream_alerts_last_24h") == 7
    finally:
        app.score.alerts_by_hour = saved
