"""Merchant partials: a card partition's own contributions exact, the others' as of a boundary a minute or two back."""

from __future__ import annotations

import random

import pytest

from fraudstream.backtest import Backtest
from fraudstream.config import Settings
from fraudstream.contracts import Authorization, Label, MerchantEvent, MerchantEvents
from fraudstream.core.features.merchant import MerchantState, merchant_features, merchant_label
from fraudstream.core.features.partials import PARTIALS_EVERY_MS, MerchantPartials
from fraudstream.core.partitioner import partition_of

T0 = 1_700_438_400_000  # 2023-11-20T00:00:00Z
GRACE_MS = Settings.load(env={}).grace_ms
MIN = 60_000


class _States(dict[str, MerchantState]):
    """Each partition's own merchant states, by `MerchantPartials.key`."""


def _stream(n: int, merchants: int, seed: int, cards: int = 40) -> list[Authorization]:
    rng = random.Random(seed)
    ts, out = T0, []
    for i in range(n):
        ts += rng.choice((0, 1_000, 20_000, 70_000, 400_000, 3_600_000))
        out.append(Authorization(f"t{i}", f"card-{rng.randrange(cards)}", f"m{rng.randrange(merchants)}",
                                 round(rng.uniform(1, 500), 2), ts))
    return out


def _scored(book: MerchantPartials, states: dict[str, MerchantState], a: Authorization) -> dict[str, float]:
    book.cross(a.ts, lambda key: states.setdefault(key, MerchantState()))
    p = book.card_partition(a.card_id)
    own = states.setdefault(book.key(p, a.merchant_id), MerchantState())
    feats = merchant_features(own, a, others=book.others(p, a.merchant_id, book.boundary(a.ts)))
    book.touch(p, a.merchant_id)
    return feats


def test_features_are_the_own_partitions_exactly_plus_the_others_before_the_boundary() -> None:
    """The brute-force answer: one state fed, in event time, with this partition's earlier authorizations and every
    other partition's before the boundary the authorization reads (k * every, k = (ts - lag) // every)."""
    events = _stream(600, merchants=3, seed=1)
    book, states = MerchantPartials(partitions=3, grace_ms=GRACE_MS), _States()
    for i, a in enumerate(events):
        got = _scored(book, states, a)
        p = book.card_partition(a.card_id)
        cut = book.boundary(a.ts) * PARTIALS_EVERY_MS
        reference = MerchantState()
        for b in events[:i]:
            if b.merchant_id == a.merchant_id and (book.card_partition(b.card_id) == p or b.ts < cut):
                merchant_features(reference, b)
        want = merchant_features(reference, a)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (i, a)


def test_another_partitions_authorizations_count_once_their_boundary_is_read() -> None:
    book, states = MerchantPartials(partitions=2, grace_ms=GRACE_MS), _States()
    cards = {partition_of(f"card-{i}", 2): f"card-{i}" for i in range(10)}
    first = _scored(book, states, Authorization("t1", cards[0], "m1", 10.0, T0))
    assert first["merchant_count_1d"] == 1.0
    # Partition 1, 30 s and 90 s later: partition 0's authorization is not yet behind the boundary read.
    assert _scored(book, states, Authorization("t2", cards[1], "m1", 10.0, T0 + 30_000))["merchant_count_1d"] == 1.0
    assert _scored(book, states, Authorization("t3", cards[1], "m1", 10.0, T0 + 90_000))["merchant_count_1d"] == 2.0
    # Two minutes on, it is: read as of the boundary before it, with partition 1's own two exactly.
    assert _scored(book, states, Authorization("t4", cards[1], "m1", 10.0, T0 + 120_000))["merchant_count_1d"] == 4.0


def test_one_partition_scores_exactly_as_without_partials() -> None:
    """With one card partition there are no others: the backtest's scores are the exact path's, bit for bit."""
    from fraudstream.simulate.scenarios import make_scenario

    data = make_scenario("card-testing", cards=300, days=12, seed=5)
    events = [Authorization(**e) for e in data.events]
    labels = [Label(**lb) for lb in data.labels]
    settings = Settings.load(env={}).with_overrides(partitions=1)
    exact = Backtest(settings).run(events, labels)
    partials = Backtest(settings, merchant_partials=True).run(events, labels)
    assert partials.score == exact.score and partials.alerts == exact.alerts
    three = Backtest(settings.with_overrides(partitions=3), merchant_partials=True).run(events, labels)
    assert three.score != exact.score and three.tx_id == exact.tx_id  # the merchant's features moved a little


