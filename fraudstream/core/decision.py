"""Decisions: which scored authorizations become alerts, within the team's budget.

- The threshold adapts so that about ``budget_per_day`` alerts a day are
  raised: it is the score that the top ``budget_per_day`` of the last 24
  hours (event time) reached, held between a floor and a ceiling.
- A card with an open alert gets updates to it, not new alerts, during the
  cool-down.
- A card with confirmed fraud is blocked on every authorization until it is
  reissued.

>>> t = AdaptiveThreshold(budget_per_day=1, floor=0.1, ceiling=0.9, warmup=3)
>>> for s in (0.2, 0.3, 0.8, 0.4): t.observe(1_700_000_000_000, s)
>>> t.value(1_700_000_000_000)
0.8
"""

from __future__ import annotations

import struct
from array import array
from typing import Final

from fraudstream.contracts import alert_id_for
from fraudstream.core.features.card import HOUR_MS, NO_TIME

__all__ = ["AdaptiveThreshold", "CardStanding", "Decision", "DecisionPolicy", "ACTIONS"]

ACTIONS = ("none", "alert", "update", "block")
_BINS: Final = 1000
_NO_SCORES = array("I", bytes(4 * _BINS))  # an hour of the histogram with no score in it


class AdaptiveThreshold:
    """Running top-k threshold over 24 hourly score histograms, in event time."""

    __slots__ = ("budget_per_day", "floor", "ceiling", "warmup", "head", "first", "hist", "total", "seen", "_cached", "_stale")

    def __init__(self, budget_per_day: float, floor: float, ceiling: float, warmup: int = 1000) -> None:
        self.budget_per_day = budget_per_day
        self.floor = floor
        self.ceiling = ceiling
        self.warmup = warmup
        self.head = -1
        self.first = -1  # first hour observed: until a day has passed, the budget is pro rata
        self.hist = array("I", bytes(4 * 24 * _BINS))
        self.total = array("I", bytes(4 * _BINS))  # the 24 hours summed, kept in step with hist
        self.seen = 0
        self._cached = ceiling
        self._stale = 0

    def observe(self, ts: int, score: float) -> None:
        hour = ts // HOUR_MS
        if self.first < 0:
            self.first = hour
        if hour > self.head:
            hist, total = self.hist, self.total
            for h in range(max(self.head + 1, hour - 23), hour + 1):
                base = (h % 24) * _BINS
                # The hour leaving the day, as a list (one conversion in C, then native ints, not one Python int
                # per bin from the array), then zeroed in one copy.
                b = 0
                for n in hist[base : base + _BINS].tolist():
                    if n:
                        total[b] -= n
                    b += 1
                hist[base : base + _BINS] = _NO_SCORES
            self.head = hour
            self._stale = 1 << 30
        elif hour <= self.head - 24:
            return
        b = min(int(score * _BINS), _BINS - 1)
        self.hist[(hour % 24) * _BINS + b] += 1
        self.total[b] += 1
        self.seen += 1
        self._stale += 1

    def value(self, ts: int) -> float:
        if self.seen < self.warmup:
            return self.ceiling
        # A fresh scan every 64 scores: the threshold moves slowly, the scan is 1000 steps.
        if self._stale >= 64:
            self._cached = self._scan()
            self._stale = 0
        return self._cached

    def _scan(self) -> float:
        hours = min(24, self.head - self.first + 1)
        remaining = self.budget_per_day * hours / 24
        total: list[int] = self.total.tolist()  # native ints below, not one Python int per bin from the array
        for b in range(_BINS - 1, -1, -1):
            remaining -= total[b]
            if remaining <= 0:
                return min(max(b / _BINS, self.floor), self.ceiling)
        return self.floor

    def to_bytes(self) -> bytes:
        return struct.pack("<qqq", self.head, self.first, self.seen) + self.hist.tobytes()

    def load_bytes(self, raw: bytes) -> None:
        self.head, self.first, self.seen = struct.unpack_from("<qqq", raw)
        self.hist = array("I", raw[24:])
        self.total = array("I", bytes(4 * _BINS))
        for i, n in enumerate(self.hist):
            self.total[i % _BINS] += n
        self._stale = 1 << 30


_STANDING = struct.Struct("<qqqq")


