"""A river logistic pipeline that scores without river's per-call machinery; two of them in one pass.

river's ``Pipeline.predict_proba_one`` builds three dicts per call (the squashed features, the scaled ones, the
probabilities) and walks the weights' ``VectorDict``: about 25 µs, a third of what an authorization costs. The
model changes only when it learns, a few percent of authorizations, so :class:`FastLogistic` folds the scaler into
the weights once per change (``a = w / sd``) and scores with one loop over the features: the same function,
summed in another order, so equal to river's to far better than 1e-9. Learning is river's, untouched: river stays
the learner, and the pipeline inside is what checkpoints hold.

:class:`Blend` averages the probabilities of one or two of them (``OnlineModel``'s label streams, "separate") in
the same single loop: the feature lookup, its log scale and its hinge value once, each model's sum apart. Each
model's sum takes the same steps in the same order as its own :meth:`FastLogistic.proba_one`, so the blend is the
average of their scores exactly, not to a tolerance. The folded terms are small compiled objects (mypyc:
``fraudstream.core.native``) whose fields are native floats: the loop reads them without unboxing.

Why one loop and not numpy over a batch: an authorization's features are a dict of 55 floats; turning a batch of
them into a matrix costs about 2.5 µs an authorization (reading the values in the catalogue's order, then the
array), more than this loop costs for both models, and a batch could only be scored at once between two model
updates (the backtest learns every few dozen authorizations). Measured in issue 18's closing note.

>>> from river import compose, linear_model, optim, preprocessing
>>> from fraudstream.core.model.squash import squash
>>> model = FastLogistic(compose.Pipeline(compose.FuncTransformer(squash), preprocessing.StandardScaler(),
...                                        linear_model.LogisticRegression(optimizer=optim.SGD(0.05))))
>>> for i in range(50):
...     model.learn_one({"amount": 900.0 if i % 2 else 10.0, "is_night": float(i % 3 == 0)}, bool(i % 2))
>>> x = {"amount": 700.0, "is_night": 1.0}
>>> abs(model.proba_one(x) - model.pipeline.predict_proba_one(x)[True]) < 1e-12
True
>>> Blend([model, model]).proba_one(x) == (model.proba_one(x) + model.proba_one(x)) / 2
True
"""

from __future__ import annotations

import math
from typing import Any

from river import compose

from fraudstream.core.model.squash import log_scale

__all__ = ["FastLogistic", "Blend"]

#: ``log1p`` of the whole numbers below 1024, each computed once: counts are whole numbers, mostly small, and a call
#: to math.log1p costs compiled code a boxed float each way (mypyc has no native log1p).
_LOG1P = [math.log1p(float(i)) for i in range(1024)]


class _Hinge:
    """One hinge of a feature in one model: ``b · (max(0, h − knot) − mean)``, ``h`` the value on a log scale."""

    __slots__ = ("knot", "b", "mean")

    def __init__(self, knot: float, b: float, mean: float) -> None:
        self.knot = knot
        self.b = b
        self.mean = mean


class _Term:
    """One feature's part of one model's sum: ``a · (v − mean)`` (``a = w / sd``), then its hinges."""

    __slots__ = ("a", "mean", "hinges")

    def __init__(self, a: float, mean: float, hinges: list[_Hinge]) -> None:
        self.a = a
        self.mean = mean
        self.hinges = hinges


class _Feature:
    """One feature for the blend: squash's log scale, and its term in the first and the second model (None: never
    learned there, weight 0)."""

    __slots__ = ("scale", "first", "second", "hinged")

    def __init__(self, scale: float, first: _Term | None, second: _Term | None) -> None:
        self.scale = scale
        self.first = first
        self.second = second
        self.hinged = bool((first is not None and first.hinges) or (second is not None and second.hinges))


