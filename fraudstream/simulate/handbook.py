"""The Fraud Detection Handbook's transaction simulator, vectorised with numpy.

Customers and terminals sit uniformly on a 100×100 grid; each customer buys at
the terminals within ``radius``. Three fraud scenarios are then laid over the
legitimate traffic, in the Handbook's order: large amounts, compromised
terminals, compromised customers (whose fraudulent amounts are multiplied after
the first scenario has run, so a ×5 amount is still scenario 3).

>>> sim = HandbookSimulator(n_customers=50, n_terminals=100, n_days=5, seed=1)
>>> txs = sim.transactions()
>>> bool((txs.amount > 0).all()), bool((txs.ts[:-1] <= txs.ts[1:]).all())
(True, True)
>>> auth = next(iter(sim.iter_authorizations()))
>>> sorted(auth.as_event())
['amount', 'card_id', 'channel', 'currency', 'merchant_id', 'ts', 'tx_id']
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream.core.features.card import DAY_MS

__all__ = ["HandbookSimulator", "SimulatedAuthorization", "SimulatedTransactions", "to_epoch_ms"]

DAY_S = DAY_MS // 1000
GRID = 100.0
# The Handbook's time of day: N(noon, 20,000 s).
TIME_MEAN_S = DAY_S / 2
TIME_STD_S = 20_000.0


def to_epoch_ms(start: str | int | dt.date | dt.datetime) -> int:
    """Midnight UTC of a date (or an aware/naive-UTC datetime, or epoch ms as is).

    >>> to_epoch_ms("2018-04-01")
    1522540800000
    """
    if isinstance(start, bool):
        raise TypeError("start must be a date, an ISO string or epoch milliseconds")
    if isinstance(start, int):
        return start
    if isinstance(start, str):
        start = dt.datetime.fromisoformat(start)
    if not isinstance(start, dt.datetime):
        start = dt.datetime(start.year, start.month, start.day)
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    return int(start.timestamp() * 1000)


@dataclass(slots=True)
class SimulatedAuthorization:
    """One simulated authorization and its ground truth."""

    tx_id: str
    card_id: str
    merchant_id: str
    amount: float
    ts: int
    currency: str = "EUR"
    channel: str = "pos"
    is_fraud: bool = False
    scenario: int = 0

    def as_event(self) -> dict[str, Any]:
        """The ``fraud.authorizations`` record: what the pipeline sees, never the truth."""
        return {
            "tx_id": self.tx_id,
            "card_id": self.card_id,
            "merchant_id": self.merchant_id,
            "amount": self.amount,
            "ts": self.ts,
            "currency": self.currency,
            "channel": self.channel,
        }


class _IndexLookup(Mapping[str, Any]):
    """tx_id → value, read straight from a column so 1.75M ids need no dict."""

    def __init__(self, column: list[Any], prefix: str, width: int) -> None:
        self._column = column
        self.prefix = prefix
        self.width = width

    def _index(self, tx_id: object) -> int:
        if not isinstance(tx_id, str) or not tx_id.startswith(self.prefix):
            raise KeyError(tx_id)
        digits = tx_id[len(self.prefix) :]
        # Only the canonical spelling is a key, so "tx-1" is not "tx-0000000001".
        if len(digits) != self.width or not digits.isdigit():
            raise KeyError(tx_id)
        i = int(digits)
        if i >= len(self._column):
            raise KeyError(tx_id)
        return i

    def __getitem__(self, tx_id: str) -> Any:
        return self._column[self._index(tx_id)]

    def __contains__(self, tx_id: object) -> bool:
        try:
            self._index(tx_id)
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return (f"{self.prefix}{i:0{self.width}d}" for i in range(len(self._column)))

    def __len__(self) -> int:
        return len(self._column)


@dataclass(slots=True)
class SimulatedTransactions:
    """The generated data as columns, in event-time order (row i is tx_id i).

    ``customer`` and ``terminal`` are integer indices into the profile arrays.
    """

    start_ms: int
    ts: np.ndarray  # int64 epoch ms
    day: np.ndarray  # int64 day number from start
    customer: np.ndarray  # int64
    terminal: np.ndarray  # int64
    amount: np.ndarray  # float64, 2 decimals
    is_fraud: np.ndarray  # bool
    scenario: np.ndarray  # int8: 0 none, 1 amount, 2 terminal, 3 customer
    customer_xy: np.ndarray
    customer_mean_amount: np.ndarray
    customer_std_amount: np.ndarray
    customer_tx_rate: np.ndarray
    terminal_xy: np.ndarray
    tx_width: int = 10
    card_width: int = 6
    terminal_width: int = 5

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def fraud_share(self) -> float:
        return float(self.is_fraud.mean()) if len(self) else 0.0

    def tx_id(self, i: int) -> str:
        return f"tx-{i:0{self.tx_width}d}"

    def card_id(self, customer: int) -> str:
        return f"card-{customer:0{self.card_width}d}"

    def merchant_id(self, terminal: int) -> str:
        return f"term-{terminal:0{self.terminal_width}d}"

    def tx_ids(self) -> list[str]:
        w = self.tx_width
        return [f"tx-{i:0{w}d}" for i in range(len(self))]

    def card_ids(self) -> list[str]:
        w = self.card_width
        names = [f"card-{c:0{w}d}" for c in range(len(self.customer_mean_amount))]
        return [names[c] for c in self.customer.tolist()]

    def fraud_lookup(self) -> Mapping[str, bool]:
        """tx_id → is_fraud, without building a dict of every transaction."""
        return _IndexLookup(self.is_fraud.tolist(), "tx-", self.tx_width)

    def card_lookup(self) -> Mapping[str, str]:
        """tx_id → card_id."""
        return _IndexLookup(self.card_ids(), "tx-", self.tx_width)

    def iter_authorizations(self, start: int = 0, stop: int | None = None) -> Iterator[SimulatedAuthorization]:
        stop = len(self) if stop is None else min(stop, len(self))
        tx_name = f"tx-{{:0{self.tx_width}d}}".format
        cards = [self.card_id(c) for c in range(len(self.customer_mean_amount))]
        merchants = [self.merchant_id(t) for t in range(len(self.terminal_xy))]
        # Row by row from Python lists: numpy scalars would be slower and would leak into JSON.
        chunk = 65_536
        for lo in range(start, stop, chunk):
            hi = min(lo + chunk, stop)
            rows = zip(
                range(lo, hi),
                self.customer[lo:hi].tolist(),
                self.terminal[lo:hi].tolist(),
                self.amount[lo:hi].tolist(),
                self.ts[lo:hi].tolist(),
                self.is_fraud[lo:hi].tolist(),
                self.scenario[lo:hi].tolist(),
                strict=True,
            )
            for i, c, t, a, ts, f, s in rows:
                yield SimulatedAuthorization(tx_name(i), cards[c], merchants[t], a, ts, "EUR", "pos", f, s)


def _width(n: int, minimum: int) -> int:
    return max(minimum, len(str(max(n - 1, 0))))


class HandbookSimulator:
    """The Handbook simulator (their chapter 3) with every size a parameter.

    Parameters
    ----------
    n_customers, n_terminals
        Placed uniformly on a 100×100 grid.
    n_days, start
        Simulated days from ``start`` (midnight UTC).
    radius
        A customer uses every terminal closer than this.
    seed
        Everything is a function of the seed.
    compromised_terminals_per_day, terminal_compromise_days
        Scenario 2: that many terminals a day; all their transactions that day and the following ones
        (``terminal_compromise_days`` days in all) are fraud.
    compromised_customers_per_day, customer_compromise_days, customer_fraud_share, customer_fraud_amount_factor
        Scenario 3: that many customers a day; over the window, that share of their transactions is fraud with the
        amount multiplied by the factor.
    amount_fraud_threshold
        Scenario 1: any amount above it is fraud.

    >>> sim = HandbookSimulator(n_customers=200, n_terminals=400, n_days=10, seed=3)
    >>> a, b = sim.transactions(), HandbookSimulator(n_customers=200, n_terminals=400, n_days=10, seed=3).transactions()
    >>> bool((a.amount == b.amount).all())
    True
    """

    def __init__(
        self,
        n_customers: int = 5000,
        n_terminals: int = 10000,
        n_days: int = 183,
        start: str | int | dt.date = "2018-04-01",
        radius: float = 5.0,
        seed: int = 0,
        compromised_terminals_per_day: int = 2,
        terminal_compromise_days: int = 28,
        compromised_customers_per_day: int = 3,
        customer_compromise_days: int = 14,
        customer_fraud_share: float = 1 / 3,
        customer_fraud_amount_factor: float = 5,
        amount_fraud_threshold: float = 220,
    ) -> None:
        if n_customers < 1 or n_terminals < 1 or n_days < 1:
            raise ValueError("n_customers, n_terminals and n_days must be at least 1")
        if compromised_terminals_per_day > n_terminals or compromised_customers_per_day > n_customers:
            raise ValueError("cannot compromise more terminals or customers a day than there are")
        if not 0 <= customer_fraud_share <= 1:
            raise ValueError("customer_fraud_share must be in [0, 1]")
        self.n_customers = n_customers
        self.n_terminals = n_terminals
        self.n_days = n_days
        self.start = start
        self.radius = radius
        self.seed = seed
        self.compromised_terminals_per_day = compromised_terminals_per_day
        self.terminal_compromise_days = terminal_compromise_days
        self.compromised_customers_per_day = compromised_customers_per_day
        self.customer_compromise_days = customer_compromise_days
        self.customer_fraud_share = customer_fraud_share
        self.customer_fraud_amount_factor = customer_fraud_amount_factor
        self.amount_fraud_threshold = amount_fraud_threshold
        self._cache: SimulatedTransactions | None = None

    @property
    def start_ms(self) -> int:
        return to_epoch_ms(self.start)

    def __repr__(self) -> str:
        return (
            f"HandbookSimulator(n_customers={self.n_customers}, n_terminals={self.n_terminals}, "
            f"n_days={self.n_days}, start={self.start!r}, radius={self.radius}, seed={self.seed})"
        )

    # --- generation -------------------------------------------------------

    def transactions(self) -> SimulatedTransactions:
        """All transactions as columns (generated once, then cached)."""
        if self._cache is None:
            self._cache = self._generate()
        return self._cache

    def authorizations(self) -> list[SimulatedAuthorization]:
        """Every transaction as a record, in event-time order (ties by tx_id)."""
        # Millions of new tracked objects would trigger a full collection again and again, for nothing to free.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return list(self.iter_authorizations())
        finally:
            if was_enabled:
                gc.enable()

    def iter_authorizations(self) -> Iterator[SimulatedAuthorization]:
        """Like :meth:`authorizations`, without holding them all in memory."""
        return self.transactions().iter_authorizations()

    def __iter__(self) -> Iterator[SimulatedAuthorization]:
        return self.iter_authorizations()

    def _generate(self) -> SimulatedTransactions:
        # Independent streams per stage, so e.g. a longer n_days keeps the same customers and terminals.
        rng_cust, rng_term, rng_tx, rng_s2, rng_s3 = (
            np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(5)
        )
        nc, nt, nd = self.n_customers, self.n_terminals, self.n_days

        customer_xy = rng_cust.uniform(0, GRID, size=(nc, 2))
        mean_amount = rng_cust.uniform(5, 100, size=nc)
        std_amount = mean_amount / 2
        tx_rate = rng_cust.uniform(0, 4, size=nc)
        terminal_xy = rng_term.uniform(0, GRID, size=(nt, 2))
        offsets, neighbours = self._terminals_in_range(customer_xy, terminal_xy)
        degree = np.diff(offsets)

        # Transactions per customer-day, then one row per drawn transaction.
        counts = rng_tx.poisson(np.repeat(tx_rate, nd))
        cell = np.repeat(np.arange(nc * nd, dtype=np.int64), counts)
        customer, day = np.divmod(cell, nd)
        seconds = rng_tx.normal(TIME_MEAN_S, TIME_STD_S, size=len(cell)).astype(np.int64)
        inside = (seconds >= 0) & (seconds < DAY_S)
        customer, day, seconds = customer[inside], day[inside], seconds[inside]

        mean, std = mean_amount[customer], std_amount[customer]
        amount = rng_tx.normal(mean, std)
        negative = amount < 0
        amount[negative] = rng_tx.uniform(0, 2 * mean[negative])
        amount = _money(amount)

        # Customers with no terminal in range simply do not transact.
        deg = degree[customer]
        reachable = deg > 0
        customer, day, seconds, amount, deg = (
            customer[reachable],
            day[reachable],
            seconds[reachable],
            amount[reachable],
            deg[reachable],
        )
        pick = np.minimum((rng_tx.random(len(customer)) * deg).astype(np.int64), deg - 1)
        terminal = neighbours[offsets[customer] + pick]

        # Event-time order; the stable sort keeps generation order among ties and tx ids follow it.
        t = day * DAY_S + seconds
        order = np.argsort(t, kind="stable")
        t, day, customer, terminal, amount = t[order], day[order], customer[order], terminal[order], amount[order]

        is_fraud = np.zeros(len(t), dtype=bool)
        scenario = np.zeros(len(t), dtype=np.int8)
        self._scenario_amount(amount, is_fraud, scenario)
        self._scenario_terminals(rng_s2, day, terminal, is_fraud, scenario)
        self._scenario_customers(rng_s3, day, customer, amount, is_fraud, scenario)

        return SimulatedTransactions(
            start_ms=self.start_ms,
            ts=self.start_ms + t * 1000,
            day=day,
            customer=customer,
            terminal=terminal,
            amount=amount,
            is_fraud=is_fraud,
            scenario=scenario,
            customer_xy=customer_xy,
            customer_mean_amount=mean_amount,
            customer_std_amount=std_amount,
            customer_tx_rate=tx_rate,
            terminal_xy=terminal_xy,
            tx_width=_width(len(t), 10),
            card_width=_width(nc, 6),
            terminal_width=_width(nt, 5),
        )

    def _terminals_in_range(self, customer_xy: np.ndarray, terminal_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CSR adjacency: terminals of customer c are ``neighbours[offsets[c]:offsets[c + 1]]``."""
        r2 = self.radius**2
        rows, cols = [], []
        # Blocks keep the distance matrix small: 5,000 × 10,000 at once would be 400 MB.
        block = max(1, 2_000_000 // max(len(terminal_xy), 1))
        for lo in range(0, len(customer_xy), block):
            d = customer_xy[lo : lo + block, None, :] - terminal_xy[None, :, :]
            r, c = np.nonzero((d**2).sum(axis=2) < r2)
            rows.append(r + lo)
            cols.append(c)
        row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        col = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(len(customer_xy) + 1, dtype=np.int64)
        np.cumsum(np.bincount(row, minlength=len(customer_xy)), out=offsets[1:])
        return offsets, col.astype(np.int64)

    # --- fraud scenarios, in the Handbook's order --------------------------

    def _scenario_amount(self, amount: np.ndarray, is_fraud: np.ndarray, scenario: np.ndarray) -> None:
        hit = amount > self.amount_fraud_threshold
        is_fraud[hit] = True
        scenario[hit] = 1

    def _scenario_terminals(
        self,
        rng: np.random.Generator,
        day: np.ndarray,
        terminal: np.ndarray,
        is_fraud: np.ndarray,
        scenario: np.ndarray,
    ) -> None:
        compromised = np.zeros((self.n_terminals, self.n_days), dtype=bool)
        for d in range(self.n_days):
            chosen = rng.choice(self.n_terminals, size=self.compromised_terminals_per_day, replace=False)
            compromised[chosen[:, None], d : d + self.terminal_compromise_days] = True
        hit = compromised[terminal, day]
        is_fraud[hit] = True
        scenario[hit] = 2

    def _scenario_customers(
        self,
        rng: np.random.Generator,
        day: np.ndarray,
        customer: np.ndarray,
        amount: np.ndarray,
        is_fraud: np.ndarray,
        scenario: np.ndarray,
    ) -> None:
        # Rows of each customer in time order: by_customer[bounds[c]:bounds[c + 1]].
        by_customer = np.lexsort((np.arange(len(customer)), customer))
        bounds = np.searchsorted(customer[by_customer], np.arange(self.n_customers + 1))
        days_sorted = day[by_customer]
        for d in range(self.n_days):
            chosen = rng.choice(self.n_customers, size=self.compromised_customers_per_day, replace=False)
            for c in chosen.tolist():
                lo, hi = bounds[c], bounds[c + 1]
                a = lo + np.searchsorted(days_sorted[lo:hi], d)
                b = lo + np.searchsorted(days_sorted[lo:hi], d + self.customer_compromise_days)
                window = by_customer[a:b]
                # The epsilon keeps e.g. 3 × (1/3) from flooring to 0 through rounding.
                k = int(len(window) * self.customer_fraud_share + 1e-9)
                if k == 0:
                    continue
                rows = rng.choice(window, size=k, replace=False)
                # Overlapping windows of one customer can hit a row twice; the Handbook multiplies it twice too.
                amount[rows] = _money(amount[rows] * self.customer_fraud_amount_factor)
                is_fraud[rows] = True
                scenario[rows] = 3


def _money(amount: np.ndarray) -> np.ndarray:
    """Round to cents; an authorization is never for nothing, so 0.00 becomes 0.01."""
    out = np.round(amount, 2)
    out[out <= 0] = 0.01
    return out
