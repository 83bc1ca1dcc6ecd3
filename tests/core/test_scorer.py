"""FraudScorer: replay determinism, duplicates at every stage, labels in every order, maturity, no leakage, blocks."""

from __future__ import annotations

import pytest

from fraudstream.config import Settings
from fraudstream.contracts import Authorization, CardReissue, Label, decode
from fraudstream.core.features.card import CARD_IDLE_MS, CardState
from fraudstream.core.model.online import keep_legitimate
from fraudstream.core.rules import Rule, RuleSet
from fraudstream.core.scorer import FraudScorer
from fraudstream.simulate.handbook import HandbookSimulator
from fraudstream.simulate.labels import LabelDelays

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
T0 = 1_700_438_400_000  # 2023-11-20T00:00:00Z


def settings(**overrides: object) -> Settings:
    return Settings.load(env={}).with_overrides(partitions=1, **overrides)


def auth(tx: str, card: str, ts: int, amount: float = 50.0, merchant: str = "m1", channel: str = "pos") -> Authorization:
    return Authorization(tx, card, merchant, amount, ts, channel=channel)


def label(card: str, ts: int, tx: str | None = None, fraud: bool = True, source: str = "chargeback", since: int | None = None) -> Label:
    return Label(card, fraud, ts, source, tx, since)


def snapshot(scorer: FraudScorer, tx: str) -> dict:
    """The snapshot as the worker's table stores it."""
    return decode(scorer.snapshots[tx].to_bytes())


# --- replay determinism ----------------------------------------------------------------------


def simulated_events(seed: int) -> list[tuple[int, int, object]]:
    """Authorizations (some redelivered) and their delayed labels, merged in event-time order."""
    sim = HandbookSimulator(n_customers=50, n_terminals=100, n_days=18, seed=seed)
    events: list[tuple[int, int, object]] = []
    for i, a in enumerate(sim.iter_authorizations()):
        events.append((a.ts, 0, Authorization(**a.as_event())))
        if i % 47 == 0:  # a redelivery, a little later
            events.append((a.ts + 1, 0, Authorization(**a.as_event())))
    delays = LabelDelays(chargeback_delay_days=(1.0, 6.0), report_delay_hours=(6.0, 48.0), seed=seed)
    for d in delays.labels(sim):
        events.append((d["ts"], 1, Label(**d)))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def replay(events: list[tuple[int, int, object]], s: Settings) -> tuple[list, FraudScorer]:
    scorer = FraudScorer(s)
    out: list = []
    for i, (ts, kind, obj) in enumerate(events):
        if kind == 0:
            r = scorer.process(obj)  # type: ignore[arg-type]
            early = r.label_outcome
            out.append(("score", r.score_record(), r.alert_record() if r.alerted else None, r.duplicate,
                        None if early is None else (early.status, [e.tx_id for e in early.examples])))
        else:
            o = scorer.label(obj)  # type: ignore[arg-type]
            out.append(("label", o.status, [(e.tx_id, e.is_fraud) for e in o.examples], [m.as_dict() for m in o.merchant_updates]))
        if i % 50 == 0:
            out.append(("mature", [e.tx_id for e in scorer.mature(ts)]))
    return out, scorer


def test_replay_is_deterministic() -> None:
    events = simulated_events(seed=5)
    s = settings(maturity_days=3.0, legit_sample_rate=0.2, alert_budget_per_day=20)
    first, a = replay(events, s)
    second, b = replay(events, s)
    assert first == second
    assert a.model.version == b.model.version and a.counts == b.counts
    # The run was not trivial: the model left its cold start, alerts were raised, duplicates answered.
    assert a.model.ready and a.model.examples > 100
    scores = [rec for rec in first if rec[0] == "score"]
    assert sum(1 for rec in scores if rec[2] is not None) > 20
    assert a.counts["duplicate"] > 10
    assert len({rec[1]["model_version"] for rec in scores}) > 50


# --- duplicates ------------------------------------------------------------------------------


