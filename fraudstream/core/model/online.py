"""The one logical model: learns from labelled snapshots, scores, explains.

Every worker applies the same ordered stream of training examples, so the
same number of examples learned means the same model: ``version`` is that
number, and every score carries it.

>>> m = OnlineModel("logistic")
>>> m.version
'logistic-0'
>>> for i in range(40):
...     m.learn(TrainingExample(f"t{i}", {"amount": 900.0 if i % 2 else 10.0}, bool(i % 2), 1.0, "analyst", 0))
>>> m.version, m.score({"amount": 900.0}) > 0.5 > m.score({"amount": 10.0})
('logistic-40', True)
"""

from __future__ import annotations

import math
import pickle
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from river import stats

from fraudstream.core.model.bands import FEATURE as AMOUNT_BAND
from fraudstream.core.model.bands import AmountBandOdds
from fraudstream.core.model.factory import make_model
from fraudstream.core.model.linear import Blend, FastLogistic

__all__ = ["OnlineModel", "TrainingExample", "FEEDBACK_SOURCES", "keep_legitimate", "Contribution", "cold_start_score"]

#: Labels that come from reviewing our own alerts (fast, but only on what we alerted).
FEEDBACK_SOURCES = frozenset({"analyst", "investigator"})


@dataclass(frozen=True, slots=True)
class TrainingExample:
    """Features as they were when scored, with the label that arrived later."""

    tx_id: str
    features: Mapping[str, float]
    is_fraud: bool
    weight: float
    source: str
    ts: int  # when the label became known, event time

    def as_dict(self) -> dict[str, Any]:
        return {"tx_id": self.tx_id, "features": dict(self.features), "is_fraud": self.is_fraud,
                "weight": self.weight, "source": self.source, "ts": self.ts,
                "stream": "feedback" if self.source in FEEDBACK_SOURCES else "delayed"}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainingExample:
        return cls(d["tx_id"], d["features"], bool(d["is_fraud"]), float(d["weight"]), d["source"], int(d["ts"]))


@dataclass(frozen=True, slots=True)
class Contribution:
    feature: str
    value: float
    effect: float  # change in score this feature's value causes against its usual value


def keep_legitimate(tx_id: str, rate: float) -> bool:
    """Deterministic undersampling of legitimate examples.

    Fraud is under 1% of authorizations; learning every legitimate one
    drowns it. The choice hashes ``tx_id`` so every worker and the backtest
    keep the same examples.
    """
    return zlib.crc32(tx_id.encode()) < rate * 4294967296.0


def _cold_start_terms(x: Mapping[str, float]) -> dict[str, float]:
    ratio = x.get("card_amount_ratio_30d", 1.0)
    return {
        "card_amount_ratio_30d": 0.5 * math.log(ratio) if ratio > 1 else 0.0,
        "card_amount_zscore_30d": max(x.get("card_amount_zscore_30d", 0.0), 0.0) / 10,
        "card_count_1h": max(x.get("card_count_1h", 1.0) - 2.0, 0.0) * 0.3,
        "merchant_fraud_rate_30d": 5.0 * x.get("merchant_fraud_rate_30d", 0.0),
        "merchant_cpp_share": 2.0 * x.get("merchant_cpp_share", 0.0),
    }


def cold_start_score(x: Mapping[str, float]) -> float:
    """What scores before the model has seen both classes.

    A fresh deployment has no labels, and only alerts bring analyst labels:
    an untrained model that scores nothing would never get any. This
    transparent anomaly score (unusual amount for the card, bursts, risky
    merchant) ranks authorizations until the model is ready; the adaptive
    threshold turns its ranks into the day's budget of alerts.

    >>> cold_start_score({"card_amount_ratio_30d": 1.0}) < cold_start_score({"card_amount_ratio_30d": 8.0})
    True
    """
    z = sum(_cold_start_terms(x).values())
    return z / (1.0 + z)


