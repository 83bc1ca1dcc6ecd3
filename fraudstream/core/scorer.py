"""Authorization → features → score → rules → decision, and labels → examples.

This is the whole of fraudstream's logic, with no Kafka in it. The worker
calls :meth:`FraudScorer.enrich_merchant` on the merchant's partition and
:meth:`FraudScorer.score` on the card's; the backtest calls
:meth:`FraudScorer.process`, which does both. Same input, same output.
"""

from __future__ import annotations

from collections import deque
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from fraudstream.config import Settings
from fraudstream.contracts import Authorization, CardReissue, Label, decode, encode
from fraudstream.core.decision import CardStanding, Decision, DecisionPolicy
from fraudstream.core.features.card import CARD_FEATURES, CARD_IDLE_MS, DAY_MS, NO_TIME, CardState, card_features
from fraudstream.core.features.mcc import MCC_GROUPS, mcc_group
from fraudstream.core.features.merchant import (
    MERCHANT_FEATURES,
    MERCHANT_IDLE_MS,
    MerchantState,
    merchant_features,
    merchant_label,
)
from fraudstream.core.features.money import Money
from fraudstream.core.features.partials import MerchantPartials
from fraudstream.core.maturity import MaturityQueue, MemoryMaturityQueue, maturity_delays
from fraudstream.core.model.online import FEEDBACK_SOURCES, OnlineModel, TrainingExample, keep_legitimate
from fraudstream.core.reasons import say
from fraudstream.core.rules import RuleSet, RuleStats
from fraudstream.core.snapshot import Snapshot
from fraudstream.core.state import CardTransactions, StateStore

__all__ = ["FraudScorer", "Scored", "CardStep", "LabelOutcome", "MerchantLabel", "DAY_MS", "blank_standing"]

_EVENT_FIELDS = ("amount", "currency", "mcc", "country", "channel")
#: An authorization's features, keyed in the order their values come before any is known: the card's (with its
#: "late", removed once read), the MCC groups', then (in `process`) the merchant's. Each authorization's dict is a
#: copy, its values written in place: one allocation, where growing it key by key took three and a rehash.
_CARD_KEYS = dict.fromkeys((*CARD_FEATURES, "late", *MCC_GROUPS), 0.0)
_ALL_KEYS = dict.fromkeys((*_CARD_KEYS, *MERCHANT_FEATURES), 0.0)


@dataclass(slots=True)
class Scored:
    """One scored authorization: what goes to ``fraud.scores`` and maybe ``fraud.alerts``."""

    auth: Authorization
    features: dict[str, float]
    score: float
    model_version: str
    decision: Decision
    reasons: list[str]
    late: bool = False
    duplicate: bool = False
    #: Every rule that matched, shadow ones included (they raise nothing but are measured).
    rule_hits: tuple[str, ...] = ()
    #: A label that arrived before its authorization was scored, applied now.
    label_outcome: LabelOutcome | None = None

    @property
    def alerted(self) -> bool:
        return self.decision.action != "none"

    def score_record(self) -> dict[str, Any]:
        rec = self.auth.as_dict()
        rec.update(features=self.features, score=self.score, model_version=self.model_version,
                   decision=self.decision.as_dict(), rule_hits=list(self.rule_hits), late=self.late)
        return rec

    def alert_record(self) -> dict[str, Any]:
        a = self.auth
        return {"alert_id": self.decision.alert_id, "action": self.decision.action, "tx_id": a.tx_id, "card_id": a.card_id,
                "merchant_id": a.merchant_id, "amount": a.amount, "currency": a.currency, "ts": a.ts, "score": self.score,
                "threshold": self.decision.threshold, "reasons": self.reasons, "rules": list(self.decision.rules),
                "model_version": self.model_version}


@dataclass(slots=True)
class CardStep:
    """An authorization's features, and whether it was late or a redelivery (the card had its tx_id already)."""

    features: dict[str, float]
    late: bool
    duplicate: bool


