"""The monitoring team's tools: rules, the live alert table, labels, fraud reports, reissues.

Each function takes the loaded :class:`~fraudstream.config.Settings` and the parsed
arguments of its ``fraudstream`` subcommand (see :mod:`fraudstream.cli`) and returns
the exit code:

- 0: done;
- 2: the input is wrong (a bad rule file, an empty card id, a ``--since`` in the future...):
  nothing was sent, and stderr says what is wrong. Bad input raises
  :class:`fraudstream.cli.UsageError`, which ``cli.main`` prints;
- 1: the brokers could not be reached or did not take the records.

Everything that is published is validated first by the same decoders the worker uses
(``decode_label``, ``decode_card_reissue``, ``RuleSet.from_json`` with ``RULE_FIELDS``), so
what the tools accept the worker accepts.

Topics are read by assignment (no consumer group: a join is slow on the embedded broker, and
these tools commit nothing). "The end" of a partition is the high-water mark reported with
fetched data, not the broker's ListOffsets answer, which the embedded broker gets wrong.
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from fraudstream.cli import UsageError
from fraudstream.config import Settings
from fraudstream.contracts import (
    LABEL_SOURCES,
    MAX_ID_LENGTH,
    MIN_TS_MS,
    Rejection,
    decode,
    decode_card_reissue,
    decode_label,
    encode,
)
from fraudstream.core.rules import RULE_ID_PATTERN, Rule, RuleError, RuleSet, RuleStats
from fraudstream.kafka.reach import BrokerUnreachable, ClientErrors, cluster_metadata
from fraudstream.knowledge import PipelineKnowledge, unknown_to_pipeline
from fraudstream.stream.learning import RULE_FIELDS, stored_rule

__all__ = ["rules_command", "tail_alerts", "publish_label", "report_fraud", "reissue_card", "OperatorError", "parse_since",
           "since_zone", "read_pipeline_knowledge", "KnowledgeSource"]

#: Without a high-water mark to go by, a read ends after this many seconds without a message.
IDLE_S = 2.0
#: ``rules stats --days``: default and most (RuleStats keeps 90 days of per-day counts).
DEFAULT_DAYS = 7
MAX_DAYS = 90
_DAY_MS = 86_400_000
#: Who may be named as a label's source from the command line ("maturity" is the worker's own).
_OPERATOR_SOURCES = tuple(sorted(LABEL_SOURCES - {"maturity"}))


class OperatorError(Exception):
    """The brokers could not do what was asked (exit code 1); the message says what happened."""


def _command(fn: Callable[..., int]) -> Callable[..., int]:
    """Broker trouble becomes a one-line message and exit code 1, never a traceback."""

    @functools.wraps(fn)
    def run(settings: Settings, args: Any, **options: Any) -> int:
        name = getattr(args, "command", None) or fn.__name__
        try:
            return fn(settings, args, **options)
        except OperatorError as exc:
            print(f"fraudstream {name}: {exc}", file=sys.stderr)
            return 1
        except KafkaException as exc:
            print(f"fraudstream {name}: Kafka error: {_kafka_text(exc)}", file=sys.stderr)
            return 1

    return run


def _kafka_text(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else exc
    return error.str() if isinstance(error, KafkaError) else str(error)


# --- Kafka plumbing -----------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _consumer(settings: Settings, errors: ClientErrors | None = None) -> Consumer:
    # A group id is required by librdkafka even with assign(); it never joins and commits nothing.
    return Consumer({**settings.kafka_client_config(), "group.id": f"fraudstream-operator-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": False,
                     "fetch.wait.max.ms": 100, **(errors if errors is not None else ClientErrors()).config()})


def _partitions(client: Consumer | Producer, settings: Settings, topic: str, errors: ClientErrors | None = None) -> list[int]:
    """The topic's partitions; a missing topic is a usage problem, an unreachable broker an OperatorError."""
    try:
        metadata = cluster_metadata(client, ClientErrors() if errors is None else errors, settings.bootstrap_servers, topic)
    except BrokerUnreachable as exc:
        raise OperatorError(str(exc)) from None
    info = metadata.topics.get(topic)
    if info is None or info.error is not None:
        if info is None or info.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise UsageError(f"topic {topic} does not exist on {settings.bootstrap_servers}; "
                             "create the topics with `fraudstream topics create`")
        raise OperatorError(f"topic {topic}: {info.error.str()}")
    if not info.partitions:
        raise OperatorError(f"topic {topic} has no partitions")
    return sorted(info.partitions)


def _at_end(consumer: Consumer, next_offsets: Mapping[tuple[str, int], int | None]) -> bool:
    """Every assigned partition is read up to the high-water mark of its latest fetch."""
    for (topic, partition), nxt in next_offsets.items():
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        if high < 0:  # no fetch answered yet
            return False
        if (nxt if nxt is not None else max(low, 0)) < high:
            return False
    return True


