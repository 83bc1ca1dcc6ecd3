"""Offline evaluation: AUC, AP, card precision and recall@k, detection and amount figures, the Handbook's batch
baselines, and a plain reference learner to measure the online model against.

Only numpy is needed to import it; the baselines import scikit-learn (an optional extra) when they run, the alert
replay imports fraudstream's decision policy when it runs, and the reference learner (river) is imported on first
use of its names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    AmountPrevented,
    CardPrecision,
    DailyReport,
    Detection,
    EvaluationReport,
    alerts_from_scores,
    amount_prevented,
    average_precision,
    card_precision_at_k,
    day_index,
    evaluate,
    format_hours,
    roc_auc,
    scored_columns,
    time_to_detection,
)

if TYPE_CHECKING:
    from fraudstream.evaluation.reference import ReferenceLearner, ReferenceResult, in_legit_sample

__all__ = [
    "DAY_MS",
    "FEATURES",
    "MODELS",
    "PUBLISHED",
    "AmountPrevented",
    "CardPrecision",
    "DailyReport",
    "Detection",
    "EvaluationReport",
    "Protocol",
    "ReferenceLearner",
    "ReferenceResult",
    "Transactions",
    "alerts_from_scores",
    "amount_prevented",
    "average_precision",
    "baseline_features",
    "baseline_reports",
    "card_precision_at_k",
    "day_index",
    "evaluate",
    "format_hours",
    "in_legit_sample",
    "known_by_label",
    "roc_auc",
    "run_baselines",
    "scored_columns",
    "time_to_detection",
]

_REFERENCE = frozenset({"ReferenceLearner", "ReferenceResult", "in_legit_sample"})


def __getattr__(name: str) -> Any:
    # river takes most of a second to import: only those who use the reference learner pay for it.
    if name in _REFERENCE:
        from fraudstream.evaluation import reference

        return getattr(reference, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