@dataclass(frozen=True, slots=True)
class MerchantLabel:
    """A label's news for the merchant of the labelled authorization."""

    merchant_id: str
    card_id: str
    tx_ts: int
    fraud_delta: int  # +1 newly confirmed fraud, -1 a fraud label overturned
    ts: int

    def as_dict(self) -> dict[str, Any]:
        return {"merchant_id": self.merchant_id, "card_id": self.card_id, "tx_ts": self.tx_ts,
                "is_fraud": self.fraud_delta > 0, "fraud_delta": self.fraud_delta, "ts": self.ts}


@dataclass(slots=True)
class LabelOutcome:
    status: str  # learned, duplicate, contradiction, unknown_tx, card_level
    examples: list[TrainingExample] = field(default_factory=list)
    merchant_updates: list[MerchantLabel] = field(default_factory=list)
    delay_ms: int | None = None
    score: float | None = None  # what the labelled authorization scored, for quality metrics
    alerted: bool = False
    # What a fraud center's director asks, when a fraud is first confirmed (in event time; see `_count_fraud`):
    #: a card newly confirmed compromised: found first by the "model" (an alert), a "label" (a block), or "missed"
    found: str | None = None
    #: its first confirmed fraudulent authorization to its first alert or block (None when missed)
    detection_ms: int | None = None
    #: the fraudulent amount newly confirmed, on a card alerted or blocked by then, and not
    amount_prevented: float = 0.0
    amount_missed: float = 0.0


