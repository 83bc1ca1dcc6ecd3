"""What a linear model sees of the features: heavy tails on a log scale.

>>> squash({"amount": 99.0, "is_night": 1.0, "card_amount_ratio_30d": 3.0, "gone": None})
{'amount': 4.605170185988092, 'is_night': 1.0, 'card_amount_ratio_30d': 3.0}
"""

from __future__ import annotations

import math

__all__ = ["squash", "is_log_scaled"]

#: Heavy-tailed features: on a log scale a linear model sees their shape.
_LOG_SCALED = ("amount", "_sum_", "_mean_", "_std_", "_count_", "seconds")


_log_scaled: dict[str, bool] = {}


def is_log_scaled(name: str) -> bool:
    """Whether :func:`squash` takes ``log1p`` of this feature (when positive)."""
    flag = _log_scaled.get(name)
    if flag is None:
        flag = _log_scaled[name] = any(tag in name for tag in _LOG_SCALED) and "ratio" not in name and "zscore" not in name
    return flag


def squash(x: dict) -> dict:
    """log1p of amounts, counts and gaps; everything else as it is.

    A module-level function, not a lambda, so the pipeline pickles for checkpoints.
    """
    log1p, scaled = math.log1p, is_log_scaled
    return {k: (log1p(v) if v > 0 and scaled(k) else v) for k, v in x.items() if v is not None}
