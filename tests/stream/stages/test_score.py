"""The score stage without faust or a broker: one pass per authorization scores what the backtest's core scores,
merchant partials included; its outputs wait for its state, bad input is dead-lettered, an authorization waits for
the other partitions' partials, and a crash between a snapshot and its threshold is replayed exactly."""

from __future__ import annotations

import random
import zlib
from typing import Any

from fraudstream.contracts import Authorization, MerchantEvents, decode, encode
from fraudstream.core.features.card import HOUR_MS, MINUTE_MS
from fraudstream.core.features.partials import MerchantPartials
from fraudstream.core.partitioner import partition_of
from fraudstream.core.scorer import FraudScorer
from fraudstream.stream.stages import Message, ScoreStage
from fraudstream.stream.stages.score import pack_policy, unpack_policy

from .fakes import T0, FakeOutputs, FakeTable, authorization, follow, harness, message, one_pass


def authorizations(n: int, partitions: int = 2, every: int = 1, cards: int = 8, merchants: int = 3) -> list[Message]:
    """``n`` authorizations in event-time order, each on its card's partition (Kafka's murmur2, as producers put
    them), in offset order there."""
    s = harness(partitions)[0]
    offsets: dict[int, int] = {}
    out = []
    for i in range(n):
        card = f"card-{i % cards}"
        a = authorization(i, card=card, merchant=f"m-{i % merchants}", amount=5.0 + (i * 37) % 400, minutes=every)
        p = partition_of(card, partitions)
        offsets[p] = offsets.get(p, -1) + 1
        out.append(message(s.topic_authorizations, p, offsets[p], a, card.encode()))
    return out


def run(stage: ScoreStage, out: FakeOutputs, batches: list[list[Message]]) -> list[Message]:
    """The worker's loop: each batch scored, its state written, sent, the card state written; then what every worker
    does meanwhile, the merchant events applied to the replicas. At the end the partitions go quiet and what they
    held is released. Returns the messages held and released (the loop acknowledges those then)."""
    seen, released = 0, []
    topic = stage.settings.topic_merchant_partials

    def step(batch: list[Message]) -> None:
        nonlocal seen
        released.extend(stage.batch(batch))
        stage.send()
        stage.commit()
        seen = follow(stage.book, out, topic, seen)

    for batch in batches:
        step(batch)
    for p in range(stage.book.partitions):
        stage.merchants.quiet(p)
    stage.merchants.publish(out, topic)
    seen = follow(stage.book, out, topic, seen)
    for _ in range(10):
        if not any(stage.waiting.values()):
            break
        step([])
    return released


def test_scores_are_those_of_the_backtests_core_merchant_partials_included() -> None:
    """Two partitions, in batches that cut across minutes: every score, decision and feature is the one the
    backtest's core gives (``Backtest(merchant_partials=True)``), bit for bit."""
    messages = authorizations(600, every=1)
    stage, out = one_pass(2)
    rng = random.Random(3)
    batches, i = [], 0
    while i < len(messages):
        n = rng.randrange(1, 60)
        batches.append(messages[i : i + n])
        i += n
    run(stage, out, batches)
    s = stage.settings
    assert out.to(s.topic_dead_letter) == []
    scored = {d["tx_id"]: d for d, _k, _p in out.to(s.topic_scores)}
    assert len(scored) == len(messages)
    core = FraudScorer(s, merchant_partials=MerchantPartials(2, grace_ms=s.grace_ms), explain=True)
    others_counted = 0
    for msg in messages:
        a = Authorization(**decode(msg.value))
        expected = core.process(a, msg.partition)
        got = scored[a.tx_id]
        assert got == _decoded_record(expected.score_record()), a.tx_id
        others_counted += got["features"]["merchant_count_1d"] > 0
    assert others_counted > 100, "merchant features counted"
    assert s.topic_merchant_partials in {t for t, *_ in out.sent}
    assert stage.metrics.registry.get_sample_value("fraudstream_authorizations_scored_total") == 600


