"""A river logistic pipeline that scores without river's per-call machinery.

river's ``Pipeline.predict_proba_one`` builds three dicts per call (the squashed features, the scaled ones, the
probabilities) and walks the weights' ``VectorDict``: about 25 µs, a third of what an authorization costs. The
model changes only when it learns, a few percent of authorizations, so :class:`FastLogistic` folds the scaler into
the weights once per change (``a = w / sd``) and scores with one loop over the features: the same function,
summed in another order, so equal to river's to far better than 1e-9. Learning is river's, untouched: river stays
the learner, and the pipeline inside is what checkpoints hold.

>>> from river import compose, linear_model, optim, preprocessing
>>> from fraudstream.core.model.squash import squash
>>> model = FastLogistic(compose.Pipeline(compose.FuncTransformer(squash), preprocessing.StandardScaler(),
...                                        linear_model.LogisticRegression(optimizer=optim.SGD(0.05))))
>>> for i in range(50):
...     model.learn_one({"amount": 900.0 if i % 2 else 10.0, "is_night": float(i % 3 == 0)}, bool(i % 2))
>>> x = {"amount": 700.0, "is_night": 1.0}
>>> abs(model.proba_one(x) - model.pipeline.predict_proba_one(x)[True]) < 1e-12
True
"""

from __future__ import annotations

import math
from typing import Any

from river import compose

from fraudstream.core.model.squash import log_scale

__all__ = ["FastLogistic"]


class FastLogistic:
    """``FuncTransformer(squash) | LegitimateTails | StandardScaler | LogisticRegression``, scored from folded weights
    (earlier checkpoints: without ``LegitimateTails``)."""

    __slots__ = ("pipeline", "_terms", "_intercept", "_stale")

    # The default: a checkpoint written before __reduce__ is built empty, then given its pipeline (__setstate__).
    def __init__(self, pipeline: compose.Pipeline = None) -> None:  # type: ignore[assignment]
        self.pipeline = pipeline
        # feature -> (w / sd, mean, squash's log scale, its hinges: ((knot, w / sd, mean), ...))
        self._terms: dict[str, tuple[float, float, float, tuple[tuple[float, float, float], ...]]] = {}
        self._intercept = 0.0
        self._stale = True

    def learn_one(self, x: dict[str, Any], y: bool, w: float = 1.0) -> None:
        self.pipeline.learn_one(x, y, w=w)
        self._stale = True

    def _fold(self) -> None:
        steps = list(self.pipeline.steps.values())
        scaler, regression = steps[-2], steps[-1]
        # LegitimateTails between squash and scaler (fraudstream.core.model.tails); absent in earlier checkpoints.
        knots = steps[1].knots() if len(steps) == 4 else {}
        weights, means, variances = regression.weights, scaler.means, scaler.vars

        def folded(name: str) -> tuple[float, float]:
            w, v = weights.get(name, 0.0), variances.get(name, 0.0)
            # The scaler maps a feature of no variance to 0.0: it adds nothing, as a zero coefficient does.
            return (w / v**0.5 if v else 0.0, means.get(name, 0.0))

        terms: dict[str, tuple[float, float, float, tuple[tuple[float, float, float], ...]]] = {}
        for name in {*weights, *knots}:
            a, mean = folded(name)
            hinges = tuple((knot, *folded(hinge)) for hinge, knot in knots.get(name, ()))
            terms[name] = (a, mean, log_scale(name), hinges)
        self._terms = terms
        self._intercept = regression.intercept
        self._stale = False

    def proba_one(self, x: dict[str, Any]) -> float:
        """P(fraud): river's ``predict_proba_one(x)[True]`` for this pipeline."""
        if self._stale:
            self._fold()
        z = self._intercept
        terms, log1p = self._terms, math.log1p
        for name, value in x.items():
            term = terms.get(name)
            if term is None or value is None:
                continue  # never learned (weight 0), or absent: squash drops it
            a, mean, scale, hinges = term
            # A float, said so: compiled (fraudstream.core.native), the arithmetic is then native, not generic.
            v: float = value
            if scale and v > 0:
                v = log1p(scale * v)
            z += a * (v - mean)
            if hinges:  # how far beyond legitimate values it lies, on a log scale (LegitimateTails, on_log_scale)
                h: float = v if scale else (log1p(v) if v > 0 else 0.0)
                for knot, b, m in hinges:
                    z += b * ((h - knot if h > knot else 0.0) - m)
        # river's sigmoid, clamps included.
        if z < -30:
            return 0.0
        if z > 30:
            return 1.0
        return 1 / (1 + math.exp(-z))

    def predict_proba_one(self, x: dict[str, Any]) -> dict[bool, float]:
        p = self.proba_one(x)
        return {False: 1.0 - p, True: p}

    def __reduce__(self) -> tuple[Any, ...]:
        # A checkpoint holds what learned: the folded weights are derived. Spelled out, so that the compiled
        # class (mypyc: fraudstream.core.native) and the Python one write and read the same pickle.
        return (FastLogistic, (self.pipeline,))

    def __getstate__(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["pipeline"])  # type: ignore[misc]  # a checkpoint written before __reduce__