class OnlineModel:
    """A river classifier with a version, a feature baseline and checkpoints.

    ``streams="separate"`` keeps one model for analyst feedback and one for
    delayed labels (reports, chargebacks, maturity) and averages them once
    both have learned; ``"pooled"`` learns everything in one model.
    """

    def __init__(self, name: str = "logistic", streams: str = "pooled", min_per_class: int = 20) -> None:
        if streams not in ("pooled", "separate"):
            raise ValueError(f"streams must be 'pooled' or 'separate', not {streams!r}")
        self.name = name
        self.streams = streams
        self.min_per_class = min_per_class
        self.models = {"pooled": make_model(name)} if streams == "pooled" else {"feedback": make_model(name), "delayed": make_model(name)}
        self.learned = {k: 0 for k in self.models}
        # Per stream, [legitimate, fraud] examples: a model that has seen one class only
        # (delayed labels before anything matured are all fraud) must not score yet.
        self.classes = {k: [0, 0] for k in self.models}
        self.examples = 0
        # Shared by both streams' models: the band odds of every example learned (fraudstream.core.model.bands).
        self.amount_bands = AmountBandOdds()
        self.baseline: dict[str, stats.Mean] = {}
        self._blend: tuple[int, Blend | None] | None = None  # (examples, the blend of the ready models): derived
        self._version = (0, f"{name}-0")  # (examples, version): derived
        self._usual: tuple[int, dict[str, float]] = (-1, {})  # (examples, each feature's usual value): derived

    # Checkpoints hold what learned; the blend and the version are derived from it.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_blend", None)
        state.pop("_version", None)
        state.pop("_usual", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "amount_bands" not in state:  # a checkpoint from before the band odds: they are learned from now on
            self.amount_bands = AmountBandOdds()
        self._blend = None
        self._version = (self.examples, f"{self.name}-{self.examples}")
        self._usual = (-1, {})

    @property
    def version(self) -> str:
        examples, version = self._version
        if examples != self.examples:  # every score carries it: made once per example learned
            version = f"{self.name}-{self.examples}"
            self._version = (self.examples, version)
        return version

    def _stream(self, source: str) -> str:
        if self.streams == "pooled":
            return "pooled"
        return "feedback" if source in FEEDBACK_SOURCES else "delayed"

    def learn(self, example: TrainingExample) -> None:
        key = self._stream(example.source)
        x = self.model_input(example.features)  # the band's odds before this example counts in them (ordered)
        self.models[key].learn_one(x, example.is_fraud, w=example.weight)  # Pipeline passes w on
        self.amount_bands.learn(example.features.get("amount"), example.is_fraud, example.weight)
        self.learned[key] += 1
        self.classes[key][example.is_fraud] += 1
        self.examples += 1
        # The usual value of each feature, for explanations. Learned from every example:
        # legitimate ones dominate it, as they dominate traffic.
        for k, v in example.features.items():
            self.baseline.setdefault(k, stats.Mean()).update(v)

    def model_input(self, features: Mapping[str, float]) -> dict[str, float]:
        """What the river models see: the authorization's features and its amount band's fraud odds (a copy: the
        caller's features, kept in the snapshot, stay as they were)."""
        x = dict(features)
        x[AMOUNT_BAND] = self.amount_bands.value(features.get("amount"))
        return x

    def score(self, features: Mapping[str, float], copy: bool = True) -> float:
        """The probability of fraud. ``copy=False``, for a dict of features the caller owns and nothing iterates
        meanwhile (the scorer's, once per authorization): the band's feature is added to it for the call, then
        removed, instead of copying the authorization's features; the dict ends as it was, in the same order."""
        if copy or not isinstance(features, dict) or AMOUNT_BAND in features:
            return self._score(self.model_input(features))
        features[AMOUNT_BAND] = self.amount_bands.value(features.get("amount"))
        try:
            return self._score(features)
        finally:
            del features[AMOUNT_BAND]

    def _score(self, x: dict[str, float]) -> float:
        cached = self._blend  # `_ready_blend`'s answer while nothing learned, without the call: read at every score
        blend = cached[1] if cached is not None and cached[0] == self.examples else self._ready_blend()
        if blend is not None:
            return blend.proba_one(x)  # the sum below, in one pass over the features
        total, n = 0.0, 0
        for key, model in self.models.items():
            if min(self.classes[key]) >= self.min_per_class:
                total += model.predict_proba_one(x).get(True, 0.0)
                n += 1
        return total / n if n else cold_start_score(x)

    def _ready_blend(self) -> Blend | None:
        """The ready models as one :class:`Blend` when they are all :class:`FastLogistic` (None: score each).
        Which are ready changes only when one learns."""
        cached = self._blend
        if cached is not None and cached[0] == self.examples:
            return cached[1]
        ready = [model for key, model in self.models.items() if min(self.classes[key]) >= self.min_per_class]
        blend = None if cached is None else cached[1]
        if blend is None or len(blend.models) != len(ready) or any(a is not b for a, b in zip(blend.models, ready, strict=True)):
            # Still the same models: the blend follows what they learned itself (Blend.fresh).
            blend = Blend(ready) if ready and all(isinstance(m, FastLogistic) for m in ready) else None
        self._blend = (self.examples, blend)
        return blend

    @property
    def ready(self) -> bool:
        """True once some stream has seen enough of both classes to score."""
        return any(min(c) >= self.min_per_class for c in self.classes.values())

    def explain(self, features: Mapping[str, float], top: int = 3) -> list[Contribution]:
        """Occlusion: how much the score drops when one feature takes its usual value.

        Honest for any model (it asks the model itself); for the linear blend it
        takes each feature's part of the sums out in one step (`Blend.occluded`). Before the model is ready the
        cold-start score's own terms are the explanation.
        """
        if not self.ready:
            terms = sorted(_cold_start_terms(features).items(), key=lambda kv: -kv[1])
            return [Contribution(k, float(features.get(k, 0.0)), v) for k, v in terms[:top] if v > 0]
        x = self.model_input(features)
        band = x[AMOUNT_BAND]
        usual = self.usual_values()
        blend = self._ready_blend()
        if blend is not None:
            # Linear models: each feature's occluded score in one step from the sums (`Blend.occluded`). The amount
            # moves its band too (model_input), so it alone is scored again.
            base, without = blend.occluded(x, usual, skip=("amount", AMOUNT_BAND))
        else:
            base, without = self._score(x), {}
        effects = []
        for name, value in features.items():
            if name not in usual:
                continue
            occluded = without.get(name)
            if occluded is None:  # each feature in turn set to its usual value and back (not a copy per feature)
                x[name] = usual[name]
                if name == "amount" or name == AMOUNT_BAND:  # the band is derived from the amount (model_input)
                    x[AMOUNT_BAND] = self.amount_bands.value(x.get("amount"))
                occluded = self._score(x)
                x[name] = value
                x[AMOUNT_BAND] = band
            if base > occluded:  # only what raised the score is said (a Contribution made for each cost 1 µs)
                effects.append((base - occluded, name, value))
        effects.sort(key=lambda e: -e[0])  # stable: ties keep the features' order
        return [Contribution(name, value, effect) for effect, name, value in effects[:top]]

    def usual_values(self) -> dict[str, float]:
        """Each feature's usual value (its mean over the examples learned), as of the last one learned: read by every
        alert's explanation, so made once per example learned, not per alert. Read only."""
        examples, values = self._usual
        if examples != self.examples:
            values = {name: mean.get() for name, mean in self.baseline.items() if mean.n}
            self._usual = (self.examples, values)
        return values

    def usual(self, name: str) -> float | None:
        return self.usual_values().get(name)

    # --- checkpoints --------------------------------------------------------
    def to_bytes(self) -> bytes:
        return zlib.compress(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))

    @staticmethod
    def from_bytes(raw: bytes) -> OnlineModel:
        # Checkpoints come from our own workers' topic or state dir, never from users.
        model = pickle.loads(zlib.decompress(raw))
        if not isinstance(model, OnlineModel):
            raise ValueError("checkpoint does not hold an OnlineModel")
        return model