def test_outputs_wait_for_the_batchs_state_and_a_card_state_that_has_them_skips_them() -> None:
    messages = authorizations(40, partitions=1)
    stage, out = one_pass(1)
    stage.batch(messages)
    assert out.sent == [], "nothing goes out before the batch's state is written"
    assert stage.tables.thresholds.keys() == {"0"}, "the partition's threshold, written with the batch"
    assert stage.decisions == {0: 40}
    stage.send()
    assert stage.outbox == []
    s = stage.settings
    assert len(out.to(s.topic_scores)) == 40
    assert [(topic, partition) for topic, _v, _k, partition in out.sent[-1:]] == [(s.topic_merchant_partials, 0)]
    stage.commit()
    del out.sent[:]
    stage.batch(messages[30:])  # read again: the card states written include them
    stage.send()
    assert out.sent == []


def test_bad_input_is_dead_lettered_and_a_misrouted_authorization_sent_to_its_cards_partition() -> None:
    messages = authorizations(3)
    s = harness()[0]
    misrouted = message(s.topic_authorizations, 1 - messages[0].partition, 92, authorization(9, card="card-0"), b"card-0")
    bad = [message(s.topic_authorizations, 0, 90, b"{not json", b"card-0"),
           message(s.topic_authorizations, 1, 91, {"tx_id": "x"}, b"card-0"), misrouted]
    stage, out = one_pass(2)
    stage.batch([messages[0], *bad, *messages[1:]])
    stage.send()
    letters = out.to(s.topic_dead_letter)
    assert [(d["reason"], d["offset"]) for d, _k, _p in letters] == [("not_json", 90), ("missing_field", 91)]
    assert sorted(d["tx_id"] for d, _k, _p in out.to(s.topic_scores)) == ["tx-0", "tx-1", "tx-2"]
    assert [(d["tx_id"], k) for d, k, _p in out.to(s.topic_authorizations)] == [("tx-9", b"card-0")]
    assert stage.metrics.registry.get_sample_value("fraudstream_authorizations_rerouted_total") == 1


def test_an_authorization_waits_for_the_other_partitions_and_says_how_far_its_partition_is() -> None:
    s = harness()[0]
    stage, out = one_pass(2)
    late = [message(s.topic_authorizations, 0, 0, authorization(0, card="card-2", minutes=10), b"card-2")]
    assert partition_of("card-2", 2) == 0
    assert stage.batch(late) == [], "partition 1 has said nothing: held"
    stage.send()
    assert out.to(s.topic_scores) == [] and len(stage.waiting[0]) == 1
    assert [(d["next_ts"], p) for d, _k, p in out.to(s.topic_merchant_partials)] == [(T0, 0)]
    assert stage.metrics.registry.get_sample_value("fraudstream_merchant_held") == 1
    stage.book.apply(MerchantEvents(1, [], next_ts=T0 + 2 * MINUTE_MS))  # partition 1 is past the minute it reads
    released = stage.batch([])
    stage.send()
    assert released == late and [d["tx_id"] for d, _k, _p in out.to(s.topic_scores)] == ["tx-0"]
    assert not stage.waiting[0]