def test_a_duplicate_is_answered_from_its_snapshot_and_counted_once() -> None:
    rules = RuleSet([Rule("R-1", "big ticket", "amount > 1000", "active", "alert")])
    scorer = FraudScorer(settings(), rules=rules)
    first = scorer.process(auth("t1", "c1", T0, 5000.0))
    assert first.alerted and not first.duplicate
    card, merchant, snap = scorer.cards.get("c1").to_bytes(), scorer.merchants.get("m1").to_bytes(), scorer.snapshots["t1"].to_bytes()
    again = scorer.process(auth("t1", "c1", T0, 5000.0))
    assert again.duplicate
    assert again.score_record() == first.score_record()
    assert again.alert_record() == first.alert_record()
    assert (again.score, again.reasons, again.rule_hits) == (first.score, first.reasons, first.rule_hits)
    assert scorer.cards.get("c1").to_bytes() == card
    assert scorer.merchants.get("m1").to_bytes() == merchant
    assert scorer.snapshots["t1"].to_bytes() == snap
    assert scorer.counts["duplicate"] == 1 and len(scorer.pending) == 1
    assert scorer.rule_stats.snapshot()["R-1"]["overall"]["hits"] == 1
    nxt = scorer.process(auth("t2", "c1", T0 + MIN, 10.0))
    assert (nxt.features["card_count_1h"], nxt.features["merchant_count_1d"]) == (2.0, 2.0)


def test_rule_precision_counts_a_chargeback_weeks_late_and_holds_nothing_per_hit() -> None:
    """The snapshot keeps each transaction's hits until its label: RuleStats remembers no transaction (it held
    100,000, about 44 MiB, and forgot hits older than that), and a label counts however late it comes."""
    rules = RuleSet([Rule("R-1", "big ticket", "amount > 1000", "active", "alert"),
                     Rule("R-2", "big ticket, trial", "amount > 2000", "shadow", "alert")])
    scorer = FraudScorer(settings(), rules=rules)
    scorer.process(auth("t1", "c1", T0, 5000.0))
    scorer.process(auth("t2", "c2", T0 + MIN, 1500.0))
    assert scorer.rule_stats.pending == 0
    scorer.label(label("c1", T0 + 40 * DAY, "t1", fraud=True))
    scorer.label(label("c2", T0 + 40 * DAY, "t2", fraud=False))
    overall = {rule: counts["overall"] for rule, counts in scorer.rule_stats.snapshot().items()}
    assert overall["R-1"] == {"hits": 2, "alerts": 2, "labelled": 2, "confirmed_fraud": 1, "precision": 0.5}
    assert overall["R-2"] == {"hits": 1, "alerts": 0, "labelled": 1, "confirmed_fraud": 1, "precision": 1.0}
    scorer.label(label("c1", T0 + 41 * DAY, "t1", fraud=True))  # the same again: nothing changes
    scorer.label(label("c2", T0 + 50 * DAY, "t2", fraud=True))  # a contradiction replaces the earlier label
    day = scorer.rule_stats.snapshot()["R-1"]["days"]["2023-11-20"]
    assert (day["labelled"], day["confirmed_fraud"]) == (2, 2)


def test_a_duplicate_on_the_scoring_stage_alone_touches_no_state() -> None:
    """A redelivery answered from its snapshot (whatever features it is handed) must not count twice."""
    rules = RuleSet([Rule("R-1", "big ticket", "amount > 1000", "active", "alert")])
    scorer = FraudScorer(settings(), rules=rules)
    a = auth("t1", "c1", T0, 5000.0)
    step = scorer.features(a)
    first = scorer.score(a, step.features, step.late)
    assert first.alerted
    card, standing, merchant = (scorer.cards.get("c1").to_bytes(), scorer.standings.get("c1").to_bytes(),
                                scorer.merchants.get("m1").to_bytes())
    again = scorer.score(auth("t1", "c1", T0 + 5, 999.0), {"merchant_count_1d": 42.0})  # same tx_id, other payload
    assert again.duplicate and again.score_record() == first.score_record()
    assert again.alert_record() == first.alert_record()
    assert scorer.cards.get("c1").to_bytes() == card
    assert scorer.standings.get("c1").to_bytes() == standing  # the open alert is not re-opened or moved
    assert scorer.merchants.get("m1").to_bytes() == merchant
    assert scorer.counts["duplicate"] == 1 and scorer.rule_stats.snapshot()["R-1"]["overall"]["hits"] == 1


