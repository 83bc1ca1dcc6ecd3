"""Full card identifiers never appear in logs at INFO or above.

Unit tests of :func:`fraudstream.logs.mask` and :class:`fraudstream.logs.MaskingFilter`, then a real worker:
malformed authorizations carrying a card id (``card-000123``) and a PAN-like number (``4111111111111111``)
in every field a rejection's detail echoes, and the worker's log must not hold either in full.
"""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from fraudstream.kafka.topics import create_topics
from fraudstream.logs import MaskingFilter, mask

from .conftest import WorkerProcess, isolated_settings, produce, read_topic

CARD = "card-000123"
PAN = "4111111111111111"
PANS = ["4111111111111111", "5500000000000004", "378282246310005", "30569309025904", "4222222222222", "6011000990139424",
        "3566002020360505", "6304000000000000000"]  # 13 to 19 digits: Visa, Mastercard, Amex, Diners, old Visa, ...


def leaked(text: str) -> list[str]:
    return [s for s in (CARD, PAN) if s in text]


# --- mask --------------------------------------------------------------------------------


@pytest.mark.parametrize("pan", PANS)
def test_mask_keeps_first_and_last_four_of_a_pan(pan):
    masked = mask(f"authorization on {pan} declined")
    assert pan not in masked
    assert f"{pan[:4]}{'*' * (len(pan) - 8)}{pan[-4:]}" in masked


@pytest.mark.parametrize("text", [f"pan={PAN}", f"({PAN})", f"'{PAN}'", f"[{PAN}]", f"{PAN},", f'"card_id":"{PAN}"'])
def test_mask_finds_a_pan_between_punctuation(text):
    assert PAN not in mask(text)


@pytest.mark.parametrize("card", ["card-000123", "card-0000000000000000012345", "card-abc_def", "card-XYZ9"])
def test_mask_card_ids(card):
    masked = mask(f"card_id {card} at term-00456")
    assert card not in masked and f"card-***{card[-3:]}" in masked
    assert "term-00456" in masked  # merchants are not secrets


@pytest.mark.parametrize("card", ["card-7f3a9c2e-1b4d-4f5e-9a8b-0c1d2e3f4a5b", "card-AB12-cd34", "card-ab_12"])
def test_mask_card_ids_with_inner_dashes(card):
    assert mask(f"card_id {card} declined") == f"card_id card-***{card[-3:]} declined"


@pytest.mark.parametrize("name", ["card-standings", "card-standings-changelog", "fraudstream-card-transactions",
                                  "fraud.card-events", "card-level", "card-testing/probe", "card-reissues"])
def test_mask_leaves_topic_and_table_names(name):
    """A name (lower-case words joined by dashes) is no secret: masking it only hides which table is meant."""
    text = f"table {name} recovered; topic {name}[2] at offset 10"
    assert mask(text) == text


def test_mask_leaves_ordinary_text_and_short_numbers():
    text = "scored 1234 authorizations in 56789 ms, partition 2 offset 1000000"
    assert mask(text) == text