class CardStanding:
    """A card's alert and block state: kept where its scores are decided.

    >>> s = CardStanding(); s.compromised
    False
    >>> CardStanding.from_bytes(s.to_bytes()).open_alert_id is None
    True
    """

    __slots__ = ("clock", "compromised_since", "reissued_at", "open_alert_id", "open_alert_until", "fraud_from")

    def __init__(self) -> None:
        self.clock = NO_TIME  # newest event time seen, for eviction
        self.compromised_since = NO_TIME  # a confirmed fraud: block from then ...
        self.reissued_at = NO_TIME  # ... until the card was replaced (event time, so arrival order does not matter)
        self.open_alert_id: str | None = None
        self.open_alert_until = NO_TIME
        self.fraud_from = NO_TIME  # ts of the first confirmed fraudulent authorization of the compromise counted

    @property
    def compromised(self) -> bool:
        """Confirmed fraud that no reissue has resolved yet."""
        return self.compromised_since != NO_TIME and self.reissued_at < self.compromised_since

    def blocks(self, ts: int) -> bool:
        """Whether an authorization at ``ts`` falls between the confirmed fraud and the reissue."""
        if self.compromised_since == NO_TIME or ts < self.compromised_since:
            return False
        return self.reissued_at < self.compromised_since or ts < self.reissued_at

    def confirm_fraud(self, ts: int, fraud_ts: int | None = None) -> bool:
        """A fraud label known at ``ts``, about an authorization at ``fraud_ts`` (None: not known); returns whether
        the standing changed.

        A fraud from before the card's last reissue was on the card it replaced (a chargeback weeks later): the
        new card is not compromised by it.

        >>> s = CardStanding(); s.reissue(10_000)
        >>> s.confirm_fraud(50_000, fraud_ts=5_000), s.compromised, s.confirm_fraud(50_000, fraud_ts=20_000), s.compromised
        (False, False, True, True)
        """
        if fraud_ts is not None and fraud_ts < self.reissued_at:
            return False
        if self.compromised_since == NO_TIME or ts < self.compromised_since or (not self.compromised and ts >= self.reissued_at):
            self.compromised_since = ts
            return True
        return False

    def note_fraud(self, ts: int) -> tuple[bool, int]:
        """A fraudulent authorization at ``ts`` confirmed: whether it starts a compromise not counted yet (the card's
        first, or the first after a reissue that came after the one counted), and the ts of the first confirmed fraud
        of its compromise. Each compromise is counted once: ``fraud_from`` remembers its first fraud.

        >>> s = CardStanding(); s.note_fraud(5_000), s.note_fraud(9_000), s.note_fraud(4_000), s.fraud_from
        ((True, 5000), (False, 5000), (False, 4000), 4000)
        >>> s.reissue(10_000); s.note_fraud(12_000), s.note_fraud(7_000)
        ((True, 12000), (False, 7000))
        """
        first = self.fraud_from
        if first == NO_TIME or first < self.reissued_at <= ts:
            self.fraud_from = ts
            return True, ts
        if ts < self.reissued_at <= first:  # a fraud of the compromise before the reissue: counted with it, if ever
            return False, ts
        self.fraud_from = min(first, ts)  # an earlier fraud of the same compromise, confirmed later
        return False, self.fraud_from

    def see(self, ts: int) -> None:
        """An authorization at ``ts`` was decided: the newest event time moves on (eviction counts from it)."""
        if ts > self.clock:
            self.clock = ts

    def open_alert(self, alert_id: str, until: int) -> None:
        """A new alert: the card's next scores update it instead of raising others, until ``until``."""
        self.open_alert_id = alert_id
        self.open_alert_until = until

    def reissue(self, ts: int) -> None:
        self.reissued_at = max(self.reissued_at, ts)
        self.open_alert_id = None
        self.open_alert_until = NO_TIME

    def to_bytes(self) -> bytes:
        head = _STANDING.pack(self.clock, self.compromised_since, self.reissued_at, self.open_alert_until)
        raw = head + (self.open_alert_id or "").encode()
        # `fraud_from` only once set, after a NUL (an alert id, from a printable tx_id, has none): a standing of
        # the earlier layout reads as one with nothing counted, and an uncounted standing has the earlier bytes.
        return raw if self.fraud_from == NO_TIME else raw + b"\x00%d" % self.fraud_from

    @classmethod
    def from_bytes(cls, raw: bytes) -> CardStanding:
        s = cls()
        s.clock, s.compromised_since, s.reissued_at, s.open_alert_until = _STANDING.unpack_from(raw)
        alert_id, counted, fraud_from = raw[_STANDING.size :].partition(b"\x00")
        s.open_alert_id = alert_id.decode() or None
        if counted:
            s.fraud_from = int(fraud_from)
        return s


