"""Logging that never shows a full card number.

>>> mask("card 4111111111111111 declined")
'card 4111********1111 declined'
>>> mask("card_id card-000123 at term-00456")
'card_id card-***123 at term-00456'
>>> mask("fraud.card-reissues[1] flushed in 0.0132265625913 s")
'fraud.card-reissues[1] flushed in 0.0132265625913 s'
>>> mask("table card-standings recovered")
'table card-standings recovered'
"""

from __future__ import annotations

import logging
import re

__all__ = ["mask", "MaskingFilter", "setup", "install_masking"]

# Card numbers (13-19 digits, possibly grouped by spaces, dashes or dots) and our card ids (whatever follows
# "card-"): keep enough to correlate, never enough to use. A 13-digit timestamp is masked too: better that
# than a card number in clear. A card number's first group has at least 3 digits, so "0.0132265625913" (a
# duration) is not one; a topic name (fraud.card-reissues) is not a card id. Names of topics and tables
# (card-standings, card-transactions-changelog, card-level) are lower-case words joined by dashes or dots: a card
# id has a digit, a capital or an underscore, so those are left as they are.
_PAN = re.compile(r"(?<![\d.-])\d{3}(?:[ .-]?\d){10,16}(?!\d)")
_CARD = re.compile(r"(?<![\w.])card-([0-9A-Za-z_.:-]+)")
_NAME = re.compile(r"[a-z.:-]+")


def _mask_pan(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return digits[:4] + "*" * (len(digits) - 8) + digits[-4:]


def mask(text: str) -> str:
    text = _PAN.sub(_mask_pan, text)
    return _CARD.sub(_mask_card, text)


def _mask_card(m: re.Match[str]) -> str:
    ident = m.group(1)
    return m.group(0) if _NAME.fullmatch(ident) else "card-***" + ident[-3:]


class MaskingFilter(logging.Filter):
    """Masks card identifiers in every record at INFO and above, its traceback included."""

    def filter(self, record: logging.LogRecord) -> bool:
        _mask_record(record)
        return True


def _mask_record(record: logging.LogRecord) -> None:
    if record.levelno < logging.INFO:
        return
    message = record.getMessage()
    masked = mask(message)
    if masked != message:
        record.msg, record.args = masked, ()
    if record.exc_info and not record.exc_text:
        # Tracebacks quote values too: format once here, masked, and let handlers reuse exc_text.
        record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = mask(record.exc_text)


_installed = False


def install_masking() -> None:
    """Mask every record as it is created, whatever handlers faust or anyone else installs later.

    A handler filter is not enough in a worker: faust replaces the root handlers
    when it starts. The record factory outlives that.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _mask_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
