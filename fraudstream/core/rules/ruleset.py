"""Countermeasure rules and the immutable set they are evaluated as.

A rule file is a JSON list of rule objects. Loading is all-or-nothing: one bad
rule rejects the whole file, and the message names it. For hot reload from a
compacted topic (key = rule id, null value = delete) use :meth:`RuleSet.apply`.

``active`` rules act (an alert, or ``score_delta`` added to the model score;
the caller clamps the sum to [0, 1]); ``shadow`` rules are evaluated and
reported but never act; ``off`` rules are not evaluated at all.

>>> rules = RuleSet.from_json(b'''[
...   {"id": "R-HIGH-AMOUNT", "description": "Amount above 220", "condition": "amount > 220",
...    "mode": "active", "action": "alert"},
...   {"id": "R-CNP", "description": "Card not present", "condition": "channel in ('ecom', 'moto')",
...    "mode": "active", "action": "score", "score_delta": 0.1},
...   {"id": "R-NEW", "description": "Trying out", "condition": "amount > 100", "mode": "shadow", "action": "alert"}
... ]''')
>>> outcome = rules.evaluate({"amount": 250.0, "channel": "ecom"})
>>> outcome.alert_rules, outcome.score_delta, outcome.shadow_hits, outcome.active_hits
(('R-HIGH-AMOUNT',), 0.1, ('R-NEW',), ('R-CNP', 'R-HIGH-AMOUNT'))
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fraudstream.contracts import decode, encode

from .expression import Expression, RuleError, compile_expression

__all__ = ["ACTIONS", "MAX_DESCRIPTION_LENGTH", "MODES", "RULE_ID_PATTERN", "Rule", "RuleOutcome", "RuleSet"]

MODES = ("active", "shadow", "off")
ACTIONS = ("alert", "score")
RULE_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_DESCRIPTION_LENGTH = 1000
_REQUIRED = ("id", "description", "condition", "mode", "action")
_FIELDS = frozenset((*_REQUIRED, "score_delta"))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule. The constructor validates every field and compiles ``condition``.

    >>> rule = Rule("R-1", "Big ticket", "amount > 1000", mode="shadow", action="alert")
    >>> rule.compiled.matches({"amount": 5000})
    True
    >>> try:
    ...     Rule("R-1", "Big ticket", "amount > 1000", mode="on", action="alert")
    ... except RuleError as exc:
    ...     print(exc)
    rule 'R-1': mode must be one of 'active', 'shadow', 'off', got 'on'
    """

    id: str
    description: str
    condition: str
    mode: str
    action: str
    score_delta: float | None = None
    compiled: Expression = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            raise RuleError(f"rule {_shown(self.id)}: id must be a string, got {type(self.id).__name__}")
        if not RULE_ID_PATTERN.fullmatch(self.id):
            raise RuleError(f"rule {_shown(self.id)}: id must be 1 to 64 of A-Z a-z 0-9 _ . -")
        where = f"rule {self.id!r}"
        if not isinstance(self.description, str):
            raise RuleError(f"{where}: description must be a string, got {_shown(self.description)}")
        if len(self.description) > MAX_DESCRIPTION_LENGTH:
            raise RuleError(f"{where}: description is longer than {MAX_DESCRIPTION_LENGTH} characters")
        if self.mode not in MODES:
            allowed = ", ".join(map(repr, MODES))
            raise RuleError(f"{where}: mode must be one of {allowed}, got {_shown(self.mode)}")
        if self.action not in ACTIONS:
            allowed = ", ".join(map(repr, ACTIONS))
            raise RuleError(f"{where}: action must be one of {allowed}, got {_shown(self.action)}")
        self._check_score_delta(where)
        try:
            compiled = compile_expression(self.condition)
        except RuleError as exc:
            raise RuleError(f"{where}: condition: {exc.message}", exc.column) from None
        if not compiled.predicate:
            raise RuleError(f"{where}: condition must be true or false (a comparison, say), not a number or string")
        object.__setattr__(self, "compiled", compiled)

    def _check_score_delta(self, where: str) -> None:
        delta = self.score_delta
        if self.action != "score":
            if delta is not None:
                raise RuleError(f"{where}: score_delta is only allowed when action is 'score'")
            return
        if delta is None:
            raise RuleError(f"{where}: score_delta is required when action is 'score'")
        if isinstance(delta, bool) or not isinstance(delta, (int, float)):
            raise RuleError(f"{where}: score_delta must be a number, got {_shown(delta)}")
        if not (math.isfinite(delta) and -1.0 <= delta <= 1.0):
            raise RuleError(f"{where}: score_delta must be between -1 and 1, got {delta!r}")
        object.__setattr__(self, "score_delta", float(delta))

    @classmethod
    def from_dict(cls, obj: Any, known_names: Collection[str] | None = None) -> Rule:
        """Validate one decoded rule object; unknown keys are refused.

        >>> try:
        ...     Rule.from_dict({"id": "R-1", "description": "d", "condition": "amout > 5", "mode": "active",
        ...                     "action": "alert"}, known_names={"amount"})
        ... except RuleError as exc:
        ...     print(exc)
        rule 'R-1': condition: unknown field 'amout' at column 1; did you mean 'amount'?
        """
        if not isinstance(obj, dict):
            raise RuleError(f"a rule must be a JSON object, got {type(obj).__name__}")
        rule_id = obj.get("id")
        where = f"rule {rule_id!r}" if isinstance(rule_id, str) else "rule"
        unknown = sorted(str(key) for key in obj if key not in _FIELDS)
        if unknown:
            raise RuleError(f"{where}: unknown field {_shown(unknown[0])}; the fields are {', '.join(sorted(_FIELDS))}")
        missing = [name for name in _REQUIRED if name not in obj]
        if missing:
            raise RuleError(f"{where}: {missing[0]} is required")
        rule = cls(
            id=obj["id"],
            description=obj["description"],
            condition=obj["condition"],
            mode=obj["mode"],
            action=obj["action"],
            score_delta=obj.get("score_delta"),
        )
        if known_names is not None:
            try:
                rule.compiled.check_names(known_names)
            except RuleError as exc:
                raise RuleError(f"{where}: condition: {exc.message}", exc.column) from None
        return rule

    @classmethod
    def from_json(cls, raw: bytes | str, known_names: Collection[str] | None = None) -> Rule:
        """One rule from JSON text, e.g. a message value of the rules topic."""
        try:
            obj = decode(raw)
        except ValueError as exc:
            raise RuleError(f"a rule must be valid JSON: {exc}"[:200]) from None
        return cls.from_dict(obj, known_names)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form; ``Rule.from_dict(rule.to_dict()) == rule``."""
        obj: dict[str, Any] = {
            "id": self.id,
            "description": self.description,
            "condition": self.condition,
            "mode": self.mode,
            "action": self.action,
        }
        if self.action == "score":
            obj["score_delta"] = self.score_delta
        return obj


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What the rules said about one event; every tuple is sorted by rule id."""

    #: Active rules with action ``alert`` that fired.
    alert_rules: tuple[str, ...] = ()
    #: Sum of ``score_delta`` of active ``score`` rules that fired (the caller clamps the score).
    score_delta: float = 0.0
    #: Shadow rules that fired; they never act.
    shadow_hits: tuple[str, ...] = ()
    #: Every active rule that fired, whatever its action.
    active_hits: tuple[str, ...] = ()

    @property
    def fired(self) -> bool:
        return bool(self.active_hits or self.shadow_hits)