def test_a_duplicate_is_counted_once_in_every_card_and_merchant_window() -> None:
    scorer, reference = FraudScorer(settings()), FraudScorer(settings())  # the reference never sees the redelivery
    a = auth("t1", "c1", T0, 80.0, channel="ecom")
    first = scorer.features(a)
    reference.features(a)
    assert (first.duplicate, first.late) == (False, False)
    card = scorer.cards.get("c1").to_bytes()
    again = scorer.features(auth("t1", "c1", T0 + 5, 999.0))  # same tx_id, other payload
    assert (again.duplicate, again.late) == (True, False)
    assert scorer.cards.get("c1").to_bytes() == card
    b = auth("t2", "c1", T0 + MIN, 20.0, merchant="m2")
    nxt = scorer.features(b)
    assert not nxt.duplicate
    for w in ("1h", "24h", "7d", "30d"):
        assert (nxt.features[f"card_count_{w}"], nxt.features[f"card_amount_sum_{w}"]) == (2.0, 100.0), w
    assert nxt.features["card_cnp_share_24h"] == 0.5
    assert nxt.features == reference.features(b).features
    assert scorer.cards.get("c1").to_bytes() == reference.cards.get("c1").to_bytes()
    # Still remembered after other authorizations on the card: a redelivery a little later is caught too.
    assert scorer.features(a).duplicate
    assert scorer.cards.get("c1").to_bytes() == reference.cards.get("c1").to_bytes()


def test_a_redelivery_through_all_three_stages_changes_no_aggregate() -> None:
    scorer, reference = FraudScorer(settings()), FraudScorer(settings())  # the reference never sees the redelivery
    a = auth("t1", "c1", T0, 300.0, channel="ecom")
    first = scorer.process(a)
    reference.process(a)
    for i, card in enumerate(("c1", "c2")):  # the card and the merchant move on
        for r in (scorer, reference):
            r.process(auth(f"n{i}", card, T0 + (i + 1) * 1000, 40.0))
    card, standing, merchant = (scorer.cards.get("c1").to_bytes(), scorer.standings.get("c1").to_bytes(),
                                scorer.merchants.get("m1").to_bytes())
    again = scorer.process(a)
    assert again.duplicate and not first.duplicate
    assert again.score_record() == first.score_record()
    assert (again.score, again.features, again.decision) == (first.score, first.features, first.decision)
    assert scorer.cards.get("c1").to_bytes() == card
    assert scorer.standings.get("c1").to_bytes() == standing
    assert scorer.merchants.get("m1").to_bytes() == merchant
    assert scorer.counts["duplicate"] == 1 and len(scorer.pending) == len(reference.pending) == 3
    nxt = scorer.process(auth("t2", "c1", T0 + MIN, 10.0))
    assert nxt.score_record() == reference.process(auth("t2", "c1", T0 + MIN, 10.0)).score_record()
    assert (nxt.features["card_count_1h"], nxt.features["merchant_count_1d"]) == (3.0, 4.0)


# --- labels ------------------------------------------------------------------------------


def test_an_early_label_is_applied_when_its_authorization_arrives() -> None:
    scorer = FraudScorer(settings())
    reference = FraudScorer(settings())  # the same authorizations, no label
    out = scorer.label(label("c1", T0 + HOUR, "t1"))
    assert out.status == "early" and out.examples == []
    assert "t1" in scorer.early_labels and scorer.model.examples == 0
    scored = scorer.process(auth("t1", "c1", T0))
    assert scored.score_record() == reference.process(auth("t1", "c1", T0)).score_record()  # scored as if unknown
    assert scored.label_outcome is not None and scored.label_outcome.status == "learned"
    assert [e.tx_id for e in scored.label_outcome.examples] == ["t1"]
    assert scored.label_outcome.delay_ms == HOUR
    assert scorer.model.examples == 1 and not scorer.early_labels
    assert snapshot(scorer, "t1")["l"] is True
    nxt = scorer.process(auth("t2", "c2", T0 + MIN))
    assert nxt.features["merchant_fraud_rate_1d"] == 0.5  # the merchant heard about t1


def test_a_repeated_label_is_learned_once() -> None:
    scorer = FraudScorer(settings())
    scorer.process(auth("t1", "c1", T0))
    assert scorer.label(label("c1", T0 + HOUR, "t1")).status == "learned"
    examples, merchant = scorer.model.examples, scorer.merchants.get("m1").to_bytes()
    again = scorer.label(label("c1", T0 + 2 * HOUR, "t1", source="analyst"))
    assert again.status == "duplicate" and again.examples == [] and again.merchant_updates == []
    assert scorer.model.examples == examples == 1
    assert scorer.merchants.get("m1").to_bytes() == merchant


