"""The console's picture of the pipeline, built only from the messages of its topics.

Plain Python, no Kafka: :class:`PipelineView` is fed one message at a time (``apply(kind, key, value)``) by
:mod:`fraudstream.console.feed`, and tests feed it by hand. Everything it keeps is bounded: the most recently
seen cards (their last authorizations, labels and standing), the newest alerts, the rule statistics of
:class:`~fraudstream.core.rules.RuleStats`, the latest audit records. Bad messages are counted by topic, never
raise.

A card's standing is worked out as the worker does it, with the same :class:`~fraudstream.core.decision.CardStanding`:
a fraud label blocks the card from the label's time until a reissue.

>>> view = PipelineView()
>>> view.apply("scores", b"c1", b'{"tx_id":"t1","card_id":"c1","merchant_id":"m1","amount":950000,"ts":1700000000000,'
...            b'"score":0.91,"model_version":"v1","rule_hits":["R-BIG"],"decision":{"action":"alert","threshold":0.8,'
...            b'"alert_id":"alert-t1","rules":["R-BIG"]}}')
>>> view.apply("alerts", b"c1", b'{"alert_id":"alert-t1","tx_id":"t1","card_id":"c1","merchant_id":"m1","amount":950000,'
...            b'"ts":1700000000000,"score":0.91,"reasons":["rule R-BIG: Amount above 900,000"],"rules":["R-BIG"],"action":"alert"}')
>>> [a.alert_id for a in view.open_alerts()]
['alert-t1']
>>> view.apply("labels", b"c1", b'{"tx_id":"t1","card_id":"c1","is_fraud":true,"ts":1700000100000,"source":"analyst"}')
>>> view.open_alerts(), view.alerts["alert-t1"].status, view.card("c1").standing.compromised
([], 'confirmed fraud', True)
>>> view.rule_stats.snapshot()["R-BIG"]["overall"]["precision"]
1.0
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from fraudstream.contracts import MIN_TS_MS, Label, Rejection, decode, decode_card_reissue, decode_label
from fraudstream.core.decision import CardStanding
from fraudstream.core.features.card import NO_TIME
from fraudstream.core.rules import Rule, RuleError, RuleStats
from fraudstream.knowledge import PipelineKnowledge
from fraudstream.stream.learning import stored_rule

__all__ = ["PipelineView", "ScoredAuthorization", "AlertView", "CardView", "KINDS"]

#: The topics the console reads, by the name the view knows them by.
KINDS = ("scores", "alerts", "labels", "reissues", "rules", "audit")


@dataclass(frozen=True, slots=True)
class ScoredAuthorization:
    """One authorization as the worker scored it (a record of ``fraud.scores``)."""

    tx_id: str
    card_id: str
    merchant_id: str
    amount: float
    currency: str
    ts: int
    score: float
    action: str  # the decision: none, alert, update or block
    rules: tuple[str, ...]  # the rules behind the decision
    rule_hits: tuple[str, ...]  # every rule that fired, shadow ones too
    model_version: str

    def as_dict(self) -> dict[str, Any]:
        return {"tx_id": self.tx_id, "card_id": self.card_id, "merchant_id": self.merchant_id, "amount": self.amount,
                "currency": self.currency, "ts": self.ts, "score": self.score, "action": self.action,
                "rules": list(self.rules), "rule_hits": list(self.rule_hits), "model_version": self.model_version}


@dataclass(slots=True)
class AlertView:
    """An alert of ``fraud.alerts`` with its updates folded in, and what became of it."""

    alert_id: str
    card_id: str
    tx_id: str  # the authorization that raised it
    merchant_id: str
    amount: float
    currency: str
    ts: int
    score: float
    reasons: list[str]
    rules: list[str]
    model_version: str
    action: str
    tx_ids: list[str]
    updated_ts: int
    status: str = "open"  # open, confirmed fraud, legitimate, card reported, card reissued
    closed_by: str = ""  # the label's source, or "reissue"

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def as_dict(self) -> dict[str, Any]:
        return {"alert_id": self.alert_id, "card_id": self.card_id, "tx_id": self.tx_id, "merchant_id": self.merchant_id,
                "amount": self.amount, "currency": self.currency, "ts": self.ts, "score": self.score,
                "reasons": list(self.reasons), "rules": list(self.rules), "model_version": self.model_version,
                "action": self.action, "tx_ids": list(self.tx_ids), "updated_ts": self.updated_ts, "status": self.status,
                "closed_by": self.closed_by}


@dataclass(slots=True)
class CardView:
    """What the topics said about one card lately."""

    card_id: str
    authorizations: deque[ScoredAuthorization]
    labels: deque[Label]
    standing: CardStanding = field(default_factory=CardStanding)
    reissued: list[int] = field(default_factory=list)  # reissue times, newest last (at most 10)
    alert_ids: list[str] = field(default_factory=list)  # newest last (at most 20)
    partition: int | None = None  # of the scores topic: where the workers process the card

    @property
    def blocked_since(self) -> int | None:
        """When the confirmed fraud that blocks the card became known, or None if it is not blocked."""
        return self.standing.compromised_since if self.standing.compromised else None


def _str(v: Any, name: str) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{name} must be a non-empty string")
    return v


def _num(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a number")
    return float(v)


def _ts(v: Any, name: str = "ts") -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < MIN_TS_MS:
        raise ValueError(f"{name} must be epoch milliseconds")
    return v


def _strings(v: Any, name: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"{name} must be a list of strings")
    return tuple(v)


def parse_scored(value: Any) -> ScoredAuthorization:
    """A ``fraud.scores`` record; ValueError says what is wrong with it."""
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    decision = value.get("decision")
    if not isinstance(decision, dict):
        raise ValueError("decision is missing")
    rules = _strings(decision.get("rules"), "decision.rules")
    hits = value.get("rule_hits")
    return ScoredAuthorization(
        tx_id=_str(value.get("tx_id"), "tx_id"), card_id=_str(value.get("card_id"), "card_id"),
        merchant_id=str(value.get("merchant_id") or "-"), amount=_num(value.get("amount"), "amount"),
        currency=str(value.get("currency") or ""), ts=_ts(value.get("ts")), score=_num(value.get("score"), "score"),
        action=str(decision.get("action") or "none"), rules=rules,
        rule_hits=rules if hits is None else _strings(hits, "rule_hits"),
        model_version=str(value.get("model_version") or "-"))


def parse_alert(value: Any) -> AlertView:
    """A ``fraud.alerts`` record; ValueError says what is wrong with it."""
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    ts = _ts(value.get("ts"))
    tx_id = _str(value.get("tx_id"), "tx_id")
    tx_ids = list(_strings(value.get("tx_ids"), "tx_ids")) or [tx_id]
    return AlertView(
        alert_id=_str(value.get("alert_id"), "alert_id"), card_id=_str(value.get("card_id"), "card_id"), tx_id=tx_id,
        merchant_id=str(value.get("merchant_id") or "-"), amount=_num(value.get("amount"), "amount"),
        currency=str(value.get("currency") or ""), ts=ts, score=_num(value.get("score"), "score"),
        reasons=list(_strings(value.get("reasons"), "reasons")), rules=list(_strings(value.get("rules"), "rules")),
        model_version=str(value.get("model_version") or "-"), action=str(value.get("action") or "alert"),
        tx_ids=tx_ids, updated_ts=ts)


class PipelineView:
    """A bounded picture of the pipeline from its topics (see the module docstring).

    ``recent`` authorizations and labels are kept per card, for at most ``max_cards`` cards (the least recently
    seen are forgotten first), and at most ``max_alerts`` alerts (the oldest closed ones first).
    """

    def __init__(self, recent: int = 20, max_cards: int = 50_000, max_alerts: int = 5_000, max_audit: int = 500,
                 max_pending: int = 200_000) -> None:
        self.recent = recent
        self.max_cards = max_cards
        self.max_alerts = max_alerts
        self.cards: OrderedDict[str, CardView] = OrderedDict()
        self.alerts: OrderedDict[str, AlertView] = OrderedDict()
        self._labelled: OrderedDict[str, Label] = OrderedDict()  # tx_id -> its latest label, for alerts seen late
        self.rules_raw: dict[str, bytes] = {}
        self.rules: dict[str, Rule] = {}
        self.invalid_rules: dict[str, str] = {}
        self.rule_stats = RuleStats(max_pending=max_pending)
        self.audit: deque[dict[str, Any]] = deque(maxlen=max_audit)
        self.records: Counter[str] = Counter()
        self.unreadable: Counter[str] = Counter()
        self.last_problem: dict[str, str] = {}
        self.newest_ts: int | None = None  # event time of the newest scored authorization
        self.newest_by_partition: dict[int, int] = {}  # the same, per partition of the scores topic

    # --- feeding -----------------------------------------------------------------------------

    def apply(self, kind: str, key: bytes | None, value: bytes | None, partition: int | None = None) -> None:
        """One message of the topic ``kind`` (one of :data:`KINDS`), from ``partition`` if known. A bad one is
        counted in ``unreadable``."""
        self.records[kind] += 1
        try:
            if kind == "rules":
                self._rule(key, value)
            elif kind == "labels":
                label = decode_label(value, key)
                if isinstance(label, Rejection):
                    raise ValueError(f"{label.reason}: {label.detail}")
                self._label(label)
            elif kind == "reissues":
                event = decode_card_reissue(value, key)
                if isinstance(event, Rejection):
                    raise ValueError(f"{event.reason}: {event.detail}")
                self._reissue(event.card_id, event.ts)
            else:
                if value is None:
                    raise ValueError("empty message")
                obj = decode(value)
                if kind == "scores":
                    self._scored(parse_scored(obj), partition)
                elif kind == "alerts":
                    self._alert(parse_alert(obj))
                elif kind == "audit":
                    if not isinstance(obj, dict):
                        raise ValueError("not a JSON object")
                    self.audit.append(obj)
                else:
                    raise ValueError(f"unknown kind {kind!r}")
        except ValueError as exc:  # orjson's JSONDecodeError is one
            self.unreadable[kind] += 1
            self.last_problem[kind] = str(exc)[:200]

    def card(self, card_id: str, create: bool = False) -> CardView | None:
        """The card's view (most recently used first to stay), or None if the topics said nothing of it lately."""
        view = self.cards.get(card_id)
        if view is None and create:
            view = self.cards[card_id] = CardView(card_id, deque(maxlen=self.recent), deque(maxlen=self.recent))
            while len(self.cards) > self.max_cards:
                self.cards.popitem(last=False)
        if view is not None:
            self.cards.move_to_end(card_id)
        return view

    def _scored(self, s: ScoredAuthorization, partition: int | None = None) -> None:
        card = self.card(s.card_id, create=True)
        assert card is not None
        if any(a.tx_id == s.tx_id for a in card.authorizations):
            return  # a redelivery
        card.authorizations.append(s)
        self.newest_ts = s.ts if self.newest_ts is None else max(self.newest_ts, s.ts)
        if partition is not None:
            card.partition = partition
            self.newest_by_partition[partition] = max(self.newest_by_partition.get(partition, s.ts), s.ts)
        alerted = s.action not in ("none", "block")
        for rule_id in s.rule_hits:
            self.rule_stats.record_hit(rule_id, s.tx_id, s.ts, alerted=alerted and rule_id in s.rules)
        label = self._labelled.get(s.tx_id)
        if label is not None:
            self.rule_stats.record_label(s.tx_id, label.is_fraud)

    def _alert(self, a: AlertView) -> None:
        card = self.card(a.card_id, create=True)
        assert card is not None
        old = self.alerts.get(a.alert_id)
        if old is not None:  # an update: the same alert, a later authorization
            for tx_id in a.tx_ids:
                if tx_id not in old.tx_ids:
                    old.tx_ids.append(tx_id)
            if a.ts >= old.updated_ts:
                old.updated_ts = a.ts
                old.score = max(old.score, a.score)
                old.reasons = a.reasons or old.reasons
                old.rules = list(dict.fromkeys([*old.rules, *a.rules]))
            a = old
        else:
            self.alerts[a.alert_id] = a
            if a.alert_id not in card.alert_ids:
                card.alert_ids.append(a.alert_id)
                del card.alert_ids[:-20]
        if a.action == "block" and a.is_open:
            a.status, a.closed_by = "card blocked", "worker"
        for tx_id in a.tx_ids:  # labelled before the alert reached us
            label = self._labelled.get(tx_id)
            if label is not None and a.is_open:
                a.status, a.closed_by = ("confirmed fraud" if label.is_fraud else "legitimate"), label.source
        if a.is_open and card.standing.compromised and card.standing.compromised_since <= a.ts:
            a.status, a.closed_by = "card reported", "label"
        while len(self.alerts) > self.max_alerts:
            oldest = next((k for k, v in self.alerts.items() if not v.is_open), next(iter(self.alerts)))
            del self.alerts[oldest]

    def _label(self, label: Label) -> None:
        card = self.card(label.card_id, create=True)
        assert card is not None
        card.labels.append(label)
        if label.is_fraud:  # as the worker does: a fraud before the card's reissue was on the card it replaced
            fraud_ts = label.since if label.card_level else next((a.ts for a in card.authorizations if a.tx_id == label.tx_id), None)
            card.standing.confirm_fraud(label.ts, fraud_ts)
        if label.card_level:
            since = label.since if label.since is not None else NO_TIME
            for a in card.authorizations:
                if a.ts >= since:
                    self.rule_stats.record_label(a.tx_id, True)
            self._close(card, lambda alert: True, "card reported", label.source)
        else:
            tx_id = label.tx_id or ""
            self._labelled[tx_id] = label
            self._labelled.move_to_end(tx_id)
            while len(self._labelled) > 4 * self.max_alerts:
                self._labelled.popitem(last=False)
            self.rule_stats.record_label(tx_id, label.is_fraud)
            self._close(card, lambda alert: tx_id in alert.tx_ids,
                        "confirmed fraud" if label.is_fraud else "legitimate", label.source)

    def _reissue(self, card_id: str, ts: int) -> None:
        card = self.card(card_id, create=True)
        assert card is not None
        card.standing.reissue(ts)
        card.reissued.append(ts)
        del card.reissued[:-10]
        self._close(card, lambda alert: alert.ts <= ts, "card reissued", "reissue")

    def _close(self, card: CardView, which: Any, status: str, by: str) -> None:
        for alert_id in card.alert_ids:
            alert = self.alerts.get(alert_id)
            if alert is not None and (alert.is_open or status in ("confirmed fraud", "legitimate")) and which(alert):
                alert.status, alert.closed_by = status, by

    def _rule(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            raise ValueError("a rule without a key (its id)")
        rule_id = key.decode("utf-8", "replace")
        self.rules.pop(rule_id, None)
        self.invalid_rules.pop(rule_id, None)
        if value is None:  # deleted
            self.rules_raw.pop(rule_id, None)
            return
        self.rules_raw[rule_id] = value
        try:
            rule = stored_rule(rule_id, value)
        except (RuleError, ValueError, TypeError) as exc:
            self.invalid_rules[rule_id] = str(exc)
        else:
            self.rules[rule_id] = rule

    # --- reading -------------------------------------------------------------------------------

    def knowledge(self, card_id: str, tx_id: str | None = None) -> PipelineKnowledge:
        """What the view knows of the card (its latest authorizations only: ``complete`` is False) and of the
        transaction's card, for the operator tools' check (:func:`fraudstream.knowledge.unknown_to_pipeline`).

        >>> view = PipelineView()
        >>> view.apply("scores", b"c1", b'{"tx_id":"t1","card_id":"c1","ts":1700000000000,"amount":10,"score":0.1,'
        ...            b'"decision":{"action":"none"}}', partition=3)
        >>> k = view.knowledge("c1", "t1")
        >>> k.card_ts, k.tx_card, k.card_partition, k.stamp(1800000000000)
        ([1700000000000], 'c1', 3, 1700000000000)
        """
        card = self.cards.get(card_id)
        known = PipelineKnowledge(card_id, tx_id, scored=self.records["scores"] - self.unreadable["scores"],
                                  newest=dict(self.newest_by_partition), complete=False)
        if card is not None:
            known.card_ts = [a.ts for a in card.authorizations]
            known.card_partition = card.partition
        if tx_id is not None:
            if card is not None and any(a.tx_id == tx_id for a in card.authorizations):
                known.tx_card = card_id
            else:  # an alert names its transactions and their card
                known.tx_card = next((a.card_id for a in self.alerts.values() if tx_id in a.tx_ids), None)
        return known

    def open_alerts(self, limit: int = 200) -> list[AlertView]:
        """The review queue: open alerts, highest score first, then newest first."""
        found = [a for a in self.alerts.values() if a.is_open]
        found.sort(key=lambda a: (-a.score, -a.updated_ts))
        return found[:limit]

    def alert_precision(self) -> tuple[int, int]:
        """(confirmed fraud, labelled) among the alerts held: the review team's hit rate."""
        labelled = fraud = 0
        for a in self.alerts.values():
            if a.status in ("confirmed fraud", "legitimate", "card reported"):
                labelled += 1
                fraud += a.status != "legitimate"
        return fraud, labelled

    def rule_modes(self) -> dict[str, str]:
        return {**{rule_id: "invalid" for rule_id in self.invalid_rules}, **{r.id: r.mode for r in self.rules.values()}}
