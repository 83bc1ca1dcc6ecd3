"""How far an authorization's amount and pace lie beyond what legitimate ones show: fraud lives in the tails.

A linear model weighs a feature in proportion to its value, so it cannot say "an amount above what legitimate cards
almost ever spend is suspect, whatever the card's habits": the step from the 98th to the 99.9th percentile counts no
more than any other step of that size. A tree can say it; a linear model can once it is given the bend.
:class:`LegitimateTails` gives it: for the features that say how much and how fast against the usual
(:data:`TAILED`), it keeps the 99th and 99.9th percentiles of the *legitimate* examples it learned from, on a log
scale, and adds ``max(0, x - q)`` beside the feature: a hinge, whose weight the model learns like any other.

The percentiles are river's P² estimates, learned from the training examples. Every worker learns the same examples
in the same order (``fraudstream.stream.learning``), so every worker has the same knots, and the backtest too. Until
a percentile has seen :data:`WARMUP` legitimate examples its hinge is absent, as a feature never seen is.

Measured (README: How the model learns): on the Handbook stream's test week, AP 0.579 → 0.638 with the default
settings and 0.621 → 0.662 with analysts; the authorizations above what the issuer's cards usually spend (the
Handbook's first scenario) move from the top 1% into the top 0.3%. Hinges on every feature that is not a flag: 0.675
with analysts, but 0.533 without.

>>> tails = LegitimateTails()
>>> for i in range(200):
...     tails.learn_one({"amount": float(i % 100), "is_atm": 0.0}, False)
>>> x = tails.transform_one({"amount": 250.0, "is_atm": 1.0})
>>> sorted(x), round(x["amount>q99"], 1)
(['amount', 'amount>q99', 'amount>q99.9', 'is_atm'], 152.0)
>>> tails.transform_one({"amount": 20.0})["amount>q99"]
0.0
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

from river import base, stats

from fraudstream.core.model.squash import log_scale

__all__ = ["LegitimateTails", "QUANTILES", "TAILED", "WARMUP", "hinge_name", "on_log_scale"]

#: The percentiles of legitimate values where a feature's hinges bend.
QUANTILES = (0.99, 0.999)
#: Legitimate examples a percentile learns from before its hinge is used.
WARMUP = 100
#: How much and how fast, against the card's and the merchant's usual: where "far beyond" is the signal.
TAILED = ("amount", "card_amount_ratio_30d", "card_spend_vs_30d", "card_count_vs_30d", "merchant_amount_ratio_30d",
          "card_count_24h", "card_amount_sum_24h")


def on_log_scale(name: str, value: float) -> float:
    """``value`` (as squash left it) on a log scale: as it is if squash took its log, else ``log1p`` of it."""
    if log_scale(name):
        return value
    return math.log1p(value) if value > 0 else 0.0


def hinge_name(feature: str, q: float) -> str:
    """``amount>q99.9``: the feature's hinge at the ``q`` quantile of legitimate values."""
    return f"{feature}>q{100 * q:g}"


class LegitimateTails(base.SupervisedTransformer, base.Transformer):
    """Adds ``feature>qNN = max(0, x - the NNth percentile of legitimate x)``, ``x`` the feature on a log scale,
    for each feature of ``features`` (after squash: ``fraudstream.core.model.squash``).

    Both bases: river's ``Pipeline`` passes a step's output on while learning only if it is a ``Transformer``, and
    gives it the label only if it is supervised.
    """

    def __init__(self, features: tuple[str, ...] = TAILED, quantiles: tuple[float, ...] = QUANTILES,
                 warmup: int = WARMUP) -> None:
        self.features = features
        self.quantiles = quantiles
        self.warmup = warmup
        self.percentiles: dict[str, list[tuple[str, stats.Quantile]]] = {}  # feature -> (hinge name, estimator)
        self.seen: dict[str, int] = {}  # feature -> legitimate examples its estimators learned from
        self._knots: dict[str, tuple[tuple[str, float], ...]] | None = None  # until the next legitimate example

    # Both bases' learn_one in one: river's Pipeline calls it with the label, as SupervisedTransformer's.
    def learn_one(self, x: dict[Hashable, Any], y: Any = None) -> None:  # type: ignore[override]
        if y is None or y:
            return  # the legitimate traffic's tails: a fraud's value is what they are measured against
        for name in self.features:
            value = x.get(name)
            if value is None:
                continue
            estimators = self.percentiles.get(name)
            if estimators is None:
                estimators = self.percentiles[name] = [(hinge_name(name, q), stats.Quantile(q)) for q in self.quantiles]
            v = on_log_scale(name, value)
            for _, estimator in estimators:
                estimator.update(v)
            self.seen[name] = self.seen.get(name, 0) + 1
        self._knots = None

    def knots(self) -> dict[str, tuple[tuple[str, float], ...]]:
        """feature -> ((hinge name, knot), ...) for the features whose percentiles are warm."""
        if self._knots is None:
            # P² has an estimate from its fifth value on; WARMUP is far past that.
            self._knots = {name: tuple((hinge, est.get() or 0.0) for hinge, est in estimators)
                           for name, estimators in self.percentiles.items() if self.seen[name] >= self.warmup}
        return self._knots

    def transform_one(self, x: dict[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(x)
        for name, hinges in self.knots().items():
            value = x.get(name)
            if value is None:
                continue
            v = on_log_scale(name, value)
            for hinge, knot in hinges:
                out[hinge] = v - knot if v > knot else 0.0
        return out
