"""What a linear model sees of the features: heavy tails, and rates near zero, on a log scale.

A linear model weighs a feature in proportion to its value. Amounts, counts and gaps are heavy-tailed: on a log scale
it sees their shape. Fraud rates and shares of compromised cards are mostly 0, and the step from 0 to a few percent
says far more than the step from 30% to 40%: ``log1p(100 · rate)`` gives the small ones their weight (measured: AP
up on the Handbook stream and on the account-takeover, mixed and merchant-breach scenarios).

>>> squash({"amount": 99.0, "is_night": 1.0, "card_amount_ratio_30d": 3.0, "merchant_fraud_rate_7d": 0.01, "gone": None})
{'amount': 4.605170185988092, 'is_night': 1.0, 'card_amount_ratio_30d': 3.0, 'merchant_fraud_rate_7d': 0.6931471805599453}
"""

from __future__ import annotations

import math

__all__ = ["squash", "log_scale"]

#: Heavy-tailed features: on a log scale a linear model sees their shape.
_LOG_SCALED = ("amount", "_sum_", "_mean_", "_std_", "_count_", "seconds")
#: Names with a log-scaled tag that are ratios, z-scores or log-odds already.
_ALREADY_SCALED = ("ratio", "zscore", "logodds")
#: Rates and shares in [0, 1], mostly 0.
_RATES = ("fraud_rate", "cpp_share")

_scales: dict[str, float] = {}


def log_scale(name: str) -> float:
    """``s`` where :func:`squash` takes ``log1p(s · value)`` of a positive value of this feature; 0.0: as it is."""
    s = _scales.get(name)
    if s is None:
        if any(tag in name for tag in _RATES):
            s = 100.0
        elif any(tag in name for tag in _LOG_SCALED) and not any(tag in name for tag in _ALREADY_SCALED):
            s = 1.0
        else:
            s = 0.0
        _scales[name] = s
    return s


def squash(x: dict) -> dict:
    """Each feature on the scale above; absent (None) ones dropped.

    A module-level function, not a lambda, so the pipeline pickles for checkpoints.
    """
    log1p, scale = math.log1p, log_scale
    return {k: (log1p(s * v) if v > 0 and (s := scale(k)) else v) for k, v in x.items() if v is not None}