@pytest.mark.parametrize("pan", ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111.1111.1111.1111"])
def test_mask_pan_written_in_groups(pan):
    assert pan not in mask(f"channel must be one of [...], got '{pan}'")


# --- MaskingFilter -----------------------------------------------------------------------


@pytest.fixture
def capture() -> Any:
    """A logger whose one handler carries the filter, as the worker's handlers should."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger(f"test-logs-{id(buf)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buf
    logger.handlers.clear()


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL])
def test_filter_masks_message_and_arguments_at_info_and_above(capture, level):
    logger, buf = capture
    logger.log(level, "card %s pan %s", CARD, PAN)
    logger.log(level, f"inline {CARD} {PAN}")
    logger.log(level, "container %s %r", [CARD, {"pan": PAN}], (PAN,))
    logger.log(level, "bytes %r", CARD.encode())
    out = buf.getvalue()
    assert not leaked(out), out
    assert out.count("card-***123") == 4 and out.count("4111********1111") == 4


def test_filter_leaves_debug_alone(capture):
    """DEBUG is for a developer's machine; the filter does not pay the regex for it."""
    logger, buf = capture
    logger.debug("card %s", CARD)
    assert CARD in buf.getvalue()


def test_filter_never_drops_a_record(capture):
    logger, buf = capture
    for level in (logging.DEBUG, logging.INFO, logging.WARNING):
        logger.log(level, "plain %d", level)
    assert buf.getvalue().count("plain") == 3


def test_filter_with_a_mapping_argument(capture):
    logger, buf = capture
    logger.info("card %(card)s", {"card": CARD})
    assert "card card-***123" in buf.getvalue()


def test_filter_masks_the_traceback_of_an_exception(capture):
    logger, buf = capture
    try:
        raise KeyError(f"{CARD} {PAN}")
    except KeyError:
        logger.exception("could not process %s", CARD)
    assert not leaked(buf.getvalue()), buf.getvalue()


# --- a real worker -----------------------------------------------------------------------

#: Fields whose value a rejection's detail quotes (the first 20 characters), each with the card id or the PAN.
ECHOED = [("channel", CARD), ("channel", PAN), ("currency", PAN), ("country", CARD), ("mcc", PAN), ("mcc", CARD)]


def _malformed(now: int) -> list[tuple[bytes | None, bytes]]:
    out: list[tuple[bytes | None, bytes]] = []
    base = {"merchant_id": "merchant-1", "amount": 12.0, "ts": now}
    for i, (field, value) in enumerate(ECHOED):
        out.append((CARD.encode(), orjson.dumps({**base, "tx_id": f"tx-echo-{i}", "card_id": CARD, field: value})))
    out += [
        (PAN.encode(), orjson.dumps({**base, "tx_id": "tx-pan-as-card", "card_id": PAN, "amount": -1})),
        (CARD.encode(), orjson.dumps({**base, "tx_id": "tx-no-amount", "card_id": CARD, "amount": None})),
        (PAN.encode(), orjson.dumps({**base, "tx_id": "tx-key", "card_id": CARD})),  # key disagrees
        (CARD.encode(), f'{{"card_id": "{CARD}", "pan": "{PAN}", '.encode()),  # not JSON
        (CARD.encode(), orjson.dumps({**base, "tx_id": PAN, "card_id": CARD, "ts": "yesterday"})),
    ]
    return out


@pytest.fixture(scope="module")
def worker_log(broker, tmp_path_factory) -> Any:
    """A worker that dead-letters the malformed authorizations; returns the log text written meanwhile, then
    (phase 2) the text written while it processed messages that raise with the ids in their exception."""
    tmp = tmp_path_factory.mktemp("logs")
    s = isolated_settings(broker, tmp)
    create_topics(s)
    worker = WorkerProcess(s, tmp / "worker.log")
    try:
        now = int(time.time() * 1000)
        bad = _malformed(now)
        produce(s, s.topic_authorizations, bad)
        ok = {"tx_id": "tx-ok", "card_id": CARD, "merchant_id": "merchant-1", "amount": 10.0, "ts": now}
        produce(s, s.topic_authorizations, [(CARD.encode(), orjson.dumps(ok))])
        assert len(read_topic(s, s.topic_dead_letter, until=len(bad), timeout=60)) == len(bad)
        assert read_topic(s, s.topic_scores, until=1, timeout=30)
        time.sleep(0.5)
        phase1 = _read(worker.log_path)
        # Phase 2: an internal topic (anyone with write access can produce to it) with records that make the
        # handler raise an exception whose message names the card: logged with its traceback.
        internal = [(CARD.encode(), orjson.dumps({"kind": "label", "record": {"card_id": "x", CARD: True}})),
                    (CARD.encode(), orjson.dumps({"kind": "label", "record": {"card_id": "x", PAN: True}}))]
        produce(s, s.topic_card_events, internal)
        # And a rule keyed by mistake with a card id: refused, and the refusal logged with the key.
        rule = {"id": "R-1", "description": "d", "condition": "amount > 0", "mode": "shadow", "action": "alert"}
        produce(s, s.topic_rules, [(CARD.encode(), orjson.dumps(rule))])
        read_topic(s, s.topic_dead_letter, until=len(bad) + len(internal) + 1, timeout=30)
        time.sleep(0.5)
        yield phase1, _read(worker.log_path)[len(phase1):]
    finally:
        worker.stop()


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace")


def _records(text: str) -> list[str]:
    """Log records: a line with a [LEVEL] starts one; tracebacks and other continuation lines belong to it."""
    out: list[str] = []
    for line in text.splitlines():
        if re.match(r"^\[[^]]+\] \[\d+\] \[[A-Z]+\]", line) or not out:
            out.append(line)
        else:
            out[-1] += "\n" + line
    return out


@pytest.mark.broker
def test_worker_never_logs_a_full_card_id_from_malformed_authorizations(worker_log):
    phase1, _ = worker_log
    warned = [r for r in _records(phase1) if "[WARNING] dead-lettered" in r]
    assert len(warned) == len(_malformed(0)), phase1[-3000:]  # every rejection was logged (and masked)
    assert "card-***123" in phase1 and "4111********1111" in phase1
    assert not leaked(phase1), [r for r in _records(phase1) if leaked(r)]


@pytest.mark.broker
def test_worker_masks_every_record_not_only_dead_letters(worker_log):
    _, phase2 = worker_log
    rejected = [r for r in _records(phase2) if "rules in force unchanged" in r]
    assert rejected, phase2[-3000:]
    assert not leaked("\n".join(rejected)), rejected


@pytest.mark.broker
def test_worker_never_logs_a_full_card_id_in_a_traceback(worker_log):
    _, phase2 = worker_log
    failed = [r for r in _records(phase2) if "could not process" in r]
    assert len(failed) == 2, phase2[-3000:]
    assert not leaked("\n".join(failed)), failed
