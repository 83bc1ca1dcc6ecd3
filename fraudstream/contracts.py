"""Records for each topic, their validation, and the one JSON codec.

Everything that crosses a topic goes through :func:`encode` and :func:`decode`
(orjson). Decoders never raise on bad input: they return a :class:`Rejection`
that names the reason, so the worker can dead-letter it and keep going.

>>> auth = decode_authorization(b'{"tx_id":"t1","card_id":"c1","merchant_id":"m1","amount":12.5,"ts":1700000000000}', b"c1")
>>> auth.amount, auth.currency
(12.5, 'JPY')
>>> decode_authorization(b'{"tx_id":"t1"}', b"c1").reason
'missing_field'
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "Authorization",
    "Label",
    "CardReissue",
    "Rejection",
    "DeadLetter",
    "REJECTION_REASONS",
    "CHANNELS",
    "CARD_NOT_PRESENT",
    "LABEL_SOURCES",
    "MAX_MESSAGE_BYTES",
    "encode",
    "decode",
    "MerchantEvent",
    "MerchantEvents",
    "decode_merchant_events",
    "decode_authorization",
    "decode_label",
    "decode_card_reissue",
    "alert_id_for",
]

#: Larger messages are dead-lettered before they are parsed.
MAX_MESSAGE_BYTES = 64 * 1024
#: Identifiers longer than this are not identifiers.
MAX_ID_LENGTH = 128
#: Nothing before 2000-01-01 is a card authorization we can score.
MIN_TS_MS = 946_684_800_000
#: Authorizations further than this ahead of the wall clock are rejected.
MAX_FUTURE_MS = 86_400_000
MAX_AMOUNT = 1e10
#: A fraud.merchant-partials record (a batch's merchant events, written by the workers themselves), at most: under the
#: broker's 1 MB default. Writers split a batch's events into records of `MAX_MERCHANT_EVENTS` at most.
MAX_MERCHANT_EVENTS_BYTES = 1024 * 1024
MAX_MERCHANT_EVENTS = 2_000

CHANNELS = frozenset({"pos", "ecom", "atm", "moto"})
CARD_NOT_PRESENT = frozenset({"ecom", "moto"})
LABEL_SOURCES = frozenset({"analyst", "customer_report", "chargeback", "maturity", "investigator"})

#: The closed set of reasons; each one is a metric label value.
REJECTION_REASONS = (
    "oversize",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "amount_out_of_range",
    "ts_out_of_range",
    "empty_key",
    "key_mismatch",
    "processing_error",  # valid by contract, yet processing raised: a bug, kept for replay
)


def encode(record: Any, keep: bool = False) -> bytes:
    """The one encoder. Dataclasses and dicts alike.

    ``keep=True`` for values held in memory (snapshots, indexes): orjson's
    result keeps its whole working buffer, 4-8 KB whatever the length, so
    those are copied to their exact size. Values sent on at once need not be.
    """
    raw = orjson.dumps(record)
    return bytes(memoryview(raw)) if keep else raw


def decode(raw: bytes | str) -> Any:
    """The one decoder; raises ``orjson.JSONDecodeError`` (a ValueError)."""
    return orjson.loads(raw)


#: A merchant event: (kind, input offset, merchant_id, card_id, x, y). Kind "a", an authorization: x its amount in the
#: base currency, y its ts. "e", a label found waiting by an authorization at that offset of fraud.authorizations, and
#: "l", a label at that offset of fraud.card-events: x the labelled authorization's ts, y its fraud delta (+1, -1).
MerchantEvent = tuple[str, int, str, str, float, int]


@dataclass(slots=True)
class MerchantEvents:
    """What one card partition's merchant states took in one batch, in its order: the record of
    fraud.merchant-partials from which every worker keeps a replica of them
    (``fraudstream.core.features.partials``).

    ``next_ts``: the partition has nothing before it left to give (an authorization held there until the other
    partitions catch up); ``idle_after``: the partition is quiet and caught up, having taken the authorization at this
    offset of fraud.authorizations (-1: none), and nobody waits for it until it takes a later one.

    >>> record = MerchantEvents(2, [("a", 41, "m1", "c1", 12.5, 1700000000000), ("l", 7, "m1", "c1", 1700000000000, 1)])
    >>> encode(record.as_dict())
    b'{"partition":2,"events":[["a",41,"m1","c1",12.5,1700000000000],["l",7,"m1","c1",1700000000000,1]]}'
    >>> decode_merchant_events(_) == record
    True
    >>> decode_merchant_events(b'{"partition":2,"events":[["a",41,"m1"]]}')
    Rejection(reason='invalid_value', detail='event 0 is not [kind, offset, merchant_id, card_id, x, y]')
    >>> decode_merchant_events(b'{"partition":2,"events":[[[],41,"m1","c1",1.0,1700000000000]]}').reason  # a kind not a kind
    'invalid_value'
    """

    partition: int
    events: list[MerchantEvent]
    next_ts: int | None = None
    idle_after: int | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"partition": self.partition, "events": self.events}
        if self.next_ts is not None:
            d["next_ts"] = self.next_ts
        if self.idle_after is not None:
            d["idle_after"] = self.idle_after
        return d


_EVENT_KINDS = frozenset({"a", "e", "l"})


def decode_merchant_events(raw: bytes | None) -> MerchantEvents | Rejection:
    """A fraud.merchant-partials record, checked: a record that is not one is rejected (and dead-lettered by its
    reader), never applied in part."""
    obj = _parse_object(raw, MAX_MERCHANT_EVENTS_BYTES)
    if isinstance(obj, Rejection):
        return obj
    partition, events, next_ts, idle_after = obj.get("partition"), obj.get("events"), obj.get("next_ts"), obj.get("idle_after")
    if type(partition) is not int or partition < 0:
        return Rejection("invalid_value", "partition is not a partition number")
    if type(events) is not list:
        return Rejection("wrong_type", "events is not a list")
    if not (next_ts is None or type(next_ts) is int) or not (idle_after is None or type(idle_after) is int):
        return Rejection("wrong_type", "next_ts or idle_after is not an integer")
    if (next_ts is not None and not _plausible_ts(next_ts)) or (idle_after is not None and idle_after < -1):
        return Rejection("invalid_value", "next_ts or idle_after out of range")
    checked: list[MerchantEvent] = []
    for i, e in enumerate(events):
        if not (type(e) is list and len(e) == 6 and type(e[0]) is str and e[0] in _EVENT_KINDS and type(e[1]) is int and e[1] >= 0
                and type(e[2]) is str and type(e[3]) is str and type(e[5]) is int
                and (type(e[4]) in (int, float) and math.isfinite(e[4]) and e[4] >= 0 and _plausible_ts(e[5])
                     if e[0] == "a" else type(e[4]) is int and _plausible_ts(e[4]) and e[5] in (-1, 1))):
            return Rejection("invalid_value", f"event {i} is not [kind, offset, merchant_id, card_id, x, y]")
        checked.append((e[0], e[1], e[2], e[3], e[4], e[5]))
    return MerchantEvents(partition, checked, next_ts, idle_after)


def _plausible_ts(ts: int) -> bool:
    return MIN_TS_MS <= ts <= int(time.time() * 1000) + MAX_FUTURE_MS


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message could not be processed."""

    reason: str
    detail: str

    def __bool__(self) -> bool:  # a rejection is never a usable record
        return False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The value written to the dead-letter topic."""

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: str | None
    raw: str  # the original bytes, decoded with replacement so JSON can carry them
    ts: int  # wall clock ms when it was dead-lettered

    @classmethod
    def of(cls, rejection: Rejection, raw: bytes | None, key: bytes | None, topic: str, partition: int, offset: int) -> DeadLetter:
        return cls(
            reason=rejection.reason,
            detail=rejection.detail,
            topic=topic,
            partition=partition,
            offset=offset,
            key=None if key is None else key.decode("utf-8", "replace"),
            raw=(raw or b"")[:MAX_MESSAGE_BYTES].decode("utf-8", "replace"),
            ts=int(time.time() * 1000),
        )


@dataclass(slots=True)
class Authorization:
    tx_id: str
    card_id: str
    merchant_id: str
    amount: float
    ts: int
    currency: str = "JPY"
    mcc: str | None = None
    country: str | None = None
    channel: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tx_id": self.tx_id,
            "card_id": self.card_id,
            "merchant_id": self.merchant_id,
            "amount": self.amount,
            "ts": self.ts,
            "currency": self.currency,
            "mcc": self.mcc,
            "country": self.country,
            "channel": self.channel,
        }


@dataclass(frozen=True, slots=True)
class Label:
    """A confirmed outcome. ``tx_id`` labels one authorization; a card-level
    label (``tx_id`` None) says the card was compromised since ``since``."""

    card_id: str
    is_fraud: bool
    ts: int
    source: str
    tx_id: str | None = None
    since: int | None = None

    @property
    def card_level(self) -> bool:
        return self.tx_id is None


@dataclass(frozen=True, slots=True)
class CardReissue:
    """The card was replaced: its compromised state ends."""

    card_id: str
    ts: int


def alert_id_for(tx_id: str) -> str:
    """Stable, so a redelivered authorization produces the same alert."""
    return "alert-" + tx_id


# --- validation ------------------------------------------------------------


def _parse_object(raw: bytes | None, limit: int = MAX_MESSAGE_BYTES) -> dict[str, Any] | Rejection:
    if raw is None:
        return Rejection("not_json", "empty message")
    if len(raw) > limit:
        return Rejection("oversize", f"{len(raw)} bytes is over the {limit}-byte limit")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("not_json", f"not valid JSON: {exc}"[:200])
    if not isinstance(value, dict):
        return Rejection("not_object", f"JSON {type(value).__name__} where an object was expected")
    return value


def _identifier(obj: dict[str, Any], name: str, required: bool = True) -> str | Rejection | None:
    value = obj.get(name)
    if value is None:
        return Rejection("missing_field", f"{name} is required") if required else None
    if not isinstance(value, str):
        return Rejection("wrong_type", f"{name} must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_LENGTH:
        return Rejection("invalid_value", f"{name} must be 1..{MAX_ID_LENGTH} characters, got {len(value)}")
    if not value.isprintable():
        return Rejection("invalid_value", f"{name} contains control or unprintable characters")
    return value


def _timestamp(obj: dict[str, Any], name: str, required: bool = True) -> int | Rejection | None:
    value = obj.get(name)
    if value is None:
        return Rejection("missing_field", f"{name} is required") if required else None
    if isinstance(value, bool) or not isinstance(value, int):
        return Rejection("wrong_type", f"{name} must be integer epoch milliseconds, got {type(value).__name__}")
    if value < MIN_TS_MS:
        return Rejection("ts_out_of_range", f"{name}={value} is before 2000-01-01")
    if value > time.time() * 1000 + MAX_FUTURE_MS:
        return Rejection("ts_out_of_range", f"{name}={value} is more than a day in the future")
    return value


def _check_key(key: bytes | None, card_id: str) -> Rejection | None:
    if key is None or key == b"":
        return Rejection("empty_key", "message key must be the card_id")
    if key != card_id.encode():
        return Rejection("key_mismatch", "message key disagrees with card_id")
    return None


def _code(obj: dict[str, Any], name: str, length: int, digits: bool) -> str | Rejection | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        return Rejection("wrong_type", f"{name} must be a string, got {type(value).__name__}")
    ok = len(value) == length and (value.isdigit() if digits else (value.isascii() and value.isupper() and value.isalpha()))
    if not ok:
        form = f"{length} digits" if digits else f"{length} upper-case letters"
        return Rejection("invalid_value", f"{name} must be {form}, got {value[:20]!r}")
    return value


def decode_authorization(raw: bytes | None, key: bytes | None, *, check_key: bool = True) -> Authorization | Rejection:
    """Validate one message of ``fraud.authorizations`` against topics/."""
    obj = _parse_object(raw)
    if isinstance(obj, Rejection):
        return obj
    valid = _valid_authorization(obj, key, check_key)
    return valid if valid is not None else _checked_authorization(obj, key, check_key)


def _checked_authorization(obj: dict[str, Any], key: bytes | None, check_key: bool) -> Authorization | Rejection:
    """`decode_authorization`'s checks one at a time, the first that fails giving its reason."""
    fields: dict[str, Any] = {}
    for name in ("tx_id", "card_id", "merchant_id"):
        v = _identifier(obj, name)
        if isinstance(v, Rejection):
            return v
        fields[name] = v
    amount = obj.get("amount")
    if amount is None:
        return Rejection("missing_field", "amount is required")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        return Rejection("wrong_type", f"amount must be a number, got {type(amount).__name__}")
    if not (math.isfinite(amount) and 0 < amount <= MAX_AMOUNT):
        return Rejection("amount_out_of_range", f"amount={amount!r} must be > 0 and <= {MAX_AMOUNT:g}")
    ts = _timestamp(obj, "ts")
    if isinstance(ts, Rejection):
        return ts
    currency = _code(obj, "currency", 3, digits=False)
    mcc = _code(obj, "mcc", 4, digits=True)
    country = _code(obj, "country", 2, digits=False)
    for v in (currency, mcc, country):
        if isinstance(v, Rejection):
            return v
    channel = obj.get("channel")
    if channel is not None and not isinstance(channel, str):  # before `in`: a list or an object is unhashable
        return Rejection("wrong_type", f"channel must be a string, got {type(channel).__name__}")
    if channel is not None and channel not in CHANNELS:
        return Rejection("invalid_value", f"channel must be one of {sorted(CHANNELS)}, got {channel[:20]!r}")
    if check_key:
        bad_key = _check_key(key, fields["card_id"])
        if bad_key is not None:  # a Rejection is falsy: `if bad_key:` never fired
            return bad_key
    return Authorization(
        amount=float(amount),
        ts=ts,  # type: ignore[arg-type]
        currency=currency or "JPY",  # type: ignore[arg-type]
        mcc=mcc,  # type: ignore[arg-type]
        country=country,  # type: ignore[arg-type]
        channel=channel,
        **fields,
    )


