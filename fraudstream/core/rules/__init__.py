"""Countermeasure rules: a safe expression language, rule sets and their statistics.

>>> rules = RuleSet([Rule("R-1", "Big ticket", "amount > 1000", mode="active", action="alert")])
>>> rules.evaluate({"amount": 5000}).alert_rules
('R-1',)
"""

from .expression import (
    FUNCTIONS,
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING,
    Expression,
    RuleError,
    compile_expression,
)
from .ruleset import ACTIONS, MODES, RULE_ID_PATTERN, Rule, RuleOutcome, RuleSet
from .stats import RuleStats

__all__ = [
    "ACTIONS",
    "FUNCTIONS",
    "MAX_EXPRESSION_LENGTH",
    "MAX_NESTING",
    "MODES",
    "RULE_ID_PATTERN",
    "Expression",
    "Rule",
    "RuleError",
    "RuleOutcome",
    "RuleSet",
    "RuleStats",
    "compile_expression",
]
