"""Live state objects in front of a durable mapping of bytes.

The worker keeps each card's and merchant's state as a Python object for
speed, and writes the changed ones, as bytes, to a changelog-backed faust
table once per batch. The backtest gives a plain dict as the durable
mapping. Either way the core never sees Kafka.

>>> from fraudstream.core.features.card import CardState
>>> durable = {}
>>> cards = StateStore(CardState, CardState.from_bytes, durable)
>>> cards.get("c1").clock = 5
>>> cards.mark("c1"); cards.flush()
1
>>> StateStore(CardState, CardState.from_bytes, durable).get("c1").clock
5
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, Protocol, TypeVar

from fraudstream.contracts import decode, encode
from fraudstream.core.features.card import DAY_MS

__all__ = ["StateStore", "Persistent", "CardTransactions"]


class Persistent(Protocol):
    clock: int

    def to_bytes(self) -> bytes: ...


S = TypeVar("S", bound=Persistent)


class StateStore(Generic[S]):
    """A cache of live ``S`` objects, loaded from and flushed to ``durable``.

    ``capacity`` bounds the live objects kept by :meth:`trim` (None: no bound, as in the backtest, whose durable
    mapping is a dict in memory anyway).

    ``blank`` says which states read back the same as none at all (a fresh one, but for the clock eviction goes
    by): with it, :meth:`flush` writes a state only when its bytes differ from the durable mapping's, and a blank
    one not at all while the durable mapping has none (each write is a changelog record in the worker).

    >>> durable = {}
    >>> clocks = StateStore(_Clock, lambda raw: _Clock(), durable, blank=lambda state: state.clock == 0)
    >>> _ = clocks.get("a"); clocks.mark("a"); clocks.flush(), durable
    (0, {})
    """

    def __init__(self, factory: Callable[[], S], decode: Callable[[bytes], S], durable: MutableMapping[str, bytes] | None = None,
                 capacity: int | None = None, blank: Callable[[S], bool] | None = None) -> None:
        self.factory = factory
        self.decode = decode
        self.durable: MutableMapping[str, bytes] = {} if durable is None else durable
        self.capacity = capacity
        self.blank = blank
        self.live: dict[str, S] = {}
        self.dirty: set[str] = set()
        self.deleted: set[str] = set()

    def get(self, key: str) -> S:
        state = self.live.get(key)
        if state is None:
            raw = self.durable.get(key)
            state = self.factory() if raw is None else self.decode(raw)
            self.live[key] = state
        return state

    def mark(self, key: str) -> None:
        self.dirty.add(key)
        self.deleted.discard(key)

    def flush(self) -> int:
        """Write changed states to the durable mapping; returns how many (deletions included)."""
        durable, blank, n = self.durable, self.blank, 0
        for key in self.dirty:
            state = self.live[key]
            raw = state.to_bytes()
            if blank is not None:
                stored = durable.get(key)
                if raw == stored or (stored is None and blank(state)):
                    continue  # what a read gives back already
            durable[key] = raw
            n += 1
        for key in self.deleted:
            durable.pop(key, None)
        n += len(self.deleted)
        self.dirty.clear()
        self.deleted.clear()
        return n

    def evict_idle(self, now: int, idle_ms: int, keep: Callable[[S], bool] = lambda s: False) -> int:
        """Forget every state whose clock is more than ``idle_ms`` behind ``now``, unless ``keep`` says not to."""
        cutoff = now - idle_ms
        gone = [k for k, s in self.live.items() if s.clock < cutoff and not keep(s)]
        for k in gone:
            del self.live[k]
            self.dirty.discard(k)
            self.deleted.add(k)
        # States only on the durable side (not loaded since a restart) age out too.
        for k in [k for k in self.durable.keys() if k not in self.live]:
            raw = self.durable.get(k)
            if raw is not None:
                state = self.decode(raw)
                if state.clock < cutoff and not keep(state):
                    self.deleted.add(k)
        return len(self.deleted)

    def trim(self) -> list[str]:
        """Past ``capacity`` live objects, forget the earliest loaded clean ones, down to three quarters of it: the
        heap follows the busy cards, not every card of the last month. They load again from ``durable`` when next
        used. Returns the keys forgotten.

        >>> store = StateStore(lambda: _Clock(), lambda raw: _Clock(), {}, capacity=4)
        >>> for key in "abcde":
        ...     _ = store.get(key)
        >>> store.mark("a")
        >>> store.trim(), list(store.live)
        (['b', 'c'], ['a', 'd', 'e'])
        """
        return _forget_earliest(self.live, self.dirty, self.capacity)

    def drop_live(self, keep: Callable[[str], bool]) -> None:
        """Forget cached objects whose keys ``keep`` rejects (partitions revoked)."""
        for k in [k for k in self.live if not keep(k)]:
            del self.live[k]
            self.dirty.discard(k)

    def __len__(self) -> int:
        return len(self.live)

    def __iter__(self) -> Iterator[str]:
        return iter(self.live)


def _forget_earliest(live: dict[str, Any], dirty: set[str], capacity: int | None) -> list[str]:
    if capacity is None or len(live) <= capacity:
        return []
    excess = len(live) - capacity * 3 // 4
    gone = []
    for key in live:  # in the order they were loaded
        if key not in dirty:
            gone.append(key)
            if len(gone) == excess:
                break
    for key in gone:
        del live[key]
    return gone


class _Clock:
    """A minimal persistent state, for the examples."""

    clock = 0

    def to_bytes(self) -> bytes:
        return b""


class _Entries(list[tuple[int, str]]):
    """A card's live ``(ts, tx_id)`` list, with the bytes last written of it (``written``: how many entries they hold,
    and the bytes), so that a flush encodes only the entries added since. None until written, and once the list is
    rewritten (pruned). (A class default, not an ``__init__``: a list subclass made by list's own is 3x cheaper.)"""

    written: tuple[int, bytes] | None = None


class CardTransactions:
    """Each card's recent ``(ts, tx_id)``: what a card-level label ("compromised since T") labels.

    Live lists in front of a durable mapping of bytes, like :class:`StateStore`:
    appended per authorization, written once per batch.

    >>> index = CardTransactions(horizon_ms=1000)
    >>> index.add("c1", 100, "t1"); index.add("c1", 900, "t2"); index.add("c1", 1500, "t3")
    >>> index.since("c1", 800)
    [(900, 't2'), (1500, 't3')]
    """

    def __init__(self, durable: MutableMapping[str, bytes] | None = None, horizon_ms: int = 45 * DAY_MS, cap: int = 512,
                 capacity: int | None = None) -> None:
        self.durable: MutableMapping[str, bytes] = {} if durable is None else durable
        self.horizon_ms = horizon_ms
        self.cap = cap  # entries per card
        self.capacity = capacity  # cards kept live (see `StateStore.trim`)
        self.live: dict[str, _Entries] = {}
        self.dirty: set[str] = set()

    def _load(self, card_id: str) -> _Entries:
        entries = self.live.get(card_id)
        if entries is None:
            raw = self.durable.get(card_id)
            entries = _Entries(() if raw is None else [(int(ts), str(tx)) for ts, tx in decode(raw)])
            self.live[card_id] = entries
        return entries

    def add(self, card_id: str, ts: int, tx_id: str) -> None:
        entries = self.live.get(card_id)  # (once per authorization: the live list without a call)
        if entries is None:
            entries = self._load(card_id)
        entries.append((ts, tx_id))
        # Pruned in bulk, not per event: the oldest entries go once past the horizon or the cap.
        if len(entries) > self.cap or entries[0][0] < ts - 2 * self.horizon_ms:
            cutoff = ts - self.horizon_ms
            entries[:] = [e for e in entries[-self.cap :] if e[0] >= cutoff]
            entries.written = None  # encoded whole at the next flush
        self.dirty.add(card_id)

    def since(self, card_id: str, ts: int) -> list[tuple[int, str]]:
        return [e for e in self._load(card_id) if e[0] >= ts]

    def flush(self) -> int:
        """Write the lists changed. Those only appended to since their last write are written as those bytes with the
        new entries' added (the same bytes as encoded whole: ``[[ts,"tx"],...]``), not encoded whole again: a busy
        card's list holds up to ``cap`` entries, a batch adds one or two.

        >>> index = CardTransactions(durable := {})
        >>> index.add("c1", 5, "t1"); _ = index.flush(); index.add("c1", 6, "t2"); index.flush(), durable["c1"]
        (1, b'[[5,"t1"],[6,"t2"]]')
        """
        for card_id in self.dirty:
            entries = self.live[card_id]
            written = entries.written
            if written is not None and 0 < written[0] < len(entries):
                raw = written[1][:-1] + b"," + encode(entries[written[0] :])[1:]
            else:
                raw = encode(entries, keep=True)
            entries.written = (len(entries), raw)
            self.durable[card_id] = raw
        n = len(self.dirty)
        self.dirty.clear()
        return n

    def trim(self) -> list[str]:
        """As :meth:`StateStore.trim`."""
        return _forget_earliest(self.live, self.dirty, self.capacity)

    def drop_live(self) -> None:
        self.flush()
        self.live.clear()