class FastLogistic:
    """``FuncTransformer(squash) | LegitimateTails | StandardScaler | LogisticRegression``, scored from folded weights
    (earlier checkpoints: without ``LegitimateTails``)."""

    __slots__ = ("pipeline", "_terms", "_features", "_layout", "_intercept", "_stale")

    # The default: a checkpoint written before __reduce__ is built empty, then given its pipeline (__setstate__).
    def __init__(self, pipeline: compose.Pipeline = None) -> None:  # type: ignore[assignment]
        self.pipeline = pipeline
        self._terms: dict[str, _Term] = {}  # feature -> its term; a new dict at each fold (see Blend.fresh)
        self._features: dict[str, _Feature] = {}  # the same, as a blend of this model alone scores them
        self._layout = _Layout()  # of the features scored last
        self._intercept = 0.0
        self._stale = True

    def learn_one(self, x: dict[str, Any], y: bool, w: float = 1.0) -> None:
        self.pipeline.learn_one(x, y, w=w)
        self._stale = True

    def fold(self) -> None:
        """The folded terms, from the pipeline as it is now (done when scoring after a change)."""
        steps = list(self.pipeline.steps.values())
        scaler, regression = steps[-2], steps[-1]
        # LegitimateTails between squash and scaler (fraudstream.core.model.tails); absent in earlier checkpoints.
        knots = steps[1].knots() if len(steps) == 4 else {}
        weights, means, variances = regression.weights, scaler.means, scaler.vars

        def folded(name: str) -> tuple[float, float]:
            w, v = weights.get(name, 0.0), variances.get(name, 0.0)
            # The scaler maps a feature of no variance to 0.0: it adds nothing, as a zero coefficient does.
            return (w / v**0.5 if v else 0.0, means.get(name, 0.0))

        terms: dict[str, _Term] = {}
        features: dict[str, _Feature] = {}
        for name in {*weights, *knots}:
            a, mean = folded(name)
            hinges = [_Hinge(knot, *folded(hinge)) for hinge, knot in knots.get(name, ())]
            term = terms[name] = _Term(a, mean, hinges)
            features[name] = _Feature(log_scale(name), term, None)
        self._terms = terms
        self._features = features
        self._layout = _Layout()
        self._intercept = regression.intercept
        self._stale = False

    def proba_one(self, x: dict[str, Any]) -> float:
        """P(fraud): river's ``predict_proba_one(x)[True]`` for this pipeline."""
        if self._stale:
            self.fold()
        z, _ = _sums(self._features, self._layout, x, self._intercept, 0.0)
        return _sigmoid(z)

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


class Blend:
    """The mean of the probabilities of ``models`` (one or two :class:`FastLogistic`, in this order), as
    ``OnlineModel.score`` takes it: ``(0.0 + p1 + p2) / 2``, from one pass over the features.

    It follows its models' learning: a model that learned is folded again at the next score, and the blend with it.
    """

    __slots__ = ("models", "_features", "_layout", "_folds", "_intercepts")

    def __init__(self, models: list[FastLogistic]) -> None:
        if not 1 <= len(models) <= 2:
            raise ValueError(f"a blend of one or two models, not {len(models)}")
        self.models = models
        self._features: dict[str, _Feature] = {}
        self._layout = _Layout()
        self._folds: list[dict[str, _Term]] = []  # each model's terms the blend was built from
        self._intercepts = (0.0, 0.0)

    def fresh(self) -> bool:
        """Whether the blend is built from its models' current folds (each fold makes a new terms dict)."""
        models, folds = self.models, self._folds
        if len(folds) != len(models):
            return False
        for i in range(len(models)):  # not zip: it would allocate, and this runs at every score
            model = models[i]
            if model._stale or model._terms is not folds[i]:
                return False
        return True

    def _build(self) -> None:
        for model in self.models:
            if model._stale:
                model.fold()
        if len(self.models) == 1:
            self._features = self.models[0]._features  # one model: its own features, as its proba_one scores them
            self._intercepts = (self.models[0]._intercept, 0.0)
        else:
            first, second = self.models[0]._terms, self.models[1]._terms
            self._features = {name: _Feature(log_scale(name), first.get(name), second.get(name)) for name in {*first, *second}}
            self._intercepts = (self.models[0]._intercept, self.models[1]._intercept)
        self._layout = _Layout()
        self._folds = [model._terms for model in self.models]

    def proba_one(self, x: dict[str, Any]) -> float:
        if not self.fresh():
            self._build()
        z1, z2 = _sums(self._features, self._layout, x, self._intercepts[0], self._intercepts[1])
        return self._mean(z1, z2)

    def occluded(self, x: dict[str, Any], usual: dict[str, float], skip: tuple[str, ...] = ()) -> tuple[float, dict[str, float]]:
        """The blend's score of ``x``, and its score with each feature of ``usual`` (but those in ``skip``) in turn at
        its usual value instead (an alert's explanation, `OnlineModel.explain`).

        A feature's part of each model's sum depends on that feature alone, so each occluded score is the sums of
        ``x`` with that one part replaced: one pass over the features, not a score per feature (55 scores an alert
        cost 280 µs). Equal to scoring each occluded copy to ~1e-15 (the same terms, added in another order); a
        feature whose part does not change (at its usual value, or never learned) gives the score exactly.

        >>> from fraudstream.core.model.factory import make_model
        >>> m = make_model("logistic")  # a FastLogistic
        >>> for i in range(40):
        ...     m.learn_one({"amount": 900.0 if i % 2 else 10.0, "is_night": float(i % 3 == 0)}, bool(i % 2))
        >>> x = {"amount": 700.0, "is_night": 1.0}
        >>> base, without = Blend([m]).occluded(x, {"amount": 50.0, "is_night": 0.0})
        >>> base == m.proba_one(x), abs(without["amount"] - m.proba_one({"amount": 50.0, "is_night": 1.0})) < 1e-12
        (True, True)
        """
        if not self.fresh():
            self._build()
        features = self._features
        z1, z2 = _sums(features, self._layout, x, self._intercepts[0], self._intercepts[1])
        base = self._mean(z1, z2)
        out: dict[str, float] = {}
        one = _Layout()  # a feature at a time: its part of each sum, by the very steps of the whole sums
        for name, value in x.items():
            if name not in usual or name in skip:
                continue
            if features.get(name) is None or value is None:
                out[name] = base  # never learned (weight 0), or absent: no part in the sums
                continue
            now1, now2 = _sums(features, one, {name: value}, 0.0, 0.0)
            then1, then2 = _sums(features, one, {name: usual[name]}, 0.0, 0.0)
            d1, d2 = then1 - now1, then2 - now2
            out[name] = base if d1 == 0.0 and d2 == 0.0 else self._mean(z1 + d1, z2 + d2)
        return base, out

    def _mean(self, z1: float, z2: float) -> float:
        total = 0.0
        total += _sigmoid(z1)
        if len(self.models) == 2:
            total += _sigmoid(z2)
        return total / len(self.models)


