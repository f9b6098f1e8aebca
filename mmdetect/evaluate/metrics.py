"""Per-class, macro and micro metrics of multi-label scores against labels.

AP, ROC-AUC and ECE come from torchmetrics; operating points (P@R, R@P) from the exact counts in
`curves.py`. What the served thresholds do is in operating.py, not here. A metric that is undefined (no positives, or no negatives for
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
from mmdetect.evaluate.curves import binary_curve, precision_at_recall, recall_at_precision

NOT_AVERAGED = ("count", "support", "note", "threshold")
NO_POSITIVES = "no positives in this snapshot"


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


def class_metrics(y: np.ndarray, s: np.ndarray, cfg: EvalConfig) -> dict[str, Any]:
    """All threshold-free metrics of one class."""
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
        "ece": expected_calibration_error(y, s, cfg.ece_bins),
        "note": "; ".join(notes) or None,
    }


def micro_metrics(y_true: np.ndarray, y_score: np.ndarray, cfg: EvalConfig) -> dict[str, Any]:
    """The same metrics over all flattened (listing, class) pairs."""
    return class_metrics(y_true.ravel(), y_score.ravel(), cfg)


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
    y_true: np.ndarray, y_score: np.ndarray, taxonomy: Sequence[str], cfg: EvalConfig
) -> dict[str, Any]:
    """`{"classes": {name: ...}, "macro": ..., "micro": ...}` for one model."""
    classes = {
        name: class_metrics(y_true[:, j], y_score[:, j], cfg) for j, name in enumerate(taxonomy)
    }
    return {
        "classes": classes,
        "macro": macro_average(list(classes.values())),
        "micro": micro_metrics(y_true, y_score, cfg),
    }


def calibration_errors(
    y_true: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, taxonomy: Sequence[str], bins: int
) -> dict[str, Any]:
    """ECE per class and macro of the model's raw probabilities and of the calibrated ones."""
    out = {}
    for name, s in (("raw", raw), ("calibrated", calibrated)):
        per = {c: expected_calibration_error(y_true[:, j], s[:, j], bins)
               for j, c in enumerate(taxonomy)}  # fmt: skip
        values = [v for v in per.values() if v is not None]
        out[name] = {"classes": per, "macro": float(np.mean(values)) if values else None}
    return out