def _message_error(m: Any) -> bool:
    """True if ``m`` is an error event to skip; a fatal error stops the read."""
    err = m.error()
    if err is None:
        return False
    if err.code() != KafkaError._PARTITION_EOF and (err.fatal() or not err.retriable()):
        raise OperatorError(f"reading {m.topic()}: {err.str()}")
    return True


def _position(m: Any) -> tuple[str, int, int]:
    """A fetched message's topic, partition and offset (None only in error events, which are skipped before)."""
    return m.topic() or "", m.partition() or 0, m.offset() or 0


def _read_to_end(settings: Settings, topics: list[str], idle_s: float = IDLE_S) -> Iterator[Any]:
    """Every message of ``topics`` from the beginning up to their ends, in order within each partition."""
    errors = ClientErrors()
    consumer = _consumer(settings, errors)
    try:
        assignment = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in _partitions(consumer, settings, t, errors)]
        consumer.assign(assignment)
        next_offsets: dict[tuple[str, int], int | None] = {(tp.topic, tp.partition): None for tp in assignment}
        last = time.monotonic()
        while True:
            msgs = consumer.consume(5000, 0.2)
            for m in msgs:
                if _message_error(m):
                    continue
                topic, partition, offset = _position(m)
                next_offsets[(topic, partition)] = offset + 1
                yield m
            now = time.monotonic()
            if msgs:
                last = now
            if _at_end(consumer, next_offsets) or now - last >= idle_s:
                return
    finally:
        consumer.close()


@dataclass(frozen=True)
class _Delivered:
    partition: int
    offset: int


def _produce(settings: Settings, topic: str, records: Sequence[tuple[bytes, bytes | None]]) -> list[_Delivered]:
    """Produce ``(key, value)`` records and wait until the brokers have every one of them."""
    client_errors = ClientErrors()
    producer = Producer(settings.producer_config(**client_errors.config()))
    _partitions(producer, settings, topic, client_errors)
    delivered: list[_Delivered | None] = [None] * len(records)
    errors: list[str] = []

    def callback(index: int) -> Callable[[Any, Any], None]:
        def done(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(f"{records[index][0].decode('utf-8', 'replace')}: {err.str()}")
            else:
                delivered[index] = _Delivered(msg.partition(), msg.offset())

        return done

    for index, (key, value) in enumerate(records):
        producer.produce(topic, value, key, on_delivery=callback(index))
    left = producer.flush(30)
    if errors:
        raise OperatorError(f"the brokers refused {len(errors)} of {len(records)} records to {topic}: {'; '.join(errors[:3])}")
    if left or any(d is None for d in delivered):
        raise OperatorError(f"{left or 'some'} records to {topic} were not confirmed within 30 s; "
                            f"check the brokers at {settings.bootstrap_servers} and run the command again")
    return [d for d in delivered if d is not None]


# --- small formatting helpers ----------------------------------------------------------------


def _utc(ts_ms: int) -> str:
    try:
        return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"ts={ts_ms}"


def _table(rows: list[list[str]], right: frozenset[int] = frozenset()) -> str:
    """Fixed-width columns, a rule under the header; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate([rows[0], ["-" * w for w in widths], *rows[1:]]):
        cells = [cell.rjust(widths[i]) if i in right and n != 0 else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _check_id(what: str, value: str | None) -> str:
    """A card or transaction id from the command line, with the contract's limits and a clear message."""
    if value is None or not value.strip():
        raise UsageError(f"{what} is empty; give the {what} exactly as it appears in the alert")
    if value != value.strip():
        raise UsageError(f"{what} {value!r} has leading or trailing spaces")
    if len(value) > MAX_ID_LENGTH:
        raise UsageError(f"{what} is {len(value)} characters long; at most {MAX_ID_LENGTH}")
    if not value.isprintable():
        raise UsageError(f"{what} {value!r} contains control or unprintable characters")
    return value


def _rejected(what: str, rejection: Rejection) -> UsageError:
    return UsageError(f"{what} rejected ({rejection.reason}): {rejection.detail}; nothing was sent")


# --- rules --------------------------------------------------------------------------------------


@dataclass
class _RulesTopic:
    """``fraud.rules`` folded by key: the last value of each rule id, deletions applied."""

    raw: OrderedDict[str, bytes] = field(default_factory=OrderedDict)
    rules: dict[str, Rule] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)  # rule id -> why the workers refuse it
    records: int = 0

    def add(self, key: bytes | None, value: bytes | None) -> None:
        self.records += 1
        if key is None:
            return  # no rule id: the workers cannot apply it either
        rule_id = key.decode("utf-8", "replace")
        self.raw.pop(rule_id, None)
        if value is not None:
            self.raw[rule_id] = value

    def parse(self) -> _RulesTopic:
        self.rules.clear()
        self.invalid.clear()
        for rule_id, value in self.raw.items():
            try:
                rule = stored_rule(rule_id, value)
            except (RuleError, ValueError, TypeError) as exc:
                self.invalid[rule_id] = str(exc)
            else:
                self.rules[rule_id] = rule
        return self

    @property
    def modes(self) -> dict[str, str]:
        return {**{rule_id: "invalid" for rule_id in self.invalid}, **{r.id: r.mode for r in self.rules.values()}}