def test_a_contradiction_is_learned_again_and_the_merchant_reverts() -> None:
    scorer = FraudScorer(settings(legit_sample_rate=1.0))
    scorer.process(auth("t1", "c1", T0))
    scorer.label(label("c1", T0 + HOUR, "t1"))
    out = scorer.label(label("c1", T0 + 2 * HOUR, "t1", fraud=False, source="analyst"))
    assert out.status == "contradiction"
    assert [(e.tx_id, e.is_fraud) for e in out.examples] == [("t1", False)]
    assert [m.fraud_delta for m in out.merchant_updates] == [-1]
    assert scorer.model.examples == 2
    assert snapshot(scorer, "t1")["l"] is False
    assert scorer.process(auth("t2", "c2", T0 + MIN)).features["merchant_fraud_rate_1d"] == 0.0
    back = scorer.label(label("c1", T0 + 3 * HOUR, "t1"))
    assert back.status == "contradiction" and [m.fraud_delta for m in back.merchant_updates] == [1]
    assert scorer.process(auth("t3", "c3", T0 + 2 * MIN)).features["merchant_fraud_rate_1d"] == pytest.approx(1 / 3)


def test_a_legitimate_label_changes_no_fraud_count() -> None:
    scorer = FraudScorer(settings(legit_sample_rate=0.0))
    scorer.process(auth("t1", "c1", T0))
    scorer.process(auth("t2", "c2", T0))
    out = scorer.label(label("c1", T0 + HOUR, "t1", fraud=False, source="customer_report"))
    assert out.status == "learned" and out.examples == [] and out.merchant_updates == []  # subsampled away
    assert not scorer.standings.get("c1").compromised
    # An analyst's "legitimate" (a false alarm reviewed) is never subsampled: the model learns from its mistakes.
    out = scorer.label(label("c2", T0 + HOUR, "t2", fraud=False, source="analyst"))
    assert [(e.tx_id, e.is_fraud, e.source) for e in out.examples] == [("t2", False, "analyst")] and not out.merchant_updates


def test_an_unknown_transaction_is_counted_after_maturity() -> None:
    scorer = FraudScorer(settings(maturity_days=2.0))
    assert scorer.label(label("c9", T0, "ghost")).status == "early"
    scorer.mature(T0 + 2 * DAY - 1)
    assert scorer.counts["unmatched_labels"] == 0 and "ghost" in scorer.early_labels
    scorer.mature(T0 + 2 * DAY)
    assert scorer.counts["unmatched_labels"] == 1 and not scorer.early_labels
    late_auth = scorer.process(auth("ghost", "c9", T0 + 2 * DAY + 1))
    assert late_auth.label_outcome is None and scorer.model.examples == 0


def test_unlabelled_is_learned_as_legitimate_after_the_feedback_delay_and_a_chargeback_corrects_it() -> None:
    """Learning does not wait 61 days: two days on, no label means legitimate for now; the chargeback 30 days later
    is learned as fraud, and maturity then learns nothing more."""
    scorer = FraudScorer(settings(maturity_days=61.0, feedback_delay_days=2.0, legit_sample_rate=1.0))
    scorer.process(auth("t1", "c1", T0))
    scorer.process(auth("t2", "c2", T0 + MIN))
    assert scorer.mature(T0 + 2 * DAY - 1) == []
    early = scorer.mature(T0 + 2 * DAY + MIN)
    assert [(e.tx_id, e.is_fraud, e.source) for e in early] == [("t1", False, "provisional"), ("t2", False, "provisional")]
    assert scorer.model.examples == 2 and scorer.counts["provisional"] == 2 and "t1" in scorer.snapshots
    assert scorer.mature(T0 + 20 * DAY) == []  # nothing is learned twice
    out = scorer.label(label("c1", T0 + 30 * DAY, "t1"))
    assert out.status == "learned" and [(e.tx_id, e.is_fraud) for e in out.examples] == [("t1", True)]
    assert scorer.counts["corrected"] == 1 and scorer.standings.get("c1").compromised
    # A customer's "legitimate" on t2, already learned as legitimate for now, teaches nothing new.
    assert scorer.label(label("c2", T0 + 31 * DAY, "t2", fraud=False, source="customer_report")).examples == []
    assert scorer.mature(T0 + 61 * DAY + MIN) == [] and scorer.counts["matured"] == 2 and not scorer.snapshots
    assert scorer.model.examples == 3


