"""How often each rule fires, how often it alerted, and how precise it is.

Counts are kept per rule, overall and per event-time day (the UTC date of the
hit's ``ts``). Precision is measured against confirmed labels: a hit whose
transaction is later labelled counts as ``labelled``, and as
``confirmed_fraud`` if the label says fraud. A later label for the same
transaction that contradicts the earlier one replaces it.

Memory is bounded. To match a label to the rules that fired on its
transaction, the transactions with hits are remembered, but only the
``max_pending`` most recently first-hit ones: older ones are forgotten, and a
label arriving for a forgotten transaction is ignored (:meth:`RuleStats.record_label`
returns False), so precision covers only labels that arrive within that
horizon. A hit recorded twice for the same transaction and rule (a redelivered
event) is counted once while the transaction is remembered. Per-day counts are
kept for the ``max_days`` most recent days; overall counts are kept for ever.

A caller that keeps each transaction's hits anyway (the scorer does, in its snapshot, until the label or the
maturity) records them with ``remember=False`` and its labels with :meth:`RuleStats.record_labelled`: then
nothing is remembered here, and labels count however late they come.

>>> stats = RuleStats()
>>> stats.record_hit("R-1", "t1", 1_700_000_000_000, alerted=True)
>>> stats.record_hit("R-1", "t2", 1_700_000_000_000, alerted=True)
>>> stats.record_label("t1", True), stats.record_label("t2", False)
(True, True)
>>> stats.snapshot()["R-1"]["overall"]
{'hits': 2, 'alerts': 2, 'labelled': 2, 'confirmed_fraud': 1, 'precision': 0.5}
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from fraudstream.core.features.card import DAY_MS

from .ruleset import RuleOutcome

__all__ = ["RuleStats"]

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


class _Counts:
    __slots__ = ("alerts", "confirmed_fraud", "hits", "labelled")

    def __init__(self) -> None:
        self.hits = 0
        self.alerts = 0
        self.labelled = 0
        self.confirmed_fraud = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "alerts": self.alerts,
            "labelled": self.labelled,
            "confirmed_fraud": self.confirmed_fraud,
            "precision": self.confirmed_fraud / self.labelled if self.labelled else None,
        }


class _RuleCounts:
    __slots__ = ("days", "overall")

    def __init__(self) -> None:
        self.overall = _Counts()
        self.days: dict[str, _Counts] = {}

    def buckets(self, day: str) -> tuple[_Counts, ...]:
        bucket = self.days.get(day)
        return (self.overall,) if bucket is None else (self.overall, bucket)


class _Pending:
    """One remembered transaction: which rules fired on it (with day and alert), and its label."""

    __slots__ = ("label", "rules")

    def __init__(self) -> None:
        self.rules: dict[str, tuple[str, bool]] = {}
        self.label: bool | None = None


class RuleStats:
    """Per-rule hits, alerts and precision; see the module docstring for the memory bound.

    >>> stats = RuleStats(max_pending=1)
    >>> stats.record_hit("R-1", "t1", 1_700_000_000_000)
    >>> stats.record_hit("R-1", "t2", 1_700_000_000_000)  # t1 is forgotten
    >>> stats.record_label("t1", True)
    False
    """

    def __init__(self, max_pending: int = 100_000, max_days: int = 90) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be a positive integer, got {max_pending!r}")
        if isinstance(max_days, bool) or not isinstance(max_days, int) or max_days < 1:
            raise ValueError(f"max_days must be a positive integer, got {max_days!r}")
        self.max_pending = max_pending
        self.max_days = max_days
        self._rules: dict[str, _RuleCounts] = {}
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._day_names: dict[int, str] = {}
        self._newest_day: int | None = None

    # --- recording -----------------------------------------------------------

    def record_hit(self, rule_id: str, tx_id: str, ts: int, alerted: bool = False, remember: bool = True) -> None:
        """Rule ``rule_id`` fired on ``tx_id`` (event time ``ts``, ms); ``alerted`` if it raised an alert.

        ``remember=False`` when the caller keeps the hits with the transaction itself, and passes them to
        :meth:`record_labelled` with its label: nothing is held here, and a redelivery is the caller's to spot."""
        day_number = ts // DAY_MS
        day = self._day_name(day_number)
        if self._newest_day is None or day_number > self._newest_day:
            self._newest_day = day_number
            self._prune(self._day_name(max(day_number - self.max_days + 1, 1 - _EPOCH_ORDINAL)))
        counts = self._rules.get(rule_id)
        if counts is None:
            counts = self._rules[rule_id] = _RuleCounts()
        if not remember:
            self._count_hit(counts, day, day_number, alerted, None)
            return
        entry = self._pending.get(tx_id)
        if entry is None:
            entry = self._pending[tx_id] = _Pending()
            if len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
        else:
            seen = entry.rules.get(rule_id)
            if seen is not None:  # a redelivery: count nothing twice, but an alert reported late still counts
                if alerted and not seen[1]:
                    entry.rules[rule_id] = (seen[0], True)
                    for bucket in counts.buckets(seen[0]):
                        bucket.alerts += 1
                return
        entry.rules[rule_id] = (day, alerted)
        self._count_hit(counts, day, day_number, alerted, entry.label)

    def _count_hit(self, counts: _RuleCounts, day: str, day_number: int, alerted: bool, label: bool | None) -> None:
        assert self._newest_day is not None
        if day not in counts.days and day_number > self._newest_day - self.max_days:
            counts.days[day] = _Counts()
        for bucket in counts.buckets(day):  # a hit older than max_days only counts overall
            bucket.hits += 1
            bucket.alerts += alerted
            if label is not None:
                bucket.labelled += 1
                bucket.confirmed_fraud += label

    def record_outcome(self, outcome: RuleOutcome, tx_id: str, ts: int, alerted: bool = False) -> None:
        """Record every hit of a :class:`RuleOutcome`; ``alerted`` if an alert was raised for ``tx_id``,
        in which case it is credited to the outcome's ``alert_rules`` (shadow rules never alert)."""
        for rule_id in outcome.active_hits:
            self.record_hit(rule_id, tx_id, ts, alerted=alerted and rule_id in outcome.alert_rules)
        for rule_id in outcome.shadow_hits:
            self.record_hit(rule_id, tx_id, ts)

    def record_label(self, tx_id: str, is_fraud: bool) -> bool:
        """A confirmed outcome for ``tx_id``; False if no remembered hit is on that transaction."""
        entry = self._pending.get(tx_id)
        if entry is None:
            return False
        previous = entry.label
        is_fraud = bool(is_fraud)
        if previous is is_fraud:
            return True
        entry.label = is_fraud
        for rule_id, (day, _) in entry.rules.items():
            self._count_label(self._rules[rule_id], day, previous, is_fraud)
        return True

    def record_labelled(self, rule_ids: Iterable[str], ts: int, previous: bool | None, is_fraud: bool) -> None:
        """A label for a transaction of event time ``ts`` whose hits were recorded with ``remember=False``: the
        caller kept ``rule_ids`` (the rules that fired on it) and ``previous`` (its label before this one, or None).
        Counted however late the label comes.

        >>> stats = RuleStats()
        >>> stats.record_hit("R-1", "t1", 1_700_000_000_000, remember=False)
        >>> stats.record_labelled(["R-1"], 1_700_000_000_000, None, True)
        >>> stats.snapshot()["R-1"]["overall"]["precision"], stats.pending
        (1.0, 0)
        """
        is_fraud = bool(is_fraud)
        if previous is is_fraud:
            return
        day = self._day_name(ts // DAY_MS)
        for rule_id in rule_ids:
            counts = self._rules.get(rule_id)
            if counts is not None:  # else it fired before this process started: its hit is not counted here either
                self._count_label(counts, day, previous, is_fraud)

    @staticmethod
    def _count_label(counts: _RuleCounts, day: str, previous: bool | None, is_fraud: bool) -> None:
        """A new label on one hit, or one that contradicts the hit's earlier label (which it replaces)."""
        for bucket in counts.buckets(day):
            if previous is None:
                bucket.labelled += 1
            bucket.confirmed_fraud += int(is_fraud) - int(bool(previous))

    # --- days ------------------------------------------------------------------

    def _day_name(self, day_number: int) -> str:
        name = self._day_names.get(day_number)
        if name is None:
            if len(self._day_names) > 4 * self.max_days + 16:  # stray timestamps must not grow the cache
                self._day_names.clear()
            try:
                name = dt.date.fromordinal(_EPOCH_ORDINAL + day_number).isoformat()
            except (ValueError, OverflowError):
                raise ValueError(f"day {day_number} since 1970-01-01 is not a date; ts must be epoch ms") from None
            self._day_names[day_number] = name
        return name

    def _prune(self, oldest: str) -> None:
        # ISO dates sort as they fall in time.
        for counts in self._rules.values():
            for day in [day for day in counts.days if day < oldest]:
                del counts.days[day]

    # --- reporting -------------------------------------------------------------

    @property
    def pending(self) -> int:
        """How many transactions are remembered for matching labels."""
        return len(self._pending)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Plain, JSON-able counts: ``{rule_id: {"overall": {...}, "days": {"YYYY-MM-DD": {...}}}}``."""
        return {
            rule_id: {
                "overall": counts.overall.as_dict(),
                "days": {day: counts.days[day].as_dict() for day in sorted(counts.days)},
            }
            for rule_id, counts in sorted(self._rules.items())
        }

    def to_table(self, modes: Mapping[str, str] | None = None, days: int = 7, end_day: str | None = None) -> str:
        """The weekly-review table: one row per rule (those in ``modes`` too, even if they never fired),
        with hits for each of the ``days`` days up to ``end_day`` (default: the newest day seen).

        ``modes`` maps rule id to mode, e.g. ``RuleSet.modes``.
        """
        modes = modes or {}
        if end_day is None:
            end = (
                dt.date.fromordinal(_EPOCH_ORDINAL + self._newest_day)
                if self._newest_day is not None
                else dt.datetime.now(dt.UTC).date()
            )
        else:
            end = dt.date.fromisoformat(end_day)
        window = [(end - dt.timedelta(days=back)).isoformat() for back in range(days - 1, -1, -1)]
        header = ["rule", "mode", "hits", "alerts", "labelled", "precision", *(day[5:] for day in window)]
        rows = [header]
        empty = _RuleCounts()
        for rule_id in sorted(set(self._rules) | set(modes)):
            counts = self._rules.get(rule_id, empty)
            overall = counts.overall
            precision = f"{overall.confirmed_fraud / overall.labelled:.3f}" if overall.labelled else "-"
            per_day = [str(counts.days[day].hits) if day in counts.days else "0" for day in window]
            row = [rule_id, modes.get(rule_id, "?"), str(overall.hits), str(overall.alerts)]
            rows.append([*row, str(overall.labelled), precision, *per_day])
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        rows.insert(1, ["-" * width for width in widths])
        lines = []
        for row in rows:
            cells = [cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)