def test_a_crash_after_the_snapshots_before_the_thresholds_is_replayed_exactly() -> None:
    # 600 decisions per partition: past the threshold's warm-up (500), so it moves in the second batch.
    messages = authorizations(1200, every=3)
    snapshots = FakeTable()
    live, live_out = one_pass(2, snapshots=snapshots)
    _all_of(live, messages[:700])
    thresholds_before = dict(live.tables.thresholds)
    _all_of(live, messages[700:])
    live.send()
    s = live.settings
    scores = [d for d, _k, _p in live_out.to(s.topic_scores)]
    assert len(scores) == 1200
    assert "alert" in {d["decision"]["action"] for d in scores[700:]}, "decisions that change a standing"
    assert live.decisions == {0: 600, 1: 600}
    # The worker died once the second batch's snapshots were on their changelog, before its standings and
    # thresholds were (and before its outputs and card states): its successor has the snapshots, the first batch's
    # thresholds, and no standings.
    again, out = one_pass(2, snapshots=snapshots)
    again.tables.thresholds.update(thresholds_before)
    _all_of(again, messages[700:])  # redelivered: each answered from its snapshot, and replayed
    again.send()
    assert sorted(d["tx_id"] for d, _k, _p in out.to(s.topic_scores)) == sorted(d["tx_id"] for d in scores[700:])
    assert {d["tx_id"]: d for d, _k, _p in out.to(s.topic_scores)} == {d["tx_id"]: d for d in scores[700:]}
    assert again.decisions == live.decisions
    for p in (0, 1):
        assert again.scorer.policy(p).threshold.to_bytes() == live.scorer.policy(p).threshold.to_bytes()
    for card in (f"card-{i}" for i in range(8)):
        assert again.scorer.standings.get(card).to_bytes() == live.scorer.standings.get(card).to_bytes()
    assert again.tables.thresholds == live.tables.thresholds, "and the thresholds written are the live ones"


def _all_of(stage: ScoreStage, messages: list[Message]) -> None:
    """One batch, and what it held released: both partitions then quiet (the state of one batch, unsent)."""
    stage.batch(messages)
    for p in (0, 1):
        stage.merchants.quiet(p)
    stage.batch([])
    assert not any(stage.waiting.values())


def _decoded(msg: Message) -> dict[str, Any]:
    from fraudstream.contracts import decode

    return decode(msg.value)


def _decoded_record(record: dict[str, Any]) -> dict[str, Any]:
    from fraudstream.contracts import decode

    return decode(encode(record))


def test_a_threshold_packed_from_its_kept_pieces_is_the_one_packed_whole() -> None:
    """`pack_policy` compresses again only the rows of the histogram that changed: the same bytes once decompressed,
    read back to the same threshold, by every version's `unpack_policy` (zlib)."""
    s = harness()[0]
    policy, kept = FraudScorer(s).policy(0), []
    rng = random.Random(7)
    for n in range(1, 40):
        for _ in range(rng.choice((1, 5, 50))):  # batches of decisions over a few days of event time
            policy.threshold.observe(T0 + n * HOUR_MS * 3 + rng.randrange(HOUR_MS), rng.random() ** 3)
        pieces, whole = pack_policy(policy, n, kept), pack_policy(policy, n)
        assert zlib.decompress(pieces) == zlib.decompress(whole)
        restored = FraudScorer(s).policy(0)
        assert unpack_policy(restored, pieces) == n
        assert restored.threshold.to_bytes() == policy.threshold.to_bytes()
        assert (restored.threshold._cached, restored.threshold._stale) == (policy.threshold._cached, policy.threshold._stale)


def test_a_partition_caught_up_and_quiet_is_announced_idle_once() -> None:
    import time as _time

    from .fakes import FakeConsumer

    s = harness()[0]
    stage, out = one_pass(2)
    consumer = FakeConsumer(s.topic_authorizations, range(2), highwaters={0: 1, 1: 5})
    stage.positions[(s.topic_authorizations, 0)] = 0  # partition 0 read to its end; partition 1 behind
    stage.seen = {0: _time.monotonic() - 10.0, 1: _time.monotonic() - 10.0}
    stage.announce_idle(consumer)
    stage.merchants.publish(out, s.topic_merchant_partials)
    assert [(d.get("idle_after"), p) for d, _k, p in out.to(s.topic_merchant_partials)] == [(-1, 0)]
    assert 0 in stage.book.idle and 1 not in stage.book.idle
    del out.sent[:]
    stage.announce_idle(consumer)  # said once, until its next authorization
    stage.merchants.publish(out, s.topic_merchant_partials)
    assert out.sent == []
