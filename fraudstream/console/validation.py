"""Every input of the console's forms, checked on the server, each with a message an operator can act on.

>>> card_id("  ")
Traceback (most recent call last):
...
fraudstream.console.validation.InvalidInput: Card id is empty: type it as it appears on the alert or the card record.
>>> verdict("fraud"), verdict("legit"), rule_mode("off")
(True, False, 'off')
>>> rule_mode("on")
Traceback (most recent call last):
...
fraudstream.console.validation.InvalidInput: Mode 'on' is not one of active, shadow, off.
"""

from __future__ import annotations

from collections.abc import Sequence

from fraudstream.contracts import MAX_ID_LENGTH
from fraudstream.core.rules import MODES, RULE_ID_PATTERN

__all__ = ["InvalidInput", "card_id", "tx_id", "tx_ids", "verdict", "rule_id", "rule_mode", "MAX_REPORTED"]

#: Authorizations a customer may tick in one report.
MAX_REPORTED = 100


class InvalidInput(ValueError):
    """A form field the console refuses; the message is shown to the operator as it is."""


def _identifier(what: str, value: str | None, where: str) -> str:
    if value is None or not value.strip():
        raise InvalidInput(f"{what} is empty: type it as it appears on {where}.")
    if value != value.strip():
        raise InvalidInput(f"{what} {value.strip()!r} has spaces around it; remove them.")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"{what} is {len(value)} characters long; an id has at most {MAX_ID_LENGTH}.")
    if not value.isprintable():
        raise InvalidInput(f"{what} contains control characters; type it again.")
    return value


def card_id(value: str | None) -> str:
    return _identifier("Card id", value, "the alert or the card record")


def tx_id(value: str | None) -> str:
    return _identifier("Transaction id", value, "the alert")


def tx_ids(values: Sequence[str], known: Sequence[str]) -> list[str]:
    """The authorizations ticked in a report: at least one, each one of the card's ``known`` ones.

    >>> tx_ids(["t2", "t1", "t2"], ["t1", "t2", "t3"])
    ['t2', 't1']
    >>> tx_ids(["t9"], ["t1"])
    Traceback (most recent call last):
    ...
    fraudstream.console.validation.InvalidInput: Authorization 't9' is not one of this card's recent authorizations.
    """
    if not values:
        raise InvalidInput("Tick at least one authorization the customer does not recognise.")
    if len(values) > MAX_REPORTED:
        raise InvalidInput(f"{len(values)} authorizations ticked; at most {MAX_REPORTED} in one report.")
    out = list(dict.fromkeys(tx_id(v) for v in values))
    for v in out:
        if v not in known:
            raise InvalidInput(f"Authorization {v!r} is not one of this card's recent authorizations.")
    return out


def verdict(value: str | None) -> bool:
    """An analyst's disposition: ``fraud`` is True, ``legit`` False."""
    if value not in ("fraud", "legit"):
        raise InvalidInput(f"Disposition {value!r} is neither fraud nor legit.")
    return value == "fraud"


def rule_id(value: str | None) -> str:
    if not value or not RULE_ID_PATTERN.fullmatch(value):
        raise InvalidInput(f"{value!r} is not a rule id (1 to 64 of A-Z a-z 0-9 _ . -).")
    return value


def rule_mode(value: str | None) -> str:
    if value not in MODES:
        raise InvalidInput(f"Mode {value!r} is not one of {', '.join(MODES)}.")
    return value