def _read_rules(settings: Settings) -> _RulesTopic:
    state = _RulesTopic()
    for m in _read_to_end(settings, [settings.topic_rules]):
        state.add(m.key(), m.value())
    return state.parse()


def _action_text(rule: Rule) -> str:
    return f"score {rule.score_delta:+.2f}" if rule.action == "score" and rule.score_delta is not None else rule.action


def _rules_table(state: _RulesTopic) -> str:
    rows = [["id", "mode", "action", "condition", "description"]]
    for rule_id in sorted(state.raw):
        rule = state.rules.get(rule_id)
        if rule is None:
            rows.append([rule_id, "INVALID", "-", "-", f"ignored by the workers: {state.invalid[rule_id]}"])
        else:
            rows.append([rule.id, rule.mode, _action_text(rule), rule.condition, rule.description])
    return _table(rows)


def _load_rule_file(target: str | None) -> tuple[RuleSet, Path]:
    if not target:
        raise UsageError("rules apply needs a rule file: fraudstream rules apply FILE.json")
    path = Path(target)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read rule file {target}: {exc.strerror or exc}") from None
    try:
        obj = decode(raw)
    except ValueError:
        obj = None  # RuleSet.from_json says what is wrong with the JSON
    else:
        if isinstance(obj, dict):  # one rule on its own
            raw = encode([obj])
    if isinstance(obj, list) and not obj:
        raise UsageError(f"{target} holds no rules; nothing applied")
    try:
        return RuleSet.from_json(raw, known_names=RULE_FIELDS), path
    except RuleError as exc:
        raise UsageError(f"{target}: {exc}; nothing was sent, the rules in force are unchanged") from None


def _rules_apply(settings: Settings, args: Any) -> int:
    ruleset, path = _load_rule_file(args.target)
    before = _read_rules(settings)
    records = [(rule.id.encode(), encode(rule.to_dict())) for rule in ruleset]
    _produce(settings, settings.topic_rules, records)
    print(f"applied {len(ruleset)} rule{'s' if len(ruleset) != 1 else ''} from {path} to {settings.topic_rules}:")
    rows = [["id", "change", "mode", "action", "condition"]]
    for rule in ruleset:
        old = before.rules.get(rule.id)
        if old is None:
            change = "replaced invalid" if rule.id in before.invalid else "new"
        elif old == rule:
            change = "unchanged"
        else:
            diffs = [name for name in ("mode", "action", "score_delta", "condition", "description") if getattr(old, name) != getattr(rule, name)]
            change = "changed " + ",".join(diffs)
            if "mode" in diffs:
                change += f" (was {old.mode})"
        rows.append([rule.id, change, rule.mode, _action_text(rule), rule.condition])
    print(_table(rows))
    return 0


def _rules_delete(settings: Settings, args: Any) -> int:
    rule_id = args.target
    if not rule_id:
        raise UsageError("rules delete needs a rule id: fraudstream rules delete RULE_ID")
    if not RULE_ID_PATTERN.fullmatch(rule_id):
        raise UsageError(f"{rule_id!r} is not a rule id (1 to 64 of A-Z a-z 0-9 _ . -)")
    state = _read_rules(settings)
    if rule_id not in state.raw:
        known = ", ".join(sorted(state.raw)) or "none"
        raise UsageError(f"there is no rule {rule_id!r} in {settings.topic_rules} (rules in force: {known}); nothing deleted")
    _produce(settings, settings.topic_rules, [(rule_id.encode(), None)])
    print(f"deleted rule {rule_id} from {settings.topic_rules}; the workers stop applying it within a second")
    return 0


def _rules_list(settings: Settings, args: Any) -> int:
    state = _read_rules(settings)
    if not state.raw:
        print(f"no rules in {settings.topic_rules}; add some with `fraudstream rules apply FILE.json`")
        return 0
    print(_rules_table(state))
    counts = ", ".join(f"{sum(1 for r in state.rules.values() if r.mode == mode)} {mode}" for mode in ("active", "shadow", "off"))
    invalid = f", {len(state.invalid)} INVALID (ignored by the workers)" if state.invalid else ""
    print(f"\n{len(state.raw)} rules in {settings.topic_rules}: {counts}{invalid}")
    return 0


