"""A small Handbook-like transaction generator for the evaluation tests (not the project's simulator)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

DAY_MS = 86_400_000
START_MS = 1_522_540_800_000  # 2018-04-01T00:00Z


def handbook_like(
    n_customers: int = 5_000,
    n_terminals: int = 10_000,
    n_days: int = 183,
    terminals_per_day: int = 2,
    customers_per_day: int = 3,
    terminal_compromise_days: int = 28,
    last_compromise_day: int | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Columns ``tx_id, card_id, merchant_id, amount, ts, is_fraud`` in time order, with the Handbook's
    three planted fraud scenarios (big amounts, compromised terminals, compromised customers).

    No terminal or customer is newly compromised after ``last_compromise_day`` (when given)."""
    rng = np.random.default_rng(seed)
    mean = rng.uniform(5, 100, n_customers)
    rate = rng.uniform(0, 4, n_customers)
    # Each customer shops at a few nearby terminals; neighbourhoods overlap like the grid's radius does.
    home = rng.integers(0, n_terminals, n_customers)
    per_day = rng.poisson(np.broadcast_to(rate, (n_days, n_customers)))
    day, card = np.nonzero(per_day)
    repeat = per_day[day, card]
    day, card = np.repeat(day, repeat), np.repeat(card, repeat)
    seconds = rng.normal(43_200, 20_000, day.size)
    inside = (seconds >= 0) & (seconds < 86_400)
    day, card, seconds = day[inside], card[inside], seconds[inside]
    terminal = (home[card] + rng.integers(0, 20, card.size)) % n_terminals
    amount = rng.normal(mean[card], mean[card] / 2)
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean[card[negative]])
    ts = START_MS + day.astype(np.int64) * DAY_MS + (seconds * 1000).astype(np.int64)

    fraud = amount > 220
    for d in range(n_days if last_compromise_day is None else last_compromise_day + 1):
        for t in rng.choice(n_terminals, terminals_per_day, replace=False):
            fraud |= (terminal == t) & (day >= d) & (day < d + terminal_compromise_days)
        for c in rng.choice(n_customers, customers_per_day, replace=False):
            hit = (card == c) & (day >= d) & (day < d + 14) & (rng.random(card.size) < 1 / 3)
            amount[hit] *= 5
            fraud |= hit

    order = np.argsort(ts, kind="stable")
    return {
        "tx_id": np.arange(ts.size),
        "card_id": card[order],
        "merchant_id": terminal[order],
        "amount": np.round(amount[order], 2),
        "ts": ts[order],
        "is_fraud": fraud[order],
    }


@pytest.fixture
def handbook_data() -> Callable[..., dict[str, np.ndarray]]:
    return handbook_like
