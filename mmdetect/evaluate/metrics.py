"""Per-class, macro and micro metrics of multi-label scores against labels.

AP, ROC-AUC and ECE come from torchmetrics; operating points (P@R, R@P, rates at a threshold) from
the exact counts in `curves.py`. A metric that is undefined (no positives, or no negatives for
AUC) is None with a note, never NaN. Macro = mean over the classes that have a value, and
`n_classes` says how many; micro = the same metric over all flattened (listing, class) pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_calibration_error,
)

from mmdetect.evaluate.config import EvalConfig
from mmdetect.evaluate.curves import (
    binary_curve,
    precision_at_recall,
    rates_at,
    rates_from_counts,
    recall_at_precision,
)
from mmdetect.evaluate.thresholds import NO_POSITIVES, tier_masks

NOT_AVERAGED = ("count", "support", "note", "threshold")


def key(value: float) -> str:
    """JSON key of an operating point: 0.8 -> "0.8"."""
    return f"{value:g}"


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def average_precision(y: np.ndarray, s: np.ndarray) -> float | None:
    """Step-wise AP (= sklearn's average_precision_score); None without positives."""
    if y.sum() == 0:
        return None
    return float(binary_average_precision(_t(s), _t(y)))


def roc_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """ROC-AUC; None unless there are both positives and negatives."""
    if y.sum() in (0, len(y)):
        return None
    return float(binary_auroc(_t(s), _t(y)))


def expected_calibration_error(y: np.ndarray, s: np.ndarray, n_bins: int) -> float | None:
    """L1 ECE of the positive-class probability over equal-width bins; None when empty."""
    if len(y) == 0:
        return None
    return float(binary_calibration_error(_t(s), _t(y), n_bins=n_bins))


def class_metrics(
    y: np.ndarray, s: np.ndarray, cfg: EvalConfig, tiers: Mapping[str, float | None]
) -> dict[str, Any]:
    """All metrics of one class; `tiers` holds its `review` and `hide` thresholds."""
    curve = binary_curve(y, s)
    n_pos = int(y.sum())
    notes = []
    if n_pos == 0:
        notes.append(NO_POSITIVES)
    elif n_pos == len(y):
        notes.append("no negatives in this snapshot: roc_auc undefined")
    return {
        "count": int(len(y)),
        "support": n_pos,
        "average_precision": average_precision(y, s),
        "roc_auc": roc_auc(y, s),
        "precision_at_recall": {
            key(r): precision_at_recall(curve, r) for r in cfg.precision_at_recall
        },
        "recall_at_precision": {
            key(p): recall_at_precision(curve, p) for p in cfg.recall_at_precision
        },
        "at_review": _at(y, s, tiers.get("review")),
        "at_hide": _at(y, s, tiers.get("hide")),
        "ece": expected_calibration_error(y, s, cfg.ece_bins),
        "note": "; ".join(notes) or None,
    }


def _at(y: np.ndarray, s: np.ndarray, threshold: float | None) -> dict[str, Any]:
    if threshold is None:
        return {"threshold": None, "precision": None, "recall": None, "f1": None}
    return {"threshold": threshold, **rates_at(y, s, threshold)}


def micro_metrics(
    y_true: np.ndarray,
    y_score: np.ndarray,
    taxonomy: Sequence[str],
    cfg: EvalConfig,
    thresholds: Mapping[str, Any],
) -> dict[str, Any]:
    """Metrics over all flattened pairs; rates at the per-class review/hide thresholds."""
    y, s = y_true.ravel(), y_score.ravel()
    out = class_metrics(y, s, cfg, {})
    hide, flag = tier_masks(y_score, taxonomy, thresholds)
    for name, mask in (("at_review", flag), ("at_hide", hide)):
        tp, n_pos = int((mask & (y_true == 1)).sum()), int(y_true.sum())
        out[name] = rates_from_counts(tp, int(mask.sum()), n_pos)
    return out


def macro_average(per_class: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of every numeric leaf over the classes where it is not None, with `n_classes`."""
    first = per_class[0]
    means: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    for name, value in first.items():
        if name in NOT_AVERAGED:
            continue
        if isinstance(value, Mapping):
            sub = macro_average([c[name] for c in per_class])
            means[name], counts[name] = sub, sub.pop("n_classes")
            continue
        values = [c[name] for c in per_class if c[name] is not None]
        means[name] = float(np.mean(values)) if values else None
        counts[name] = len(values)
    return {**means, "n_classes": counts}


def summarize_metrics(
    y_true: np.ndarray,
    y_score: np.ndarray,
    taxonomy: Sequence[str],
    cfg: EvalConfig,
    thresholds: Mapping[str, Any],
) -> dict[str, Any]:
    """`{"classes": {name: ...}, "macro": ..., "micro": ...}` for one model."""
    classes = {
        name: class_metrics(y_true[:, j], y_score[:, j], cfg, thresholds["classes"][name])
        for j, name in enumerate(taxonomy)
    }
    return {
        "classes": classes,
        "macro": macro_average(list(classes.values())),
        "micro": micro_metrics(y_true, y_score, taxonomy, cfg, thresholds),
    }