@dataclass(frozen=True, slots=True)
class _Hit:
    tx_id: str
    card_id: str
    ts: int
    rules: tuple[str, ...]
    alert_rules: frozenset[str]  # the hits that raised (or updated) an alert


def _scored_hit(value: Any) -> _Hit | None | str:
    """A score record's rule hits; None if no rule fired; a string saying why it is unusable."""
    if not isinstance(value, dict):
        return "not a JSON object"
    tx_id, card_id, ts, decision = value.get("tx_id"), value.get("card_id"), value.get("ts"), value.get("decision")
    if not isinstance(tx_id, str) or not isinstance(card_id, str):
        return "tx_id and card_id must be strings"
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < MIN_TS_MS:
        return "ts must be epoch milliseconds"
    if not isinstance(decision, dict):
        return "decision is missing"
    decided = decision.get("rules") or []
    hits = value.get("rule_hits")
    if hits is None:  # recorded before shadow hits were published: the alerting rules are all we know
        hits = decided
    if not isinstance(hits, list) or not isinstance(decided, list) or not all(isinstance(r, str) for r in (*hits, *decided)):
        return "rule_hits and decision.rules must be lists of rule ids"
    if not hits:
        return None
    alerted = decision.get("action") not in (None, "none")
    return _Hit(tx_id, card_id, ts, tuple(dict.fromkeys(hits)), frozenset(decided) if alerted else frozenset())


def _rules_stats(settings: Settings, args: Any) -> int:
    days = DEFAULT_DAYS if getattr(args, "days", None) is None else args.days
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"--days must be between 1 and {MAX_DAYS}, got {days}")
    state = _read_rules(settings)
    hits: list[_Hit] = []
    newest: int | None = None
    scored = bad_scores = 0
    for m in _read_to_end(settings, [settings.topic_scores]):
        try:
            value = decode(m.value()) if m.value() is not None else None
        except ValueError:
            value = None
        hit = _scored_hit(value)
        if isinstance(hit, str):
            bad_scores += 1
            continue
        scored += 1
        ts = value["ts"]  # type: ignore[index]
        newest = ts if newest is None or ts > newest else newest
        if hit is not None:
            hits.append(hit)

    # The review window: the `days` days of event time ending with the newest scored authorization.
    end_day = (newest if newest is not None else _now_ms()) // _DAY_MS
    first_ms = (end_day - days + 1) * _DAY_MS
    window = [h for h in hits if h.ts >= first_ms]
    stats = RuleStats(max_pending=max(1, len(window)), max_days=MAX_DAYS)
    in_window: dict[str, _Hit] = {}  # tx_id -> its first record: redeliveries are counted once
    for h in window:
        for rule_id in h.rules:  # RuleStats counts a redelivered hit once, and credits an alert reported late
            stats.record_hit(rule_id, h.tx_id, h.ts, alerted=rule_id in h.alert_rules)
        in_window.setdefault(h.tx_id, h)
    by_card: dict[str, list[tuple[int, str]]] = {}
    for h in in_window.values():
        by_card.setdefault(h.card_id, []).append((h.ts, h.tx_id))

    labels = card_reports = bad_labels = matched = 0
    # Labels are keyed by card, so every label of a transaction is in one partition, in the order it was
    # published: applying them in that order lets a later label (a chargeback) replace an earlier one.
    for m in _read_to_end(settings, [settings.topic_labels]):
        label = decode_label(m.value(), m.key())
        if isinstance(label, Rejection):
            bad_labels += 1
            continue
        labels += 1
        if label.card_level:
            card_reports += 1
            since = label.since if label.since is not None else 0
            found = [stats.record_label(tx_id, True) for ts, tx_id in by_card.get(label.card_id, ()) if ts >= since]
            matched += any(found)
        else:
            matched += stats.record_label(label.tx_id or "", label.is_fraud)

    end = dt.date(1970, 1, 1) + dt.timedelta(days=end_day)
    start = end - dt.timedelta(days=days - 1)
    modes = {rule_id: "deleted" for rule_id in stats.snapshot()} | state.modes
    print(f"rule review: {days} day{'s' if days != 1 else ''} of event time, {start} .. {end} (UTC)")
    if newest is None:
        print(f"  no scored authorizations in {settings.topic_scores} yet")
    else:
        print(f"  {scored} score records read, newest at {_utc(newest)}; {len(in_window)} authorizations in the window had rule hits")
    print(f"  {labels} labels read ({card_reports} card-level reports), {matched} of them about authorizations with rule hits")
    skipped = [f"{n} unreadable {what}" for n, what in ((bad_scores, "score records"), (bad_labels, "labels")) if n]
    if skipped:
        print(f"  skipped {' and '.join(skipped)}")
    print()
    print(stats.to_table(modes=modes, days=min(days, 14), end_day=end.isoformat()))
    print("\nhits include shadow rules; alerts count hits that raised or updated an alert; "
          "precision = confirmed fraud / labelled hits")
    return 0