_NOTHING = RuleOutcome()


class RuleSet:
    """An immutable set of rules, in rule-id order; changes return a new set.

    >>> rules = RuleSet([Rule("R-1", "Big ticket", "amount > 1000", "active", "alert")])
    >>> rules.without("R-1").evaluate({"amount": 5000}).alert_rules, rules.evaluate({"amount": 5000}).alert_rules
    ((), ('R-1',))
    """

    __slots__ = ("_by_id", "_live", "rules")

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        by_id: dict[str, Rule] = {}
        for rule in rules:
            if not isinstance(rule, Rule):
                raise TypeError(f"a RuleSet holds Rule objects, got {type(rule).__name__}")
            if rule.id in by_id:
                raise RuleError(f"rule {rule.id!r} appears more than once")
            by_id[rule.id] = rule
        #: The rules, sorted by id.
        self.rules: tuple[Rule, ...] = tuple(by_id[rule_id] for rule_id in sorted(by_id))
        self._by_id = by_id
        # Precomputed so that evaluate() touches nothing but tuples and the compiled conditions.
        self._live = tuple(
            (rule.id, rule.compiled.matches, rule.mode == "shadow", rule.action == "alert", rule.score_delta or 0.0)
            for rule in self.rules
            if rule.mode != "off"
        )

    @classmethod
    def from_json(cls, raw: bytes | str, known_names: Collection[str] | None = None) -> RuleSet:
        """Load a rule file: a JSON list of rule objects. One bad rule rejects the file.

        >>> try:
        ...     RuleSet.from_json('[{"id": "R-1", "description": "d", "condition": "amount > 5", "mode": "on",'
        ...                       ' "action": "alert"}]')
        ... except RuleError as exc:
        ...     print(exc)
        rule file rejected at entry 1: rule 'R-1': mode must be one of 'active', 'shadow', 'off', got 'on'
        """
        try:
            obj = decode(raw)
        except ValueError as exc:
            raise RuleError(f"rule file rejected: not valid JSON: {exc}"[:200]) from None
        if not isinstance(obj, list):
            raise RuleError(f"rule file rejected: it must be a JSON list of rules, got {type(obj).__name__}")
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for number, item in enumerate(obj, start=1):
            try:
                rule = Rule.from_dict(item, known_names)
            except RuleError as exc:
                raise RuleError(f"rule file rejected at entry {number}: {exc.message}", exc.column) from None
            if rule.id in seen:
                raise RuleError(f"rule file rejected: rule {rule.id!r} appears at entries {seen[rule.id]} and {number}")
            seen[rule.id] = number
            rules.append(rule)
        return cls(rules)

    def to_json(self) -> bytes:
        """The rule file for this set; ``RuleSet.from_json`` reads it back."""
        return encode([rule.to_dict() for rule in self.rules])

    def with_rule(self, rule: Rule) -> RuleSet:
        """A new set with ``rule`` added, or replacing the rule with the same id."""
        return RuleSet([*(r for r in self.rules if r.id != rule.id), rule])

    def without(self, rule_id: str) -> RuleSet:
        """A new set without ``rule_id``; the same set if there is no such rule."""
        if rule_id not in self._by_id:
            return self
        return RuleSet(r for r in self.rules if r.id != rule_id)

    def apply(self, key: bytes | str, value: bytes | str | None, known_names: Collection[str] | None = None) -> RuleSet:
        """Apply one record of the compacted rules topic: ``key`` is the rule id, a null value deletes.

        Raises :class:`RuleError` (leaving this set as it is) if the value is not a valid rule
        or its id disagrees with the key.

        >>> rules = RuleSet().apply(b"R-1", b'{"id": "R-1", "description": "d", "condition": "amount > 5",'
        ...                                  b' "mode": "active", "action": "alert"}')
        >>> rules.ids, rules.apply(b"R-1", None).ids
        (('R-1',), ())
        """
        rule_id = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if value is None:
            return self.without(rule_id)
        rule = Rule.from_json(value, known_names)
        if rule.id != rule_id:
            raise RuleError(f"rule {rule.id!r} arrived under the key {_shown(rule_id)}; the key must be the rule id")
        return self.with_rule(rule)

    def evaluate(self, fields: Mapping[str, Any]) -> RuleOutcome:
        """Evaluate every rule that is not ``off`` against the event's fields and features."""
        alerts: list[str] = []
        shadows: list[str] = []
        active: list[str] = []
        delta = 0.0
        for rule_id, matches, shadow, alert, rule_delta in self._live:
            if matches(fields):
                if shadow:
                    shadows.append(rule_id)
                else:
                    active.append(rule_id)
                    if alert:
                        alerts.append(rule_id)
                    else:
                        delta += rule_delta
        if not (active or shadows):
            return _NOTHING
        return RuleOutcome(tuple(alerts), delta, tuple(shadows), tuple(active))

    @property
    def live(self) -> bool:
        """Whether any rule is evaluated (not ``off``): with none, an authorization's fields need not be gathered."""
        return bool(self._live)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(rule.id for rule in self.rules)

    @property
    def modes(self) -> dict[str, str]:
        """rule id -> mode, e.g. for :meth:`RuleStats.to_table`."""
        return {rule.id: rule.mode for rule in self.rules}

    @property
    def names(self) -> frozenset[str]:
        """Every field some rule reads."""
        return frozenset().union(*(rule.compiled.names for rule in self.rules))

    def get(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._by_id

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuleSet) and other.rules == self.rules

    def __hash__(self) -> int:
        return hash(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet({list(self.ids)!r})"