class CountingSnapshots(dict):
    """Snapshots that count their writes: each is a changelog record in the worker."""

    writes = 0

    def __setitem__(self, key, value) -> None:
        self.writes += 1
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self.writes += 1
        super().__delitem__(key)


def test_the_feedback_delay_passing_rewrites_no_snapshot() -> None:
    """Whether an authorization was learned as legitimate for now is where the maturity queue stands, not a flag
    written into its snapshot: a snapshot is written when scored and deleted at maturity, nothing in between."""
    snapshots = CountingSnapshots()
    scorer = FraudScorer(settings(maturity_days=61.0, feedback_delay_days=2.0, legit_sample_rate=1.0), snapshots=snapshots)
    for i in range(20):
        scorer.process(auth(f"t{i}", f"c{i}", T0 + i * MIN))
    assert snapshots.writes == 20
    assert len(scorer.mature(T0 + 3 * DAY)) == 20 and snapshots.writes == 20
    assert not any(snap.provisional for snap in snapshots.values()) and scorer.pending.learned(T0, "t0")
    assert scorer.label(label("c3", T0 + 4 * DAY, "t3")).examples[0].is_fraud and scorer.counts["corrected"] == 1
    assert scorer.mature(T0 + 62 * DAY) == [] and snapshots.writes == 20 + 1 + 20 and not snapshots  # the label, maturity


def test_an_authorization_scored_after_its_feedback_delay_takes_its_early_label_first() -> None:
    """Scored late (a replay, a lagging partition), with its label already waiting: the label is learned, as for an
    authorization not yet learned for now, and the passing of time then adds nothing."""
    scorer = FraudScorer(settings(maturity_days=61.0, feedback_delay_days=2.0, legit_sample_rate=1.0))
    scorer.process(auth("t1", "c1", T0 + 5 * DAY))
    assert [e.tx_id for e in scorer.mature(T0 + 5 * DAY)] == []
    assert scorer.label(label("c2", T0 + 5 * DAY, "t2", fraud=False)).status == "early"
    late = scorer.process(auth("t2", "c2", T0))  # behind where learning stands (T0 + 3 days)
    assert late.label_outcome is not None and [(e.tx_id, e.is_fraud) for e in late.label_outcome.examples] == [("t2", False)]
    assert scorer.mature(T0 + 5 * DAY) == [] and scorer.pending.learned(T0, "t2")


def test_with_the_feedback_delay_at_maturity_legitimate_is_learned_once_at_maturity() -> None:
    scorer = FraudScorer(settings(maturity_days=3.0, feedback_delay_days=7.0, legit_sample_rate=1.0))
    scorer.process(auth("t1", "c1", T0))
    assert scorer.mature(T0 + 3 * DAY - 1) == []
    assert [(e.tx_id, e.source) for e in scorer.mature(T0 + 3 * DAY)] == [("t1", "maturity")]
    assert not scorer.snapshots and scorer.counts == {**scorer.counts, "matured": 1, "provisional": 0}


def test_a_card_level_label_labels_the_card_since_t_and_blocks_it() -> None:
    scorer = FraudScorer(settings())
    for tx, ts in (("t1", T0 - 2 * DAY), ("t2", T0 - DAY), ("t3", T0), ("t4", T0 + HOUR)):
        scorer.process(auth(tx, "c1", ts))
    scorer.process(auth("other", "c2", T0 + HOUR))
    out = scorer.label(label("c1", T0 + 2 * HOUR, since=T0, source="customer_report"))
    assert out.status == "card_level"
    assert [(e.tx_id, e.is_fraud, e.source) for e in out.examples] == [("t3", True, "customer_report"), ("t4", True, "customer_report")]
    # The first authorization since T is the reported one: full weight, counted at its merchant;
    # the later ones may be the customer's own: a lower weight and no merchant fraud count.
    assert [e.weight for e in out.examples] == [1.0, scorer.settings.card_report_weight]
    assert [m.fraud_delta for m in out.merchant_updates] == [1]
    assert [snapshot(scorer, t)["l"] for t in ("t1", "t2", "t3", "t4", "other")] == [None, None, True, True, None]
    assert scorer.standings.get("c1").compromised_since == T0 + 2 * HOUR
    blocked = scorer.process(auth("t5", "c1", T0 + 3 * HOUR, 5.0))
    assert (blocked.decision.action, blocked.decision.alert_id) == ("block", "alert-t5")
    assert "card has confirmed fraud and is not yet reissued" in blocked.reasons
    assert scorer.process(auth("t6", "c2", T0 + 3 * HOUR, 5.0)).decision.action == "none"
    # A second report for the same episode does not learn t3 and t4 again.
    again = scorer.label(label("c1", T0 + 5 * HOUR, since=T0, source="customer_report"))
    relearned = [e.tx_id for e in again.examples]
    assert "t3" not in relearned and "t4" not in relearned
    assert scorer.model.examples == 2 + len(relearned)
    # Reissued: the new card is scored normally again.
    scorer.reissue(CardReissue("c1", T0 + 6 * HOUR))
    assert not scorer.standings.get("c1").compromised
    assert scorer.process(auth("t7", "c1", T0 + 7 * HOUR, 5.0)).decision.action == "none"