@_command
def rules_command(settings: Settings, args: Any) -> int:
    """``fraudstream rules list | apply FILE | delete RULE_ID | stats [--days N]``."""
    action = args.action
    if action in ("list", "stats") and args.target:
        raise UsageError(f"rules {action} takes no argument, got {args.target!r}")
    if action != "stats" and getattr(args, "days", None) is not None:
        raise UsageError("--days is an option of `rules stats`")
    handlers = {"list": _rules_list, "apply": _rules_apply, "delete": _rules_delete, "stats": _rules_stats}
    if action not in handlers:
        raise UsageError(f"unknown rules action {action!r}; use list, apply, delete or stats")
    return handlers[action](settings, args)


# --- the alert tail -----------------------------------------------------------------------------

_REASON_WIDTH = 44
#: (header, width, right-aligned). Identifiers are never cut: a longer one pushes the row along.
_ALERT_COLUMNS = (
    ("time (UTC)", 19, False),
    ("action", 6, False),
    ("alert_id", 20, False),
    ("card", 12, False),
    ("merchant", 12, False),
    ("amount", 16, True),
    ("score", 5, True),
    ("model", 12, False),
    ("reason", _REASON_WIDTH, False),
    ("rules", 0, False),
)


def _alert_line(cells: list[str]) -> str:
    out = [cell.rjust(width) if right else cell.ljust(width) for cell, (_, width, right) in zip(cells, _ALERT_COLUMNS, strict=True)]
    return "  ".join(out).rstrip()


def _alert_header() -> str:
    return _alert_line([name for name, _, _ in _ALERT_COLUMNS]) + "\n" + _alert_line(["-" * max(w, 5) for _, w, _ in _ALERT_COLUMNS])


@dataclass(frozen=True, slots=True)
class _Alert:
    alert_id: str
    action: str
    tx_id: str
    card_id: str
    merchant_id: str
    amount: float
    currency: str
    ts: int
    score: float
    model_version: str
    reasons: tuple[str, ...]
    rules: tuple[str, ...]


def _parse_alert(raw: bytes | None) -> _Alert | str:
    try:
        v = decode(raw) if raw is not None else None
    except ValueError:
        return "not valid JSON"
    if not isinstance(v, dict):
        return "not a JSON object"
    for name in ("alert_id", "tx_id", "card_id", "merchant_id"):
        if not isinstance(v.get(name), str):
            return f"{name} must be a string"
    ts, score, amount = v.get("ts"), v.get("score"), v.get("amount")
    if isinstance(ts, bool) or not isinstance(ts, int):
        return "ts must be epoch milliseconds"
    for name, x in (("score", score), ("amount", amount)):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return f"{name} must be a number"
    reasons, rules = v.get("reasons") or [], v.get("rules") or []
    if not isinstance(reasons, list) or not isinstance(rules, list):
        return "reasons and rules must be lists"
    return _Alert(v["alert_id"], str(v.get("action") or "alert"), v["tx_id"], v["card_id"], v["merchant_id"], float(v["amount"]),
                  str(v.get("currency") or ""), ts, float(v["score"]), str(v.get("model_version") or "-"),
                  tuple(map(str, reasons)), tuple(map(str, rules)))


def _format_alert(a: _Alert) -> str:
    first = a.reasons[0] if a.reasons else "-"
    more = list(a.reasons[1:])
    if len(first) > _REASON_WIDTH:  # cut in the row, in full underneath
        more.insert(0, first)
        first = first[: _REASON_WIDTH - 1] + "…"
    amount = f"{a.amount:,.2f}" + (f" {a.currency}" if a.currency else "")
    row = _alert_line([_utc(a.ts), a.action, a.alert_id, a.card_id, a.merchant_id, amount, f"{a.score:.3f}",
                       a.model_version, first, ",".join(a.rules) or "-"])
    return "\n".join([row, *(f"{'':22}{reason}" for reason in more)])


@dataclass
class _AlertFilter:
    min_score: float | None
    card: str | None
    rule: str | None

    def __call__(self, a: _Alert) -> bool:
        return ((self.min_score is None or a.score >= self.min_score)
                and (self.card is None or a.card_id == self.card)
                and (self.rule is None or self.rule in a.rules))