def test_a_label_changes_its_cards_partition_and_the_others_see_it_after_a_boundary() -> None:
    settings = Settings.load(env={}).with_overrides(partitions=2)
    backtest = Backtest(settings, merchant_partials=True, reissue_after_days=None)
    scorer = backtest.scorer
    cards = {partition_of(f"card-{i}", 2): f"card-{i}" for i in range(10)}
    scorer.process(Authorization("t1", cards[0], "m1", 10.0, T0))
    scorer.label(Label(cards[0], True, T0 + 10_000, "chargeback", "t1"))
    rate = scorer.process(Authorization("t2", cards[1], "m1", 10.0, T0 + 20_000)).features["merchant_fraud_rate_1d"]
    assert rate == 0.0  # partition 1 does not know partition 0's authorization yet, nor its fraud
    later = scorer.process(Authorization("t3", cards[1], "m1", 10.0, T0 + 3 * MIN)).features
    assert later["merchant_count_1d"] == 3.0 and later["merchant_fraud_rate_1d"] == pytest.approx(1 / 3)
    own = scorer.process(Authorization("t4", cards[0], "m1", 10.0, T0 + 3 * MIN + 1)).features
    # Its own two and their fraud exactly; of partition 1's, the one before the boundary it reads.
    assert own["merchant_count_1d"] == 3.0 and own["merchant_fraud_rate_1d"] == pytest.approx(1 / 3)


def test_a_merchants_versions_stay_few_and_idle_merchants_are_forgotten() -> None:
    book, states = MerchantPartials(partitions=3, grace_ms=GRACE_MS), _States()
    for a in _stream(5_000, merchants=20, seed=2, cards=300):
        _scored(book, states, a)
    assert max(len(v) for by_partition in book.versions.values() for v in by_partition.values()) <= 4
    assert len(book.versions) == 20
    late = T0 + 400 * 86_400_000
    _scored(book, states, Authorization("t-late", "card-1", "m-new", 5.0, late))
    _scored(book, states, Authorization("t-later", "card-1", "m-new", 5.0, late + 86_400_000))
    assert set(book.versions) == {"m-new"}  # the others went idle for over 30 days: forgotten at a day's start


def test_replicas_fed_with_each_partitions_merchant_events_give_the_same_others_bit_for_bit() -> None:
    """A worker reads another's partitions as the merchant events they applied, in their order, and between them
    their progress: its replicas make the same calls, so every authorization reads the same floats as the backtest's
    own states give, labels included."""
    events = _stream(3_000, merchants=6, seed=3)
    rng = random.Random(7)
    own_book, states = MerchantPartials(partitions=3, grace_ms=GRACE_MS), _States()
    replica_book = MerchantPartials(partitions=3, grace_ms=GRACE_MS)
    for a in events:
        for book in (own_book, replica_book):
            p = book.card_partition(a.card_id)
        own_book.cross(a.ts, lambda key: states.setdefault(key, MerchantState()))
        for q in range(3):  # every partition passes the boundary: its next authorization, or its idle mark
            replica_book.receive_progress(q, a.ts)
        k = own_book.boundary(a.ts)
        want, got = own_book.others(p, a.merchant_id, k), replica_book.others(p, a.merchant_id, k)
        assert [x.to_bytes() for x in got] == [x.to_bytes() for x in want]
        state = states.setdefault(own_book.key(p, a.merchant_id), MerchantState())
        merchant_features(state, a, others=want)
        own_book.touch(p, a.merchant_id)
        replica_book.receive_authorization(p, a)
        if rng.random() < 0.05:  # a label about this authorization, later in the partition's order
            delta = rng.choice((1, 1, -1))
            merchant_label(state, a.card_id, a.ts, delta)
            own_book.touch(p, a.merchant_id)
            replica_book.receive_label(p, a.merchant_id, a.card_id, a.ts, delta)
    assert sum(len(v) for v in replica_book.replicas.values()) > 6
    for (key, state) in states.items():
        merchant_id, partition = key.split("@")
        assert replica_book.replicas[int(partition)][merchant_id].to_bytes() == state.to_bytes()