def _valid_authorization(obj: dict[str, Any], key: bytes | None, check_key: bool) -> Authorization | None:
    """The authorization, if ``obj`` passes every check of `decode_authorization`, in the same order; None otherwise,
    for `decode_authorization` to find what is wrong. The checks of one that passes, at once (on what orjson decodes:
    exact types), instead of one at a time with a reason ready for each.

    >>> _valid_authorization({"tx_id": "t1", "card_id": "c1", "merchant_id": "m1", "amount": 5, "ts": MIN_TS_MS}, b"c1", True)
    Authorization(tx_id='t1', card_id='c1', merchant_id='m1', amount=5.0, ts=946684800000, currency='JPY', mcc=None, country=None, channel=None)
    >>> _valid_authorization({"tx_id": "t1", "card_id": "c1", "merchant_id": "m1", "amount": True, "ts": MIN_TS_MS}, b"c1", True)
    """
    tx_id, card_id, merchant_id = obj.get("tx_id"), obj.get("card_id"), obj.get("merchant_id")
    amount, ts, channel = obj.get("amount"), obj.get("ts"), obj.get("channel")
    currency, mcc, country = obj.get("currency"), obj.get("mcc"), obj.get("country")
    if not (type(tx_id) is str and 0 < len(tx_id) <= MAX_ID_LENGTH and tx_id.isprintable()
            and type(card_id) is str and 0 < len(card_id) <= MAX_ID_LENGTH and card_id.isprintable()
            and type(merchant_id) is str and 0 < len(merchant_id) <= MAX_ID_LENGTH and merchant_id.isprintable()
            and (type(amount) is float or type(amount) is int) and math.isfinite(amount) and 0 < amount <= MAX_AMOUNT
            and type(ts) is int and MIN_TS_MS <= ts <= time.time() * 1000 + MAX_FUTURE_MS
            and (currency is None or (type(currency) is str and len(currency) == 3 and currency.isascii()
                                      and currency.isupper() and currency.isalpha()))
            and (mcc is None or (type(mcc) is str and len(mcc) == 4 and mcc.isdigit()))
            and (country is None or (type(country) is str and len(country) == 2 and country.isascii()
                                     and country.isupper() and country.isalpha()))
            and (channel is None or (type(channel) is str and channel in CHANNELS))
            and (not check_key or (key is not None and key == card_id.encode()))):
        return None
    return Authorization(tx_id, card_id, merchant_id, float(amount), ts, currency or "JPY", mcc, country, channel)


