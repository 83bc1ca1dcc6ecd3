"""Offline evaluation: AUC, AP, card precision@k, and the Handbook's batch baselines.

Only numpy is needed to import it; the baselines import scikit-learn (an optional extra) when they run.
"""

from __future__ import annotations

from fraudstream.evaluation.baselines import (
    FEATURES,
    MODELS,
    PUBLISHED,
    Protocol,
    Transactions,
    baseline_features,
    baseline_reports,
    known_by_label,
    run_baselines,
)
from fraudstream.evaluation.metrics import (
    DAY_MS,
    CardPrecision,
    DailyReport,
    EvaluationReport,
    average_precision,
    card_precision_at_k,
    day_index,
    evaluate,
    roc_auc,
    scored_columns,
)

__all__ = [
    "DAY_MS",
    "FEATURES",
    "MODELS",
    "PUBLISHED",
    "CardPrecision",
    "DailyReport",
    "EvaluationReport",
    "Protocol",
    "Transactions",
    "average_precision",
    "baseline_features",
    "baseline_reports",
    "card_precision_at_k",
    "day_index",
    "evaluate",
    "known_by_label",
    "roc_auc",
    "run_baselines",
    "scored_columns",
]