class Decision:
    """What was decided for one authorization: its ``action`` (one of ACTIONS), the threshold its score was held
    against, the alert it opened or updated, and the rules that asked for it. Read-only, compared by value.

    A plain class, not a frozen dataclass: compiled (``fraudstream.core.native``) a frozen dataclass is built through
    its Python ``__init__``, about 0.5 µs for every authorization; this one natively, in about 30 ns, its fields
    ``Final`` (read-only once compiled).

    >>> Decision("alert", 0.5, "a-t1") == Decision("alert", 0.5, "a-t1", ()), Decision("none", 0.5)
    (True, Decision(action='none', threshold=0.5, alert_id=None, rules=()))
    """

    __slots__ = ("action", "threshold", "alert_id", "rules")

    def __init__(self, action: str, threshold: float, alert_id: str | None = None, rules: tuple[str, ...] = ()) -> None:
        self.action: Final = action
        self.threshold: Final = threshold
        self.alert_id: Final = alert_id
        self.rules: Final = rules

    def _key(self) -> tuple[str, float, str | None, tuple[str, ...]]:
        return (self.action, self.threshold, self.alert_id, self.rules)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[type[Decision], tuple[str, float, str | None, tuple[str, ...]]]:
        return (Decision, self._key())  # spelled out: the compiled class and the Python one pickle alike

    def __repr__(self) -> str:
        return f"Decision(action={self.action!r}, threshold={self.threshold!r}, alert_id={self.alert_id!r}, rules={self.rules!r})"

    def as_dict(self) -> dict:
        return {"action": self.action, "threshold": self.threshold, "alert_id": self.alert_id, "rules": list(self.rules)}


class DecisionPolicy:
    """Turns a score and the rules that fired into an action for one card."""

    def __init__(self, budget_per_day: float, floor: float, ceiling: float, cooldown_ms: int, warmup: int = 1000) -> None:
        self.budget_per_day = budget_per_day
        self.floor = floor
        self.ceiling = ceiling
        self.cooldown_ms = cooldown_ms
        self.warmup = warmup
        self.threshold = AdaptiveThreshold(budget_per_day, floor, ceiling, warmup)
        # Most authorizations get "none" at a threshold that moves every 64 scores at most: one shared, read-only
        # Decision while it stands (an object less per authorization to allocate and for the collector to walk).
        self._quiet = Decision("none", ceiling, None, ())

    def decide(self, card: CardStanding, tx_id: str, ts: int, score: float, alert_rules: tuple[str, ...] = ()) -> Decision:
        threshold = self.threshold.value(ts)
        card.see(ts)
        if card.blocks(ts):
            # Blocks are not reviews: they must not spend the team's budget in the threshold.
            return Decision("block", threshold, alert_id_for(tx_id), alert_rules)
        self.threshold.observe(ts, score)
        if score < threshold and not alert_rules:
            quiet = self._quiet
            if quiet.threshold != threshold:
                quiet = self._quiet = Decision("none", threshold, None, ())
            return quiet
        if card.open_alert_id is not None and ts < card.open_alert_until:
            return Decision("update", threshold, card.open_alert_id, alert_rules)
        alert_id = alert_id_for(tx_id)
        card.open_alert(alert_id, ts + self.cooldown_ms)
        return Decision("alert", threshold, alert_id, alert_rules)

    def replay(self, card: CardStanding, ts: int, score: float, action: str, alert_id: str | None) -> None:
        """Apply to the threshold and ``card`` what :meth:`decide` did when it took ``action`` on an authorization at
        ``ts`` scored ``score``: a worker that crashed after writing a decision's snapshot but before the threshold and
        standing it changed replays it from the snapshot (``fraudstream.stream``), and they end as if it had not.

        >>> live, again = DecisionPolicy(2, 0.1, 0.9, 60_000, warmup=1), DecisionPolicy(2, 0.1, 0.9, 60_000, warmup=1)
        >>> card, copy = CardStanding(), CardStanding()
        >>> d = live.decide(card, "tx-1", 1_000, 0.95)
        >>> again.replay(copy, 1_000, 0.95, d.action, d.alert_id)
        >>> (copy.open_alert_id, copy.open_alert_until) == (card.open_alert_id, card.open_alert_until)
        True
        >>> again.threshold.to_bytes() == live.threshold.to_bytes()
        True
        """
        self.threshold.value(ts)  # as `decide` reads it first: the value it caches is part of the state
        card.see(ts)
        if action != "block":
            self.threshold.observe(ts, score)
        if action == "alert" and alert_id is not None:
            card.open_alert(alert_id, ts + self.cooldown_ms)