@_command
def tail_alerts(settings: Settings, args: Any) -> int:
    """``fraudstream alerts``: the review topic as a live table, newest last.

    Without ``--from-beginning`` only alerts raised from now on are shown. ``--timeout S`` ends
    the tail after S seconds with nothing new to show (time spent catching up does not count);
    ``--limit N`` after N alerts; otherwise it runs until Ctrl-C.
    """
    if args.min_score is not None and not 0.0 <= args.min_score <= 1.0:
        raise UsageError(f"--min-score is a model score between 0 and 1, got {args.min_score}")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout is idle seconds and must be positive, got {args.timeout}")
    card = _check_id("--card", args.card) if args.card is not None else None
    if args.rule is not None and not RULE_ID_PATTERN.fullmatch(args.rule):
        raise UsageError(f"--rule {args.rule!r} is not a rule id (1 to 64 of A-Z a-z 0-9 _ . -)")
    wanted = _AlertFilter(args.min_score, card, args.rule)
    topic = settings.topic_alerts

    errors = ClientErrors()
    consumer = _consumer(settings, errors)
    shown = read = skipped = 0
    tailing = False
    started_ms = _now_ms()
    try:
        parts = _partitions(consumer, settings, topic, errors)
        start = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in parts])
        next_offsets: dict[tuple[str, int], int | None] = {(topic, p): None for p in parts}
        # Tailing from the end: some brokers (the embedded one) resolve "the end" too early, so
        # records below the first high-water mark fetched, written before we started, are old.
        old_below: dict[int, int] = {}
        seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()  # redeliveries are shown once
        print(_alert_header(), flush=True)
        tailing = True
        last_activity = last_message = time.monotonic()
        while args.limit is None or shown < args.limit:
            msgs = consumer.consume(500, 0.2)
            if not args.from_beginning:
                for p in parts:
                    if p not in old_below:
                        high = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)[1]
                        if high >= 0:
                            old_below[p] = high
                            if next_offsets[(topic, p)] is None:
                                next_offsets[(topic, p)] = high
            for m in msgs:
                if _message_error(m):
                    continue
                _, partition, offset = _position(m)
                next_offsets[(topic, partition)] = offset + 1
                last_message = time.monotonic()
                if (not args.from_beginning and offset < old_below.get(partition, sys.maxsize)
                        and m.timestamp()[1] < started_ms):
                    continue
                read += 1
                alert = _parse_alert(m.value())
                if isinstance(alert, str):
                    skipped += 1
                    print(f"skipped an unreadable alert at partition {m.partition()} offset {m.offset()}: {alert}",
                          file=sys.stderr, flush=True)
                    continue
                key = (alert.alert_id, alert.tx_id, alert.action)
                if key in seen or not wanted(alert):
                    continue
                seen[key] = None
                if len(seen) > 100_000:
                    seen.popitem(last=False)
                print(_format_alert(alert), flush=True)
                shown += 1
                last_activity = time.monotonic()
                if args.limit is not None and shown >= args.limit:
                    break
            now = time.monotonic()
            behind = not _at_end(consumer, next_offsets) and now - last_message < IDLE_S
            if behind:
                last_activity = now  # catching up is not idling
            if args.timeout is not None and now - last_activity >= args.timeout:
                break
    finally:
        consumer.close()
        if tailing:  # also after Ctrl-C; not when the brokers could not be reached: their one message says it all
            filtered = read - skipped - shown
            print(f"-- {shown} alert{'s' if shown != 1 else ''} shown"
                  + (f", {filtered} filtered out" if filtered > 0 else "")
                  + (f", {skipped} unreadable" if skipped else ""), file=sys.stderr, flush=True)
    return 0


# --- labels, fraud reports, reissues --------------------------------------------------------------


def _publish(settings: Settings, topic: str, key: str, value: dict[str, Any]) -> _Delivered:
    return _produce(settings, topic, [(key.encode(), encode(value))])[0]


#: A pipeline whose newest scored authorization is this far behind the wall clock is replaying (or a demo).
BEHIND_MS = 60_000
#: Score records kept per partition to find its newest event time (records are written in about that order).
_TAIL = 64

#: Where ``label``, ``report-fraud`` and ``reissue`` learn what the pipeline knows of a card (and a transaction):
#: :func:`read_pipeline_knowledge` from the command line, the console's view from the console.
KnowledgeSource = Callable[[Settings, str, "str | None"], PipelineKnowledge]