def test_records_of_merchant_events_sent_again_are_applied_once() -> None:
    """A worker's replicas take each partition's records (fraud.merchant-partials): a batch redelivered after a crash
    sends its events again, cut into other batches; each event counts once, so the replica is the partition's own
    state bit for bit."""
    events = _stream(2_000, merchants=5, seed=11)
    rng = random.Random(5)
    book = MerchantPartials(partitions=3, grace_ms=GRACE_MS, replicated=True)
    own: dict[int, _States] = {p: _States() for p in range(3)}
    log: dict[int, list[MerchantEvent]] = {p: [] for p in range(3)}  # each partition's events, in its order
    auth_offsets, label_offsets = dict.fromkeys(range(3), 0), dict.fromkeys(range(3), 0)
    for a in events:
        p = book.card_partition(a.card_id)
        state = own[p].setdefault(a.merchant_id, MerchantState())
        merchant_features(state, a, GRACE_MS, base_amount=a.amount)
        log[p].append(("a", auth_offsets[p], a.merchant_id, a.card_id, a.amount, a.ts))
        if rng.random() < 0.1:  # a label found waiting by this authorization: the same input offset
            merchant_label(state, a.card_id, a.ts, 1)
            log[p].append(("e", auth_offsets[p], a.merchant_id, a.card_id, a.ts, 1))
        if rng.random() < 0.05:  # a label from fraud.card-events: offsets of its own
            merchant_label(state, a.card_id, a.ts, -1)
            log[p].append(("l", label_offsets[p], a.merchant_id, a.card_id, a.ts, -1))
            label_offsets[p] += 1
        auth_offsets[p] += 1
    applied = 0
    for p, evs in log.items():
        # A batch begins at an input offset: an authorization's events (its label found waiting) stay in one record.
        starts = [i for i, e in enumerate(evs) if e[0] != "e"]
        cuts = sorted({0, len(evs), *rng.sample(starts, len(starts) // 15)})
        for k in range(len(cuts) - 1):
            applied += book.apply(MerchantEvents(p, evs[cuts[k] : cuts[k + 1]]))
            if rng.random() < 0.3:  # sent again from an earlier batch's start, in a batch of another size
                applied += book.apply(MerchantEvents(p, evs[cuts[max(0, k - rng.randrange(0, 3))] : cuts[k + 1]]))
    assert applied == sum(len(evs) for evs in log.values())
    assert sum(len(states) for states in own.values()) > 10
    for p in range(3):
        for merchant_id, state in own[p].items():
            assert book.replicas[p][merchant_id].to_bytes() == state.to_bytes(), (p, merchant_id)


def test_an_authorization_waits_until_every_other_partition_passed_its_boundary_or_is_idle() -> None:
    book = MerchantPartials(partitions=3, grace_ms=GRACE_MS, replicated=True)
    ts = T0 + 10 * MIN + 5_000  # reads boundary T0 + 9 minutes
    assert not book.ready(0, ts)
    book.apply(MerchantEvents(1, [("a", 0, "m1", "c1", 5.0, T0 + 9 * MIN)]))
    assert not book.ready(0, ts)  # partition 2 has said nothing
    book.apply(MerchantEvents(2, [], next_ts=T0 + 8 * MIN))
    assert not book.ready(0, ts)  # ... nothing past the boundary yet
    book.apply(MerchantEvents(2, [], idle_after=-1))
    assert book.ready(0, ts) and not book.ready(0, ts + MIN)  # partition 1 is at minute 9
    book.apply(MerchantEvents(2, [("a", 0, "m1", "c2", 5.0, T0)]))  # traffic again: no longer idle, and behind
    assert not book.ready(0, ts)
    book.apply(MerchantEvents(2, [], next_ts=T0 + 9 * MIN))
    assert book.ready(0, ts)
    assert not book.ready(1, ts) and not book.ready(2, ts)  # partition 0 has said nothing
    book.apply(MerchantEvents(2, [], idle_after=-1))  # an idle mark from before its authorization at offset 0: stale
    assert 2 not in book.idle
