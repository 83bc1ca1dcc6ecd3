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
    "decode_forwarded",
    "with_features",
    "encode_progress",
    "decode_progress",
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


# --- what the stages hand on ----------------------------------------------------

_FEATURES_LAST = b',"features":'


def decode_forwarded(raw: bytes) -> Any:
    """A record of fraud.authorizations-by-merchant decoded, but for its ``features`` when they come last (as intake
    writes them): those stay bytes, their JSON text, which the merchant stage passes on unread (`with_features`).
    Written by earlier versions, in the middle, they are decoded with the rest; so is a progress record.

    >>> decode_forwarded(b'{"auth":{"ts":5},"src":[0,7],"features":{"card_count_1h":1.0}}')
    {'auth': {'ts': 5}, 'src': [0, 7], 'features': b'{"card_count_1h":1.0}'}
    >>> decode_forwarded(b'{"auth":{"ts":5},"features":{"card_count_1h":1.0},"src":[0,7]}')["features"]
    {'card_count_1h': 1.0}

    Only an object's own field can be last with ``}}`` after it: a string cannot hold ``,"features":`` unescaped.
    """
    if raw[-2:] == b"}}":
        at = raw.rfind(_FEATURES_LAST)
        if at > 0:
            record = orjson.loads(raw[:at] + b"}")
            if type(record) is dict:
                record["features"] = raw[at + len(_FEATURES_LAST) : -1]
                return record
    return orjson.loads(raw)


def with_features(features: dict[str, Any] | bytes, more: dict[str, Any]) -> Any:
    """``features`` with ``more`` added (a key of both takes ``more``'s value, in ``features``' place), to encode:
    as a dict, or, for features left encoded (`decode_forwarded`), their JSON text joined with ``more``'s.

    >>> encode({"features": with_features(b'{"a":1.0,"b":2.0}', {"b": 3.0, "m": 4.0})})
    b'{"features":{"a":1.0,"b":2.0,"b":3.0,"m":4.0}}'
    >>> decode(_) == {"features": with_features({"a": 1.0, "b": 2.0}, {"b": 3.0, "m": 4.0})}
    True
    """
    if isinstance(features, dict):
        features.update(more)
        return features
    extra = orjson.dumps(more)
    if len(extra) == 2:  # {}
        return orjson.Fragment(features)
    if len(features) == 2:
        return orjson.Fragment(extra)
    return orjson.Fragment(features[:-1] + b"," + extra[1:])


def encode_progress(newest: tuple[int, str] | None, sources: dict[int, int]) -> bytes:
    """Which authorizations a merchant's state includes, as its tag (``MerchantStage.progress``): ``newest``,
    ``(ts, tx_id)`` of the newest applied in event-time order (None: none yet); ``sources``, per partition of
    fraud.authorizations, the newest offset applied from it.

    JSON, as every version wrote it, so that a worker of an earlier version reads it too (a rolling upgrade moves
    partitions both ways); the partitions are the object's keys, written by orjson from ints. (A struct was tried:
    no faster to pack for a few partitions, slower to read back.)

    >>> encode_progress((1700000000000, "t1"), {3: 41, 0: 7})
    b'{"f":[1700000000000,"t1"],"s":{"3":41,"0":7}}'
    >>> decode_progress(_), decode_progress(encode_progress(None, {}))
    (((1700000000000, 't1'), {3: 41, 0: 7}), (None, {}))
    """
    return orjson.dumps({"f": newest, "s": sources}, option=orjson.OPT_NON_STR_KEYS)


def decode_progress(raw: bytes) -> tuple[tuple[int, str] | None, dict[int, int]]:
    """`encode_progress`'s ``(newest, sources)`` back; a tag written before event-time order says nothing.

    >>> decode_progress(b'{"f":[1700000000000,"t1"],"s":{"-1":7}}'), decode_progress(b'{"offset":5}')
    (((1700000000000, 't1'), {-1: 7}), (None, {}))
    """
    d = orjson.loads(raw)
    if "f" not in d:
        return None, {}
    f = d["f"]
    return (None if f is None else (f[0], f[1])), {int(k): v for k, v in d["s"].items()}


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


def _parse_object(raw: bytes | None) -> dict[str, Any] | Rejection:
    if raw is None:
        return Rejection("not_json", "empty message")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejection("oversize", f"{len(raw)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
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