def read_pipeline_knowledge(settings: Settings, card_id: str, tx_id: str | None = None) -> PipelineKnowledge:
    """Read the scores topic once: the card's authorizations, the transaction's card, each partition's newest time."""
    known = PipelineKnowledge(card_id, tx_id)
    card_key, tx_bytes = card_id.encode(), tx_id.encode() if tx_id is not None else None
    tails: dict[int, deque[bytes]] = {}
    for m in _read_to_end(settings, [settings.topic_scores]):
        raw = m.value()
        if raw is None:
            continue
        known.scored += 1
        partition = m.partition()
        tails.setdefault(partition, deque(maxlen=_TAIL)).append(raw)
        mine = m.key() == card_key
        if not mine and (tx_bytes is None or tx_bytes not in raw):
            continue  # the common case: decoded only when it may matter
        record = _score_record(raw)
        if record is None:
            continue
        if mine and record["card_id"] == card_id:
            known.card_ts.append(record["ts"])
            known.card_partition = partition
        if tx_id is not None and record["tx_id"] == tx_id:
            known.tx_card = record["card_id"]
    for partition, tail in tails.items():
        times = [r["ts"] for r in map(_score_record, tail) if r is not None]
        if times:
            known.newest[partition] = max(times)
    return known


def _score_record(raw: bytes) -> dict[str, Any] | None:
    try:
        v = decode(raw)
    except ValueError:
        return None
    ok = (isinstance(v, dict) and isinstance(v.get("tx_id"), str) and isinstance(v.get("card_id"), str)
          and isinstance(v.get("ts"), int) and not isinstance(v.get("ts"), bool))
    return v if ok else None


def _check_known(settings: Settings, known: PipelineKnowledge, force: bool) -> None:
    """Refuse (unless forced) what :func:`~fraudstream.knowledge.unknown_to_pipeline` finds wrong."""
    problem = unknown_to_pipeline(known, settings.topic_scores)
    if problem is None:
        return
    if not force:
        raise UsageError(problem + "; nothing was sent")
    print(f"warning (--force): {problem.split('; ')[0]}", file=sys.stderr)


def _stamp_note(known: PipelineKnowledge, stamp: int, wall: int) -> str | None:
    if wall - stamp < BEHIND_MS:
        return None
    behind = (wall - stamp) / 86_400_000
    lag = f"{behind:.1f} days" if behind >= 1 else f"{(wall - stamp) / 60_000:.0f} minutes"
    return (f"stamped with the pipeline's event time {_utc(stamp)} UTC, {lag} behind the wall clock (a replay or a demo), "
            "so that it applies to the card's next authorization")


@_command
def publish_label(settings: Settings, args: Any, knowledge: KnowledgeSource = read_pipeline_knowledge) -> int:
    """``fraudstream label TX_ID --fraud|--legit --card CARD [--source analyst] [--force]``."""
    if bool(args.fraud) == bool(args.legit):
        raise UsageError("give exactly one of --fraud or --legit")
    tx_id = _check_id("transaction id", args.tx_id)
    card = _check_id("--card", args.card)
    source = args.source
    if source not in _OPERATOR_SOURCES:
        raise UsageError(f"--source must be one of {', '.join(_OPERATOR_SOURCES)}, got {source!r}")
    known = knowledge(settings, card, tx_id)
    _check_known(settings, known, getattr(args, "force", False))
    wall = _now_ms()
    stamp = known.stamp(wall)
    value = {"tx_id": tx_id, "card_id": card, "is_fraud": bool(args.fraud), "ts": stamp, "source": source}
    label = decode_label(encode(value), card.encode())
    if isinstance(label, Rejection):
        raise _rejected("label", label)
    where = _publish(settings, settings.topic_labels, card, value)
    verdict = "FRAUD" if args.fraud else "legitimate"
    print(f"labelled transaction {tx_id} on card {card} {verdict} (source {source}); "
          f"{settings.topic_labels} partition {where.partition} offset {where.offset}")
    note = _stamp_note(known, stamp, wall)
    if note:
        print(f"  {note}")
    return 0


def _zone(offset_h: int) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=offset_h))


def _zone_name(offset_h: int) -> str:
    return "UTC" if offset_h == 0 else f"UTC{offset_h:+03d}:00"


def _has_zone(text: str) -> bool:
    text = text.strip()
    if text.isdigit() or text[-1:] in "zZ":
        return True
    try:
        return dt.datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return True  # not a time at all: parse_since says so


def since_zone(text: str, offset_h: int) -> str | None:
    """The zone a ``--since`` without one was read in, to print beside it; None when the text gave its own.

    >>> since_zone("2026-11-20T17:00:00", 9), since_zone("2026-11-20T08:00:00Z", 9)
    ('UTC+09:00 (FRAUDSTREAM_TZ_OFFSET_H; no zone given)', None)
    """
    return None if _has_zone(text) else f"{_zone_name(offset_h)} (FRAUDSTREAM_TZ_OFFSET_H; no zone given)"