class _Layout:
    """The names of the features scored last, in their order, each with its :class:`_Feature` (None: not learned).

    Every authorization's features come in the same order, under the same name objects (the feature functions'
    constants; orjson's key cache for decoded records): a name found at its place, the very same object, needs no
    dict lookup. Any other name (another order, an equal string that is another object) is looked up, and takes
    the place: one (name, feature) pair, stored in one step. Reset with every fold.
    """

    __slots__ = ("places",)

    def __init__(self) -> None:
        self.places: list[tuple[str, _Feature | None]] = []


def _sums(features: dict[str, _Feature], layout: _Layout, x: dict[str, Any], z1: float, z2: float) -> tuple[float, float]:
    """Each model's ``z`` from its intercept: per model, the steps :meth:`FastLogistic.proba_one` always took."""
    log1p = math.log1p
    places = layout.places
    known = len(places)
    i = 0
    for name, value in x.items():
        if i < known and places[i][0] is name:
            feature = places[i][1]
        else:
            feature = features.get(name)
            if i < known:
                places[i] = (name, feature)
            else:
                places.append((name, feature))
                known += 1
        i += 1
        if feature is None or value is None:
            continue  # never learned (weight 0), or absent: squash drops it
        # A float, said so: compiled (fraudstream.core.native), the arithmetic is then native, not generic.
        v: float = value
        scale = feature.scale
        if scale and v > 0:
            if scale == 1.0 and v < 1024.0 and float(int(v)) == v:  # a whole number at scale 1 (a count)
                v = _LOG1P[int(v)]  # log1p(1.0 * v): the same double
            else:
                v = log1p(scale * v)
        h = 0.0
        if feature.hinged:  # how far beyond legitimate values it lies, on a log scale (LegitimateTails, on_log_scale)
            h = v if scale else (log1p(v) if v > 0 else 0.0)
        term = feature.first
        if term is not None:
            z1 += term.a * (v - term.mean)
            for hinge in term.hinges:
                z1 += hinge.b * ((h - hinge.knot if h > hinge.knot else 0.0) - hinge.mean)
        term = feature.second
        if term is not None:
            z2 += term.a * (v - term.mean)
            for hinge in term.hinges:
                z2 += hinge.b * ((h - hinge.knot if h > hinge.knot else 0.0) - hinge.mean)
    return z1, z2


def _sigmoid(z: float) -> float:
    """river's sigmoid, clamps included."""
    if z < -30:
        return 0.0
    if z > 30:
        return 1.0
    return 1 / (1 + math.exp(-z))