def test_a_transaction_label_blocks_the_card_until_reissue() -> None:
    scorer = FraudScorer(settings())
    scorer.process(auth("t1", "c1", T0))
    scorer.label(label("c1", T0 + HOUR, "t1", source="analyst"))
    assert scorer.process(auth("t2", "c1", T0 + 2 * HOUR, 1.0)).decision.action == "block"
    scorer.reissue(CardReissue("c1", T0 + 3 * HOUR))
    standing = scorer.standings.get("c1")
    assert (standing.compromised, standing.open_alert_id) == (False, None)
    assert scorer.process(auth("t3", "c1", T0 + 4 * HOUR, 1.0)).decision.action == "none"


def test_eviction_forgets_idle_cards_but_keeps_a_blocked_standing() -> None:
    """A blocked card stays blocked however long it is idle: only a reissue unblocks it."""
    scorer = FraudScorer(settings(grace_ms=300_000))
    scorer.process(auth("t1", "c1", T0, merchant="m1"))
    scorer.process(auth("t2", "c2", T0, merchant="m2"))
    scorer.label(label("c1", T0 + HOUR, "t1", source="analyst"))
    now = T0 + CARD_IDLE_MS + 300_000 + 1
    # Both cards' features, c2's standing, both merchants; c1's standing is kept.
    assert scorer.evict_idle(now) == 5
    assert set(scorer.cards.live) == set() and set(scorer.standings.live) == {"c1"} and set(scorer.merchants.live) == set()
    blocked = scorer.process(auth("t3", "c1", now, 5.0))
    assert blocked.decision.action == "block"
    assert (blocked.features["card_count_30d"], blocked.features["card_first_at_merchant"]) == (1.0, 1.0)  # features start again
    assert scorer.process(auth("t4", "c2", now, 5.0)).decision.action == "none"


def test_card_level_labels_skip_matured_transactions() -> None:
    scorer = FraudScorer(settings(maturity_days=1.0, legit_sample_rate=0.0))
    scorer.process(auth("t1", "c1", T0))
    scorer.process(auth("t2", "c1", T0 + 2 * DAY))
    scorer.mature(T0 + 2 * DAY)  # t1 matured as legitimate, its snapshot is gone
    out = scorer.label(label("c1", T0 + 2 * DAY + HOUR, since=T0, source="customer_report"))
    assert [e.tx_id for e in out.examples] == ["t2"]
    # The first still held is the reported one, as it is in an index rebuilt from the snapshots (which lacks t1).
    assert [e.weight for e in out.examples] == [1.0] and [m.fraud_delta for m in out.merchant_updates] == [1]


# --- maturity ----------------------------------------------------------------------------


def test_maturity_learns_unlabelled_authorizations_as_legitimate() -> None:
    scorer = FraudScorer(settings(maturity_days=1.0, legit_sample_rate=1.0))
    for i in range(10):
        scorer.process(auth(f"t{i}", f"c{i % 3}", T0 + i * MIN))
    scorer.label(label("c0", T0 + HOUR, "t3"))
    assert scorer.mature(T0 + DAY - 1) == [] and scorer.counts["matured"] == 0
    learned = scorer.mature(T0 + DAY + 5 * MIN)  # t0..t5 are a day old
    assert [(e.tx_id, e.is_fraud, e.source, e.ts) for e in learned] == [
        (f"t{i}", False, "maturity", T0 + DAY + 5 * MIN) for i in (0, 1, 2, 4, 5)]
    assert scorer.counts["matured"] == 6
    assert scorer.model.examples == 1 + 5
    assert all(f"t{i}" not in scorer.snapshots for i in range(6))
    assert all(f"t{i}" in scorer.snapshots for i in range(6, 10))


