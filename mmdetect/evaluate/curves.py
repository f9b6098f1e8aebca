"""Exact precision/recall counts per threshold, in float64.

Hand-written on purpose: torchmetrics' `binary_precision_recall_curve` returns float32 precision,
so an exact 19/20 reads 0.94999999 and would miss a 0.95 target. Integer counts avoid that.
The values equal sklearn's `precision_recall_curve` (checked in tests/unit/test_evaluate_metrics.py).
A listing is flagged at threshold t when score >= t, everywhere in mmdetect.evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-12  # tolerance when comparing a computed rate with a target


@dataclass(frozen=True)
class Curve:
    """Counts at each distinct score used as a threshold, highest threshold first."""

    thresholds: np.ndarray  # float64, strictly decreasing
    tp: np.ndarray  # positives with score >= threshold
    fp: np.ndarray  # negatives with score >= threshold
    n_pos: int

    @property
    def precision(self) -> np.ndarray:
        return self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> np.ndarray:
        return self.tp / self.n_pos if self.n_pos else np.zeros_like(self.thresholds)


def binary_curve(y: np.ndarray, s: np.ndarray) -> Curve:
    """Counts of a binary problem: `y` in {0, 1}, `s` scores (any real numbers)."""
    if len(s) == 0:
        empty = np.zeros(0)
        return Curve(empty, empty.astype(np.int64), empty.astype(np.int64), 0)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]  # last index of each tie
    tp = np.cumsum(y_sorted)[ends]
    return Curve(s_sorted[ends].astype(np.float64), tp, ends + 1 - tp, int(y.sum()))


def precision_at_recall(curve: Curve, min_recall: float) -> float | None:
    """Best precision among thresholds whose recall >= min_recall (None without positives)."""
    if curve.n_pos == 0:
        return None
    ok = curve.recall >= min_recall - EPS
    return float(curve.precision[ok].max())


def recall_at_precision(curve: Curve, min_precision: float) -> float | None:
    """Best recall among thresholds whose precision >= min_precision; 0.0 if none reaches it."""
    if curve.n_pos == 0:
        return None
    ok = curve.precision >= min_precision - EPS
    return float(curve.recall[ok].max()) if ok.any() else 0.0


def rates_at(y: np.ndarray, s: np.ndarray, threshold: float | None) -> dict[str, float | None]:
    """Precision, recall and F1 when flagging score >= threshold (None = flag nothing).

    Counted here rather than with torchmetrics, whose stat scores flag score > threshold.
    A rate with a zero denominator is None.
    """
    flagged = np.zeros_like(s, dtype=bool) if threshold is None else s >= threshold
    return rates_from_counts(int((flagged & (y == 1)).sum()), int(flagged.sum()), int(y.sum()))


def rates_from_counts(tp: int, n_flagged: int, n_pos: int) -> dict[str, float | None]:
    """Precision, recall and F1 from true positives, flagged count and positives."""
    fp, fn = n_flagged - tp, n_pos - tp
    return {
        "precision": tp / n_flagged if n_flagged else None,
        "recall": tp / n_pos if n_pos else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None,
    }
