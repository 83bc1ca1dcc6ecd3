from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fraudstream.simulate import HandbookSimulator, SimulatedTransactions

#: Handbook terminal density (so scenario 2 keeps its share) with a tenth of the customers and a third of the days.
MEDIUM = {"n_customers": 500, "n_terminals": 10_000, "n_days": 60, "seed": 7}


@pytest.fixture(scope="session")
def medium_sim() -> HandbookSimulator:
    from fraudstream.simulate import HandbookSimulator

    return HandbookSimulator(**MEDIUM)


@pytest.fixture(scope="session")
def medium(medium_sim: HandbookSimulator) -> SimulatedTransactions:
    return medium_sim.transactions()


@pytest.fixture(scope="session")
def small_sim() -> HandbookSimulator:
    from fraudstream.simulate import HandbookSimulator

    return HandbookSimulator(n_customers=100, n_terminals=400, n_days=20, seed=11)