def test_maturity_subsamples_legitimate_examples_deterministically() -> None:
    scorer = FraudScorer(settings(maturity_days=1.0, legit_sample_rate=0.3))
    ids = [f"tx-{i:04d}" for i in range(300)]
    for i, tx in enumerate(ids):
        scorer.process(auth(tx, f"c{i % 20}", T0 + i * 1000))
    learned = scorer.mature(T0 + 2 * DAY)
    assert [e.tx_id for e in learned] == [t for t in ids if keep_legitimate(t, 0.3)]
    assert 60 < len(learned) < 120
    assert scorer.counts["matured"] == 300 and not scorer.snapshots


def test_maturity_learns_the_features_as_scored() -> None:
    scorer = FraudScorer(settings(maturity_days=1.0, legit_sample_rate=1.0))
    first = scorer.process(auth("t1", "c1", T0, 20.0))
    for i in range(5):
        scorer.process(auth(f"n{i}", "c1", T0 + (i + 1) * MIN, 900.0))
    (example, *_) = scorer.mature(T0 + DAY)
    assert example.tx_id == "t1" and dict(example.features) == first.features


# --- no leakage ----------------------------------------------------------------------------


def test_a_label_never_changes_what_was_scored() -> None:
    scorer = FraudScorer(settings(legit_sample_rate=1.0))
    first = scorer.process(auth("t1", "c1", T0, 500.0))
    record = first.score_record()
    for i in range(3):  # the card and the merchant move on
        scorer.process(auth(f"n{i}", "c1", T0 + (i + 1) * MIN, 40.0))
    out = scorer.label(label("c1", T0 + HOUR, "t1"))
    # The example is the snapshot as scored, not features recomputed now (which would count n0..n2).
    assert dict(out.examples[0].features) == first.features
    assert out.examples[0].features["card_count_1h"] == 1.0
    assert out.score == first.score
    snap = snapshot(scorer, "t1")
    assert (snap["s"], snap["v"], snap["d"]) == (first.score, first.model_version, first.decision.as_dict())
    # A redelivery after the label answers with the original score and model version.
    again = scorer.process(auth("t1", "c1", T0, 500.0))
    assert again.score_record() == record
    assert again.model_version == "logistic-0" and scorer.model.version == "logistic-1"


# --- late authorizations -------------------------------------------------------------------


def test_a_late_authorization_is_scored_and_counted_but_not_aggregated() -> None:
    scorer = FraudScorer(settings(grace_ms=300_000))
    scorer.process(auth("t1", "c1", T0 + HOUR))
    card, merchant = scorer.cards.get("c1").to_bytes(), scorer.merchants.get("m1").to_bytes()
    late = scorer.process(auth("t0", "c1", T0))
    assert late.late and late.score_record()["late"] is True
    assert scorer.counts["late"] == 1
    assert "late" not in late.features
    # Its windows are untouched; only its tx_id is remembered, so that a redelivery of it is known as one.
    expected = CardState.from_bytes(card)
    expected.note_tx("t0")
    assert scorer.cards.get("c1").to_bytes() == expected.to_bytes()
    assert scorer.merchants.get("m1").to_bytes() == merchant
    # As of its own time: t1 (an hour later) is outside its 24-hour window, inside its day bucket.
    assert (late.features["card_count_24h"], late.features["card_count_30d"]) == (1.0, 2.0)


def test_the_stores_given_are_the_stores_used_even_when_empty() -> None:
    """An empty store has a length of 0: `store or default` would silently swap a worker's tables for dicts."""
    from fraudstream.core.decision import CardStanding
    from fraudstream.core.features.card import CardState
    from fraudstream.core.features.merchant import MerchantState
    from fraudstream.core.rules import RuleSet
    from fraudstream.core.state import StateStore

    durable: dict = {}
    cards = StateStore(CardState, CardState.from_bytes, durable)
    standings = StateStore(CardStanding, CardStanding.from_bytes)
    merchants = StateStore(MerchantState, MerchantState.from_bytes)
    rules = RuleSet()
    scorer = FraudScorer(settings(), cards=cards, standings=standings, merchants=merchants, rules=rules)
    assert scorer.cards is cards and scorer.standings is standings and scorer.merchants is merchants and scorer.rules is rules
    scorer.process(Authorization("t1", "c1", "m1", 10.0, 1_700_000_000_000))
    scorer.cards.flush()
    assert "c1" in durable