def parse_since(text: str, now_ms: int | None = None, offset_h: int = 0) -> int:
    """``--since``: ISO 8601 or epoch milliseconds, not in the future and not before 2000.

    A time or a day without a zone is in the deployment's zone, ``offset_h`` hours from UTC
    (``FRAUDSTREAM_TZ_OFFSET_H``, the zone of the night and weekend features): ``2026-11-20`` is
    midnight there. :func:`since_zone` says which zone that was, for the command to print.

    >>> parse_since("2024-03-10T08:00:00Z"), parse_since("2024-03-10"), parse_since("1710057600000")
    (1710057600000, 1710028800000, 1710057600000)
    >>> parse_since("2024-03-10T17:00:00", offset_h=9)
    1710057600000
    """
    now_ms = _now_ms() if now_ms is None else now_ms
    text = (text or "").strip()
    if not text:
        raise UsageError("--since is empty: give an ISO time (2026-11-20T08:00:00Z or 2026-11-20) or epoch milliseconds")
    if text.isdigit():
        ms = int(text)
        if ms < 100_000_000_000:  # 10 digits or fewer: epoch seconds, or nonsense
            hint = f"; did you mean {ms * 1000} (that many seconds, in milliseconds)?" if ms >= MIN_TS_MS // 1000 else ""
            raise UsageError(f"--since {text} is not epoch milliseconds{hint}")
    else:
        iso = text[:-1] + "+00:00" if text[-1:] in "zZ" else text
        try:
            when = dt.datetime.fromisoformat(iso)
        except ValueError:
            raise UsageError(f"--since {text!r} is not a time: use ISO 8601 (2026-11-20T08:00:00Z, 2026-11-20T17:00:00+09:00, "
                             f"or 2026-11-20 for midnight {_zone_name(offset_h)}) or epoch milliseconds") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_zone(offset_h))
        ms = int(when.timestamp() * 1000)
    if ms < MIN_TS_MS:
        raise UsageError(f"--since {text} is before 2000-01-01; no card authorization is that old")
    if ms > now_ms:
        raise UsageError(f"--since {text} ({_utc(ms)} UTC) is in the future (it is now {_utc(now_ms)} UTC); "
                         "give the time the customer says the fraud started")
    return ms


@_command
def report_fraud(settings: Settings, args: Any, knowledge: KnowledgeSource = read_pipeline_knowledge) -> int:
    """``fraudstream report-fraud CARD --since TIME [--force]``: a customer's fraud report, a card-level label."""
    card = _check_id("card", args.card)
    since = parse_since(args.since, _now_ms(), settings.timezone_offset_h)
    zone = since_zone(args.since, settings.timezone_offset_h)
    known = knowledge(settings, card, None)
    _check_known(settings, known, getattr(args, "force", False))
    wall = _now_ms()
    stamp = known.stamp(wall)
    if since > stamp:
        raise UsageError(f"--since {args.since.strip()} ({_utc(since)} UTC) is after the pipeline's event time "
                         f"({_utc(stamp)} UTC, its newest scored authorization: a replay or a demo runs behind the wall "
                         "clock); give the time in the pipeline's time; nothing was sent")
    value = {"card_id": card, "is_fraud": True, "since": since, "ts": stamp, "source": "customer_report"}
    label = decode_label(encode(value), card.encode())
    if isinstance(label, Rejection):
        raise _rejected("fraud report", label)
    where = _publish(settings, settings.topic_labels, card, value)
    if zone is not None:
        print(f"--since {args.since.strip()} read in {zone}: {_utc(since)} UTC")
    labelled = sum(ts >= since for ts in known.card_ts)
    counted = f"{labelled} scored so far" if known.complete else f"{labelled} among its latest scored"
    print(f"reported card {card} compromised since {_utc(since)} UTC (source customer_report): its transactions since then "
          f"({counted}) are labelled fraud and it is blocked until reissued; {settings.topic_labels} "
          f"partition {where.partition} offset {where.offset}")
    note = _stamp_note(known, stamp, wall)
    if note:
        print(f"  {note}")
    return 0


@_command
def reissue_card(settings: Settings, args: Any, knowledge: KnowledgeSource = read_pipeline_knowledge) -> int:
    """``fraudstream reissue CARD [--force]``: the card was replaced, stop blocking it."""
    card = _check_id("card", args.card)
    known = knowledge(settings, card, None)
    _check_known(settings, known, getattr(args, "force", False))
    wall = _now_ms()
    stamp = known.stamp(wall)
    value = {"card_id": card, "ts": stamp}
    event = decode_card_reissue(encode(value), card.encode())
    if isinstance(event, Rejection):
        raise _rejected("reissue", event)
    where = _publish(settings, settings.topic_card_reissues, card, value)
    print(f"card {card} reissued: the workers stop blocking it; {settings.topic_card_reissues} partition {where.partition} "
          f"offset {where.offset}")
    note = _stamp_note(known, stamp, wall)
    if note:
        print(f"  {note.replace('next authorization', 'next authorization (the new card)')}")
    return 0
