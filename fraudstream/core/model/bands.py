"""The fraud odds of an authorization's amount band, learned from the labels: a shape a linear model cannot draw.

A linear model weighs the amount in proportion to its (log) value, so it can only say "the more, the worse" (or
"the less"). Fraud does not sit at one end: card testing probes with small amounts, cash-out stays just under a
limit, a scheme's fraud sits above what the issuer's cards ever spend, with the ordinary amounts in between. So
the model keeps, per band of amount (:data:`BANDS_PER_LOG_UNIT` bands per unit of ``log(amount)``: about 5 % wide),
the fraud and legitimate examples it learned there (each with its learning weight), and gives the linear model one
more feature, :data:`FEATURE`: the band's log-odds of fraud against the odds of all examples, shrunk towards 0 by
:data:`PRIOR_EXAMPLES` pseudo-examples at the overall rate, so that a band seen a few times says little.

Ordered: an example is scored into its band *before* its own label is counted, so learning never sees its label
in its feature; the backtest and every worker learn the same examples in the same order, so all agree. The odds
are relative to the learned mix, so undersampling legitimate examples shifts every band alike and cancels out.

>>> odds = AmountBandOdds()
>>> for _ in range(200):
...     odds.learn(1_000.0, False, 1.0)
>>> for _ in range(20):
...     odds.learn(45_000.0, True, 1.0)
>>> odds.value(45_500.0) > 2.0, odds.value(1_010.0) < 0.0, odds.value(7_000.0)
(True, True, 0.0)
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["AmountBandOdds", "FEATURE", "BANDS_PER_LOG_UNIT", "PRIOR_EXAMPLES"]

#: The feature the model sees (a log-odds: already on a log scale, see ``squash``).
FEATURE: Final = "amount_band_fraud_logodds"
#: Bands per unit of ``log(amount)``: 20 makes each about 5 % wide (measured against 10: README, How the model learns).
BANDS_PER_LOG_UNIT: Final = 20.0
#: Pseudo-examples at the overall fraud rate added to every band: how many examples a band needs to speak.
PRIOR_EXAMPLES: Final = 10.0


class AmountBandOdds:
    """Fraud and legitimate examples learned, weighted, per band of ``log(amount)``."""

    __slots__ = ("bands", "legitimate", "fraud", "_values")

    def __init__(self) -> None:
        self.bands: dict[int, list[float]] = {}  # band -> [legitimate weight, fraud weight]
        self.legitimate = 0.0
        self.fraud = 0.0
        # Every authorization scored asks for its band's value, which changes only when an example is learned:
        # each band's, as last computed, until then (derived, not saved).
        self._values: dict[int, float] = {}

    @staticmethod
    def band(amount: float) -> int:
        """The band of a positive amount."""
        return math.floor(math.log(amount) * BANDS_PER_LOG_UNIT)

    def value(self, amount: float | None) -> float:
        """The band's log-odds of fraud against all examples' (0.0 for no amount, or a band never seen)."""
        if amount is None or amount <= 0:
            return 0.0
        band = math.floor(math.log(amount) * BANDS_PER_LOG_UNIT)  # self.band(amount), without the call
        value = self._values.get(band)
        if value is None:
            value = self._values[band] = self._odds(band)
        return value

    def _odds(self, band: int) -> float:
        counts = self.bands.get(band)
        if counts is None:
            return 0.0
        p = (self.fraud + 1.0) / (self.legitimate + self.fraud + 2.0)  # overall rate, never 0 or 1
        r = (counts[1] + PRIOR_EXAMPLES * p) / (counts[0] + counts[1] + PRIOR_EXAMPLES)
        return math.log(r / (1.0 - r)) - math.log(p / (1.0 - p))

    def learn(self, amount: float | None, is_fraud: bool, weight: float) -> None:
        """Count one learned example in its band (after the model learned it with :meth:`value`)."""
        if amount is None or amount <= 0:
            return
        self._values.clear()  # every band's odds are relative to the overall rate, which this changes
        band = self.band(amount)
        counts = self.bands.get(band)
        if counts is None:
            counts = self.bands[band] = [0.0, 0.0]
        counts[is_fraud] += weight
        if is_fraud:
            self.fraud += weight
        else:
            self.legitimate += weight

    def __getstate__(self) -> dict[str, object]:
        return {"bands": self.bands, "legitimate": self.legitimate, "fraud": self.fraud}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.bands = state["bands"]  # type: ignore[assignment]
        self.legitimate = state["legitimate"]  # type: ignore[assignment]
        self.fraud = state["fraud"]  # type: ignore[assignment]
        self._values = {}