def test_a_chargeback_for_a_replaced_card_does_not_block_the_new_one() -> None:
    """Fraud confirmed, card reissued two days later; weeks after, the chargeback of an authorization made before the
    reissue arrives. It was the old card's: the new card's next authorization is not blocked (it was, before)."""
    day = 86_400_000
    scorer = FraudScorer(settings())
    t0 = 1_700_000_000_000
    scorer.process(auth("old-1", "c1", t0))
    scorer.process(auth("old-2", "c1", t0 + 60_000))
    scorer.label(label("c1", t0 + day, "old-1", source="analyst"))
    assert scorer.process(auth("blocked", "c1", t0 + day + 60_000)).decision.action == "block"
    scorer.reissue(CardReissue("c1", t0 + 3 * day))
    assert scorer.process(auth("new-1", "c1", t0 + 4 * day)).decision.action != "block"
    scorer.label(label("c1", t0 + 30 * day, "old-2"))  # the chargeback of the old card's second fraud
    assert scorer.process(auth("new-2", "c1", t0 + 30 * day + 60_000)).decision.action != "block"
    scorer.label(label("c1", t0 + 31 * day, "new-2"))  # fraud on the new card: that one blocks
    assert scorer.process(auth("new-3", "c1", t0 + 31 * day + 60_000)).decision.action == "block"


def test_a_blank_standing_is_not_stored_and_an_unchanged_one_not_again() -> None:
    """Each stored standing is a changelog record in the worker: most cards' decide as a new one does."""
    from fraudstream.core.decision import CardStanding
    from fraudstream.core.scorer import blank_standing
    from fraudstream.core.state import StateStore

    durable: dict[str, bytes] = {}
    standings = StateStore(CardStanding, CardStanding.from_bytes, durable, blank=blank_standing)
    scorer = FraudScorer(settings(), standings=standings)
    scorer.process(auth("t1", "c1", T0))
    assert standings.flush() == 0 and durable == {}  # read back, it is a new standing: the same decisions
    scorer.label(label("c1", T0 + HOUR, "t1", source="analyst"))
    assert standings.flush() == 1 and StateStore(CardStanding, CardStanding.from_bytes, durable).get("c1").compromised
    standings.mark("c1")
    assert standings.flush() == 0  # the same bytes as stored
    assert scorer.process(auth("t2", "c1", T0 + 2 * HOUR)).decision.action == "block"
    assert standings.flush() == 1  # its clock moved


def test_process_gives_every_feature_in_the_catalogues_order() -> None:
    """process() fills one dict keyed ahead, card's then merchant's, as the worker's one pass does (`features`)."""
    whole, staged = FraudScorer(settings()), FraudScorer(settings())
    events = [auth(f"t{i}", f"c{i % 3}", T0 + i * MIN, 20.0 + i, merchant=f"m{i % 2}", channel=("pos", "ecom", "atm")[i % 3])
              for i in range(12)]
    events.append(Authorization("t-usd", "c1", "m1", 12.5, T0 + HOUR, currency="USD", mcc="5732"))
    for a in events:
        got = whole.process(a).features
        want = staged.features(a).features
        assert got == want and list(got) == list(want), a.tx_id
        assert "late" not in got and got["mcc_electronics"] == (1.0 if a.mcc == "5732" else 0.0)


def test_the_features_written_in_place_are_the_catalogue_s() -> None:
    """The card's and merchant's key orders (`CARD_FEATURES`, `MERCHANT_FEATURES`) name the catalogue's features, no
    more and no fewer, with the MCC groups: the two listings cannot drift apart."""
    from fraudstream.core.features.card import CARD_FEATURES
    from fraudstream.core.features.catalogue import FEATURE_NAMES
    from fraudstream.core.features.mcc import MCC_GROUPS
    from fraudstream.core.features.merchant import MERCHANT_FEATURES

    written = [*CARD_FEATURES, *MCC_GROUPS, *MERCHANT_FEATURES]
    assert len(written) == len(set(written)) and set(written) == set(FEATURE_NAMES)
