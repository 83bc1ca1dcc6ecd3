"""The score stage without faust or a broker: what it scores is what the core scores, its outputs wait for its
state, bad input is dead-lettered, and a crash between a snapshot and its threshold is replayed exactly."""

from __future__ import annotations

import random
import zlib
from typing import Any

from fraudstream.contracts import Authorization, decode, encode
from fraudstream.core.features.card import HOUR_MS
from fraudstream.core.scorer import FraudScorer
from fraudstream.core.snapshot import EncodedSnapshots
from fraudstream.stream.stages import CardTables, LabelOutcomes, Message, ScoreStage
from fraudstream.stream.stages.score import pack_policy, unpack_policy

from .fakes import T0, FakeTable, authorization, harness, message


def enriched(n: int, partitions: int = 2, every: int = 1) -> list[Message]:
    """``n`` authorizations of four cards as the merchant stage hands them on: the card's and the merchant's
    features, computed by the core (as intake and the merchant stage do), keyed by card."""
    s, *_ = harness(partitions)
    features = FraudScorer(s)
    out = []
    for i in range(n):
        card = f"card-{i % 4}"
        a = authorization(i, card=card, merchant=f"m-{i % 3}", amount=5.0 + (i * 37) % 400, minutes=every)
        auth = Authorization(**a)
        step = features.card_stage(auth)
        feats = dict(step.features)
        feats.update(features.enrich_merchant(auth, step.duplicate))
        partition = i % 4 % partitions  # a card's authorizations all on one partition, in order
        out.append(message(s.topic_enriched, partition, i, {"auth": a, "features": feats, "late": step.late, "arr": 1},
                           card.encode()))
    return out


def stage(scorer: FraudScorer | None = None, snapshots: FakeTable | None = None, partitions: int = 2) -> tuple[ScoreStage, Any]:
    s, metrics, out, dead = harness(partitions)
    tables = CardTables(FakeTable(), FakeTable(), snapshots if snapshots is not None else FakeTable(), FakeTable(),
                        FakeTable(), FakeTable())
    if scorer is None:
        scorer = FraudScorer(s, snapshots=EncodedSnapshots(tables.snapshots))
    return ScoreStage(s, metrics, out, dead, scorer, tables, LabelOutcomes(s, metrics, out)), out


def test_scores_are_those_of_the_core_and_wait_for_the_state() -> None:
    messages = enriched(40)
    score, out = stage()
    score.batch(messages)
    assert out.sent == [], "nothing goes out before the batch's state is written"
    assert score.tables.thresholds.keys() == {"0", "1"}, "each partition's threshold, written with the batch"
    assert score.decisions == {0: 20, 1: 20}
    score.send()
    assert score.outbox == []
    core = FraudScorer(score.settings)
    for msg, (record, key, _partition) in zip(messages, out.to(score.settings.topic_scores), strict=True):
        d = _decoded(msg)
        expected = core.score(Authorization(**d["auth"]), dict(d["features"]), d["late"], msg.partition)
        assert record == _decoded_record(expected.score_record())
        assert key == d["auth"]["card_id"].encode()
    assert score.metrics.registry.get_sample_value("fraudstream_authorizations_scored_total") == 40


def test_bad_input_is_dead_lettered_and_the_rest_scored() -> None:
    messages = enriched(3)
    s = harness()[0]
    bad = [message(s.topic_enriched, 0, 90, b"{not json", b"card-0"), message(s.topic_enriched, 1, 91, {"auth": {"tx_id": "x"}})]
    score, out = stage()
    score.batch([messages[0], *bad, *messages[1:]])
    score.send()
    letters = out.to(s.topic_dead_letter)
    assert [(d["reason"], d["offset"]) for d, _k, _p in letters] == [("processing_error", 90), ("processing_error", 91)]
    assert [d["tx_id"] for d, _k, _p in out.to(s.topic_scores)] == ["tx-0", "tx-1", "tx-2"]
    assert score.positions == {(s.topic_enriched, 0): 2, (s.topic_enriched, 1): 1}


def test_a_crash_after_the_snapshots_before_the_thresholds_is_replayed_exactly() -> None:
    # 600 decisions per partition: past the threshold's warm-up (500), so it moves in the second batch.
    messages = enriched(1200, every=3)
    snapshots = FakeTable()
    live, live_out = stage(snapshots=snapshots)
    live.batch(messages[:700])
    thresholds_before = dict(live.tables.thresholds)
    live.batch(messages[700:])
    live.send()
    s = live.settings
    scores = [d for d, _k, _p in live_out.to(s.topic_scores)]
    assert {"alert", "update"} <= {d["decision"]["action"] for d in scores[700:]}, "decisions that change a standing"
    assert [decode(snapshots[f"tx-{i}"])["n"] for i in (0, 1, 1198, 1199)] == [1, 1, 600, 600], "each its number"
    # The worker died once the second batch's snapshots were on their changelog, before its standings and
    # thresholds were: its successor has the snapshots, the first batch's thresholds, and no standings.
    scorer = FraudScorer(s, snapshots=EncodedSnapshots(snapshots))
    again, out = stage(scorer=scorer, snapshots=snapshots)
    again.tables.thresholds.update(thresholds_before)
    again.batch(messages[700:])  # redelivered: each answered from its snapshot, and replayed
    again.send()
    assert [d for d, _k, _p in out.to(s.topic_scores)] == scores[700:]
    assert again.decisions == live.decisions == {0: 600, 1: 600}
    for p in (0, 1):
        assert scorer.policy(p).threshold.to_bytes() == live.scorer.policy(p).threshold.to_bytes()
    for card in ("card-0", "card-1", "card-2", "card-3"):
        assert scorer.standings.get(card).to_bytes() == live.scorer.standings.get(card).to_bytes()
    assert again.tables.thresholds == live.tables.thresholds, "and the thresholds written are the live ones"


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