class FraudScorer:
    """The pure core. ``snapshots`` and ``card_index`` may be faust tables."""

    def __init__(
        self,
        settings: Settings,
        model: OnlineModel | None = None,
        rules: RuleSet | None = None,
        cards: StateStore[CardState] | None = None,
        standings: StateStore[CardStanding] | None = None,
        merchants: StateStore[MerchantState] | None = None,
        snapshots: MutableMapping[str, Snapshot] | None = None,
        card_index: MutableMapping[str, bytes] | None = None,
        early_labels: MutableMapping[str, bytes] | None = None,
        pending: MaturityQueue | None = None,
        partitions: int | None = None,
        learn_inline: bool = True,
        explain: bool = True,
        merchant_partials: MerchantPartials | None = None,
    ) -> None:
        self.settings = settings
        # Amounts in features are in the base currency; money.unknown counts authorizations in a currency it lacks.
        self.money = Money(settings.base_currency)
        self.model = OnlineModel(settings.model, settings.label_streams) if model is None else model
        self.rules = RuleSet() if rules is None else rules
        # `is None`, not `or`: an empty store is falsy (it has a length), and must still be used.
        self.cards = StateStore(CardState, CardState.from_bytes) if cards is None else cards
        self.standings = StateStore(CardStanding, CardStanding.from_bytes, blank=blank_standing) if standings is None else standings
        self.merchants = StateStore(MerchantState, MerchantState.from_bytes) if merchants is None else merchants
        # A merchant's features from its card partitions' partials (scored in the card's partition, no repartition;
        # `fraudstream.core.features.partials`), or (None) exact, from every authorization at the merchant.
        self.merchant_partials = merchant_partials
        # The records themselves here; the worker's table holds them as bytes (`EncodedSnapshots`).
        self.snapshots: MutableMapping[str, Snapshot] = {} if snapshots is None else snapshots
        # Learning does not wait for maturity: an authorization unlabelled `feedback_ms` is learned as legitimate
        # for now (see `mature`). Never after maturity, when its snapshot is gone.
        self.feedback_ms, self.maturity_ms = maturity_delays(settings)
        self.card_index = CardTransactions(card_index, self.maturity_ms)
        # Labels that overtook their authorization (a replay, or a lagging stage) wait here.
        self.early_labels: MutableMapping[str, bytes] = {} if early_labels is None else early_labels
        self.early_queue: deque[tuple[int, str]] = deque()
        self.partitions = partitions or settings.partitions
        self.learn_inline = learn_inline
        self.explain = explain  # reasons cost an occlusion pass per alert; a backtest has no reader for them
        self.rule_stats = RuleStats()
        self.policies: dict[int, DecisionPolicy] = {}
        self.pending: MaturityQueue = MemoryMaturityQueue(self.feedback_ms, self.maturity_ms) if pending is None else pending
        self.counts = {"late": 0, "duplicate": 0, "matured": 0, "unmatched_labels": 0, "provisional": 0, "corrected": 0}

    # --- scoring ------------------------------------------------------------
    def policy(self, partition: int) -> DecisionPolicy:
        p = self.policies.get(partition)
        if p is None:
            s = self.settings
            # Each partition gets its share of the budget, so the decisions do not
            # depend on how many workers share the partitions.
            p = DecisionPolicy(s.alert_budget_per_day / self.partitions, s.threshold_floor, s.threshold_ceiling, s.cooldown_ms,
                               warmup=max(100, 1000 // self.partitions))
            self.policies[partition] = p
        return p

    def features(self, auth: Authorization, merchant_seen: bool = False, partition: int | None = None) -> CardStep:
        """An authorization's card and merchant features, in one pass where the card's authorizations arrive in
        order (its ``partition``, when the caller knows it). ``merchant_seen``: the merchant's state includes it
        already (a batch read again), so it is read, not changed. The amount is converted to the base currency
        once, for both halves."""
        feats = _ALL_KEYS.copy()
        late, duplicate = self._both_halves(auth, feats, merchant_seen, partition)
        return CardStep(feats, late, duplicate)

    def _both_halves(self, auth: Authorization, feats: dict[str, float], merchant_seen: bool = False,
                     partition: int | None = None) -> tuple[bool, bool]:
        """:meth:`features`, written into ``feats`` (keyed as ``_ALL_KEYS``); late and duplicate."""
        late, duplicate = self._card_half(auth, feats)
        self.enrich_merchant(auth, duplicate or merchant_seen, into=feats, base_amount=feats["amount"], partition=partition)
        return late, duplicate

    def _card_half(self, auth: Authorization, feats: dict[str, float]) -> tuple[bool, bool]:
        """The card's features, written into ``feats`` (keyed as ``_CARD_KEYS``); late and duplicate."""
        card = self.cards.get(auth.card_id)
        # Noted at once when new (the features do not read the card's recent tx_ids): one hash of the tx_id.
        duplicate = not card.note_if_new(auth.tx_id)
        card_features(card, auth, self.settings.grace_ms, self.settings.timezone_offset_h, readonly=duplicate,
                      money=self.money, into=feats)
        late = feats.pop("late") == 1.0
        # The MCC groups' features (mcc_features): each 0.0 as keyed, the authorization's own group, if any, 1.0.
        group = mcc_group(auth.mcc)
        if group is not None:
            feats[group] = 1.0
        if not duplicate:
            self.cards.mark(auth.card_id)
        return late, duplicate

    def enrich_merchant(self, auth: Authorization, duplicate: bool = False, into: dict[str, float] | None = None,
                        base_amount: float | None = None, partition: int | None = None) -> dict[str, float]:
        """The merchant half: a dict of its own, or added to ``into``. ``base_amount``: the amount in the base
        currency, when the caller has it (the card's "amount" feature); ``partition``: the card's, when the caller
        has it (with merchant partials)."""
        book = self.merchant_partials
        if book is None:
            state = self.merchants.get(auth.merchant_id)
            feats = merchant_features(state, auth, self.settings.grace_ms, readonly=duplicate, money=self.money,
                                      into=into, base_amount=base_amount)
            if not duplicate:
                self.merchants.mark(auth.merchant_id)
            return feats
        merchant_id = auth.merchant_id
        if partition is None:
            partition = book.card_partition(auth.card_id)
        if book.replicated:
            # A worker: the partition's own state is its replica, taken here as every other worker takes it from
            # the partition's merchant events (`MerchantPartials.receive_authorization`).
            if not duplicate:
                book.idle.discard(partition)
                book.receive_progress(partition, auth.ts)
            state = book.replica(partition, merchant_id) if duplicate else book.writable(partition, merchant_id)
        else:  # the backtest: the partitions' own states in the scorer's store, their versions as event time passes
            book.cross(auth.ts, self.merchants.get)
            key = book.key(partition, merchant_id)
            state = self.merchants.get(key)
            if not duplicate:
                self.merchants.mark(key)
        feats = merchant_features(state, auth, self.settings.grace_ms, readonly=duplicate, money=self.money, into=into,
                                  base_amount=base_amount, others=book.others(partition, merchant_id, book.boundary(auth.ts)))
        if not duplicate:
            book.touch(partition, merchant_id)
        return feats

    def score(self, auth: Authorization, feats: dict[str, float], late: bool = False, partition: int = 0,
              decision_number: int | None = None) -> Scored:
        """Score, rules and decision, where the card's alerts are decided. ``decision_number``: the worker's number
        of this decision in its partition, kept in the snapshot (``Snapshot.decision_number``)."""
        tx_id = auth.tx_id
        seen = self.snapshots.get(tx_id)
        if seen is not None:
            # A redelivered authorization: the same answer again.
            self.counts["duplicate"] += 1
            return Scored(seen.auth, dict(seen.features), seen.score, seen.model_version, seen.decision,
                          seen.reasons, late=seen.late, duplicate=True, rule_hits=seen.rule_hits)
        if late:
            self.counts["late"] += 1
        card_id = auth.card_id
        standing = self.standings.get(card_id)
        model = self.model
        score = model.score(feats, copy=False)  # feats are this authorization's own, kept as they are
        rules = self.rules
        if rules.live:
            outcome = rules.evaluate(_rule_fields(auth, feats))
            if outcome.score_delta:
                score = min(max(score + outcome.score_delta, 0.0), 1.0)
            alert_rules = outcome.alert_rules
            hits = outcome.active_hits + outcome.shadow_hits
        else:
            alert_rules = hits = ()
        policy = self.policies.get(partition) or self.policy(partition)
        decision = policy.decide(standing, tx_id, auth.ts, score, alert_rules)
        self.standings.mark(card_id)
        alerted = decision.action != "none"
        for rule_id in hits:
            # The snapshot keeps the hits until the label: nothing held per transaction here (see RuleStats).
            self.rule_stats.record_hit(rule_id, tx_id, auth.ts, remember=False, alerted=alerted and rule_id in alert_rules)
        reasons = self.reasons(feats, score, decision) if alerted and self.explain else []
        version = model.version
        scored = Scored(auth, feats, score, version, decision, reasons, late, False, hits)
        # The snapshot, kept until the label or maturity; handed out at the feedback delay, then at maturity (`mature`):
        # one entry from scoring to maturity.
        ts = auth.ts
        self.snapshots[tx_id] = Snapshot(auth, feats, score, version, decision, reasons, hits, late,
                                         decision_number=decision_number)
        self.pending.add(ts, tx_id)
        self.card_index.add(card_id, ts, tx_id)
        early = self.early_labels.pop(tx_id, None)
        if early is not None:
            label = Label(**decode(early))
            scored.label_outcome = self._label_tx(tx_id, label.is_fraud, label)
        return scored

    def process(self, auth: Authorization, partition: int = 0) -> Scored:
        """All three stages in one place, for the backtest and tests: the worker's path, without Kafka."""
        feats = _ALL_KEYS.copy()
        late, _duplicate = self._both_halves(auth, feats)  # no `CardStep` made: the backtest's loop
        return self.score(auth, feats, late, partition)

    def reasons(self, feats: dict[str, float], score: float, decision: Decision) -> list[str]:
        """Why, in an operator's words: the model's top contributions, then the rules."""
        out = []
        if decision.action == "block":
            out.append("card has confirmed fraud and is not yet reissued")
        # Every contribution, strongest first: `say` keeps those an analyst can read as reasons.
        out += say(self.model.explain(feats, top=len(feats)), feats, self.model.usual, self.money.base)
        for rule_id in decision.rules:
            rule = self.rules.get(rule_id)
            out.append(f"rule {rule_id}: {rule.description}" if rule is not None else f"rule {rule_id}")
        out.append(f"model score {score:.2f} (alert threshold {decision.threshold:.2f})")
        return out

    # --- labels -------------------------------------------------------------
    def label(self, label: Label) -> LabelOutcome:
        """Join a label with its snapshot; returns what to learn and tell merchants."""
        standing = self.standings.get(label.card_id)
        if label.is_fraud:
            # When the fraud happened: a chargeback for a card already replaced must not block the new one.
            if label.card_level:
                fraud_ts = label.since
            else:
                snap = self.snapshots.get(label.tx_id or "")
                fraud_ts = None if snap is None else snap.auth.ts
            if standing.confirm_fraud(label.ts, fraud_ts):
                self.standings.mark(label.card_id)
        if label.card_level:
            out = LabelOutcome("card_level")
            since = label.since if label.since is not None else NO_TIME
            # The first authorization at or after T is the one the customer reported: a confirmed fraud.
            # The ones after it may be the customer's own: learned as fraud with a lower weight, and
            # not counted in merchants' fraud rates. The first whose snapshot is still held: the index may still
            # list matured ones (the live lists until pruned, never the ones rebuilt from the snapshots).
            first = True
            for _, tx_id in self.card_index.since(label.card_id, since):
                sub = self._label_tx(tx_id, True, label, weight=1.0 if first else self.settings.card_report_weight,
                                     count_at_merchant=first)
                if sub.status == "unknown_tx":
                    continue
                first = False
                out.examples += sub.examples
                out.merchant_updates += sub.merchant_updates
                if sub.found is not None:
                    out.found, out.detection_ms = sub.found, sub.detection_ms
                out.amount_prevented += sub.amount_prevented
                out.amount_missed += sub.amount_missed
            return out
        return self._label_tx(label.tx_id or "", label.is_fraud, label)

    def _label_tx(self, tx_id: str, is_fraud: bool, label: Label, weight: float = 1.0, count_at_merchant: bool = True) -> LabelOutcome:
        snap = self.snapshots.get(tx_id)
        if snap is None:
            if label.card_level:
                return LabelOutcome("unknown_tx")
            self.early_labels[tx_id] = encode(label, keep=True)
            self.early_queue.append((label.ts, tx_id))
            return LabelOutcome("early")
        a = snap.auth
        previous = snap.label
        if previous is is_fraud:
            return LabelOutcome("duplicate")
        status = "learned" if previous is None else "contradiction"
        # Learned as legitimate for now: derived from where the maturity queue stands (or flagged by an earlier release).
        provisional = previous is None and (snap.provisional or self.pending.learned(a.ts, tx_id))
        if provisional and is_fraud:
            self.counts["corrected"] += 1  # learned as legitimate for now, fraud after all: learned again, as fraud
        snap.label = is_fraud
        self.snapshots[tx_id] = snap
        self.rule_stats.record_labelled(snap.rule_hits, a.ts, previous, is_fraud)
        out = LabelOutcome(status, delay_ms=label.ts - a.ts, score=snap.score, alerted=snap.decision.action != "none")
        if is_fraud and not previous:
            self._count_fraud(label.card_id, a, label.ts, out)
        delta = (1 if is_fraud else 0) - (1 if previous else 0)
        if delta and count_at_merchant:
            out.merchant_updates.append(MerchantLabel(a.merchant_id, a.card_id, a.ts, delta, label.ts))
        # Undersampling is for the flood of legitimate examples the passing of time brings; an analyst's "legitimate"
        # is rare (one per false alarm reviewed) and is what the model must learn from its own mistakes: all kept.
        # A legitimate label on an authorization already learned as legitimate for now teaches nothing new, unless
        # it is an analyst's (the feedback model has not learned it).
        feedback = label.source in FEEDBACK_SOURCES
        learn = is_fraud or feedback or (keep_legitimate(tx_id, self.settings.legit_sample_rate)
                                         and not provisional)
        if learn and weight > 0:
            out.examples.append(TrainingExample(tx_id, snap.features, is_fraud, weight, label.source, label.ts))
        if self.learn_inline:
            for ex in out.examples:
                self.model.learn(ex)
            for m in out.merchant_updates:
                self.apply_merchant_label(m)
        return out

    def _count_fraud(self, card_id: str, a: Authorization, label_ts: int, out: LabelOutcome) -> None:
        """A fraudulent authorization ``a`` newly confirmed, at ``label_ts``: the director's figures, from the snapshots.

        The card, once per compromise (:meth:`CardStanding.note_fraud`), F being ``a``'s ts: ``found`` is how its
        first authorization alerted or blocked from F to the label was decided, an alert or update ("model": found
        before any label) or a block ("label": an earlier label had blocked the card), or "missed" without one;
        ``detection_ms`` is F to it. The amount of ``a`` is prevented when the card was alerted or blocked from its
        compromise's first confirmed fraud up to ``a`` (``a`` itself included), else missed.
        """
        standing = self.standings.get(card_id)
        before = standing.fraud_from
        new, first = standing.note_fraud(a.ts)
        if standing.fraud_from != before:
            self.standings.mark(card_id)
        if new:
            stop = self._first_stop(card_id, first, max(first, label_ts))
            out.found = "missed" if stop is None else "label" if stop[1] == "block" else "model"
            out.detection_ms = None if stop is None else stop[0] - first
        amount = self.money.to_base(a.amount, a.currency, count=False)  # amounts of one currency add up
        if self._first_stop(card_id, first, a.ts) is not None:
            out.amount_prevented += amount
        else:
            out.amount_missed += amount

    def _first_stop(self, card_id: str, start: int, end: int) -> tuple[int, str] | None:
        """The card's first authorization from ``start`` to ``end`` (event time, both included) that was alerted
        or blocked when it was scored: its ts and action (among the snapshots still held, as the card index lists
        them); None when there is none."""
        stop: tuple[int, str] | None = None
        for ts, tx_id in self.card_index.since(card_id, start):
            if ts > end or (stop is not None and ts >= stop[0]):
                continue
            snap = self.snapshots.get(tx_id)
            action = "none" if snap is None else snap.decision.action
            if action != "none":
                stop = (ts, action)
        return stop

    def apply_merchant_label(self, update: MerchantLabel) -> None:
        book, key = self.merchant_partials, update.merchant_id
        if book is not None:  # counted by the labelled card's partition, published with its next partial
            partition = book.card_partition(update.card_id)
            if book.replicated:  # a worker: its own state is its replica (`enrich_merchant`)
                book.receive_label(partition, update.merchant_id, update.card_id, update.tx_ts, update.fraud_delta)
                return
            key = book.key(partition, update.merchant_id)
            book.touch(partition, update.merchant_id)
        merchant_label(self.merchants.get(key), update.card_id, update.tx_ts, update.fraud_delta)
        self.merchants.mark(key)

    def mature(self, now: int) -> list[TrainingExample]:
        """What the passing of event time teaches: unlabelled authorizations are legitimate, for now, then for good.

        ``feedback_delay_days`` after its ``ts`` an authorization with no label is learned as legitimate
        (provisionally: a chargeback weeks later is learned as fraud, see :meth:`label`). At maturity its snapshot
        goes; a label after that is counted as unmatched. Called with the newest event time seen. Nothing is
        written then but the matured snapshots' deletions: whether an authorization was learned for now is where
        the queue stands (``MaturityQueue.learned``).
        """
        out: list[TrainingExample] = []
        rate = self.settings.legit_sample_rate
        due = self.pending.pop_due(now)
        for tx_id in due.legacy:
            # Queued by an earlier release at its due time, its snapshot flagged once learned for now: learned as
            # then, and queued again as entries are now (the flag keeps it from being learned twice).
            snap = self.snapshots.get(tx_id)
            if snap is None:
                continue
            if not snap.provisional:
                if keep_legitimate(tx_id, rate):
                    self._learn_legitimate(snap, now, out)
                if snap.auth.ts + self.maturity_ms > now:
                    snap.provisional = True
                    self.snapshots[tx_id] = snap
                    self.pending.add(snap.auth.ts, tx_id)
                    continue
            del self.snapshots[tx_id]
            self.counts["matured"] += 1
        for tx_id in due.learn:
            if not keep_legitimate(tx_id, rate):
                continue  # undersampled: its snapshot is not even read
            snap = self.snapshots.get(tx_id)
            if snap is not None and not snap.provisional:
                self._learn_legitimate(snap, now, out)
        for tx_id in due.matured:
            try:
                del self.snapshots[tx_id]  # not read first: nothing is learned at maturity any more
            except KeyError:
                continue
            self.counts["matured"] += 1
        cutoff = now - self.maturity_ms
        while self.early_queue and self.early_queue[0][0] <= cutoff:
            # Waited a whole maturity period for its authorization: it is not coming.
            if self.early_labels.pop(self.early_queue.popleft()[1], None) is not None:
                self.counts["unmatched_labels"] += 1
        if self.learn_inline:
            for ex in out:
                self.model.learn(ex)
        return out

    def _learn_legitimate(self, snap: Snapshot, now: int, out: list[TrainingExample]) -> None:
        """A sampled authorization past its feedback delay (``keep_legitimate``): learned as legitimate if unlabelled,
        "provisional" before maturity, "maturity" at it."""
        tx_id = snap.auth.tx_id
        if snap.label is None:
            for_now = snap.auth.ts + self.maturity_ms > now
            out.append(TrainingExample(tx_id, snap.features, False, 1.0, "provisional" if for_now else "maturity", now))
            self.counts["provisional"] += for_now

    def reissue(self, event: CardReissue) -> None:
        self.standings.get(event.card_id).reissue(event.ts)
        self.standings.mark(event.card_id)

    def evict_idle(self, now: int) -> int:
        idle = CARD_IDLE_MS + self.settings.grace_ms
        # A blocked card stays blocked however long it is idle: only a reissue unblocks it.
        return (self.cards.evict_idle(now, idle) + self.standings.evict_idle(now, idle, keep=lambda c: c.compromised)
                + self.merchants.evict_idle(now, MERCHANT_IDLE_MS + self.settings.grace_ms))


def blank_standing(standing: CardStanding) -> bool:
    """A standing that decides as a new one does: no alert open, no fraud, no reissue. Most cards' standing is blank,
    so it is not stored (``StateStore(blank=...)``): only its clock differs from a new one's, and that only
    matters to eviction, which has nothing to remove when nothing was stored.

    >>> standing = CardStanding(); standing.see(1_700_000_000_000); blank_standing(standing)
    True
    >>> standing.open_alert("a-t1", 1_700_000_060_000); blank_standing(standing)
    False
    """
    return (standing.open_alert_id is None and standing.open_alert_until == NO_TIME and standing.compromised_since == NO_TIME
            and standing.reissued_at == NO_TIME and standing.fraud_from == NO_TIME)


def _rule_fields(auth: Authorization, feats: dict[str, float]) -> dict[str, Any]:
    fields: dict[str, Any] = dict(feats)
    for name in _EVENT_FIELDS:
        fields[name] = getattr(auth, name)
    fields["merchant_id"] = auth.merchant_id
    return fields
