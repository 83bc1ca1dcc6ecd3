"""River pipelines a deployment can choose by name (``FRAUDSTREAM_MODEL``).

>>> model = make_model("logistic")
>>> model.predict_proba_one({"amount": 10.0}).get(True, 0.5)
0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable

from river import compose, forest, linear_model, optim, preprocessing

__all__ = ["make_model", "MODELS", "squash"]

#: Heavy-tailed features: on a log scale a linear model sees their shape.
_LOG_SCALED = ("amount", "_sum_", "_mean_", "_std_", "_count_", "seconds")


_log_scaled: dict[str, bool] = {}


def _is_log_scaled(name: str) -> bool:
    flag = _log_scaled.get(name)
    if flag is None:
        flag = _log_scaled[name] = any(tag in name for tag in _LOG_SCALED) and "ratio" not in name and "zscore" not in name
    return flag


def squash(x: dict) -> dict:
    """log1p of amounts, counts and gaps; everything else as it is.

    A module-level function, not a lambda, so the pipeline pickles for checkpoints.
    """
    log1p, scaled = math.log1p, _is_log_scaled
    return {k: (log1p(v) if v > 0 and scaled(k) else v) for k, v in x.items() if v is not None}


def _logistic() -> compose.Pipeline:
    return compose.Pipeline(
        compose.FuncTransformer(squash),
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.SGD(0.02), l2=1e-4),
    )


def _forest() -> compose.Pipeline:
    return compose.Pipeline(
        compose.FuncTransformer(squash),
        forest.ARFClassifier(n_models=10, seed=42),
    )


MODELS: dict[str, Callable[[], compose.Pipeline]] = {"logistic": _logistic, "forest": _forest}


def make_model(name: str) -> compose.Pipeline:
    try:
        return MODELS[name]()
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