def decode_label(raw: bytes | None, key: bytes | None, *, check_key: bool = True) -> Label | Rejection:
    """Validate one message of ``fraud.labels``."""
    obj = _parse_object(raw)
    if isinstance(obj, Rejection):
        return obj
    card_id = _identifier(obj, "card_id")
    if isinstance(card_id, Rejection):
        return card_id
    tx_id = _identifier(obj, "tx_id", required=False)
    if isinstance(tx_id, Rejection):
        return tx_id
    is_fraud = obj.get("is_fraud")
    if is_fraud is None:
        return Rejection("missing_field", "is_fraud is required")
    if not isinstance(is_fraud, bool):
        # The type, not a repr(): a value nested 1000 deep would overflow the stack, and a long one costs.
        return Rejection("wrong_type", f"is_fraud must be true or false, got {type(is_fraud).__name__}")
    ts = _timestamp(obj, "ts")
    if isinstance(ts, Rejection):
        return ts
    since = _timestamp(obj, "since", required=False)
    if isinstance(since, Rejection):
        return since
    if tx_id is None and since is None:
        return Rejection("missing_field", "a label needs tx_id, or since for a card-level label")
    if tx_id is None and not is_fraud:
        return Rejection("invalid_value", "a card-level label can only confirm fraud")
    source = obj.get("source")
    if source is None:
        return Rejection("missing_field", "source is required: it names who confirmed it")
    if not isinstance(source, str):
        return Rejection("wrong_type", f"source must be a string, got {type(source).__name__}")
    if not source or len(source) > 32:
        return Rejection("invalid_value", f"source must be 1..32 characters, got {len(source)}")
    if check_key:
        bad_key = _check_key(key, card_id)  # type: ignore[arg-type]
        if bad_key is not None:  # a Rejection is falsy: `if bad_key:` never fired
            return bad_key
    return Label(card_id=card_id, is_fraud=is_fraud, ts=ts, source=source, tx_id=tx_id, since=since)  # type: ignore[arg-type]


def decode_card_reissue(raw: bytes | None, key: bytes | None) -> CardReissue | Rejection:
    """Validate one message of ``fraud.card-reissues``."""
    obj = _parse_object(raw)
    if isinstance(obj, Rejection):
        return obj
    card_id = _identifier(obj, "card_id")
    if isinstance(card_id, Rejection):
        return card_id
    ts = _timestamp(obj, "ts")
    if isinstance(ts, Rejection):
        return ts
    bad_key = _check_key(key, card_id)  # type: ignore[arg-type]
    if bad_key is not None:
        return bad_key
    return CardReissue(card_id=card_id, ts=ts)  # type: ignore[arg-type]
