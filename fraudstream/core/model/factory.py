"""River pipelines a deployment can choose by name (``FRAUDSTREAM_MODEL``).

>>> model = make_model("logistic")
>>> model.predict_proba_one({"amount": 10.0}).get(True, 0.5)
0.5
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from river import compose, forest, linear_model, optim, preprocessing

from fraudstream.core.model.linear import FastLogistic
from fraudstream.core.model.squash import log_scale, squash  # earlier checkpoints' pickles name factory.squash
from fraudstream.core.model.tails import LegitimateTails

__all__ = ["make_model", "MODELS", "squash", "log_scale"]

def _logistic() -> FastLogistic:
    return FastLogistic(compose.Pipeline(
        compose.FuncTransformer(squash),
        LegitimateTails(),
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.SGD(0.005), l2=1e-4),  # README: how it was chosen
    ))


def _forest() -> compose.Pipeline:
    return compose.Pipeline(
        compose.FuncTransformer(squash),
        forest.ARFClassifier(n_models=10, seed=42),
    )


#: Each builds a classifier with river's ``learn_one(x, y, w=...)`` and ``predict_proba_one(x)``.
MODELS: dict[str, Callable[[], Any]] = {"logistic": _logistic, "forest": _forest}


def make_model(name: str) -> Any:
    try:
        return MODELS[name]()
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
