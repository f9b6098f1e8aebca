"""Paired bootstrap of average precision, vectorised over resamples.

Calling torchmetrics 1000 x C x 2 times costs minutes. Here a resample is a vector of counts (how
often each listing was drawn), so each class and model is sorted ONCE and a resample's AP is a
weighted cumulative sum in that fixed order: O(resamples x listings). It equals sklearn's
`average_precision_score` on the resampled listings, ties included (checked in
tests/unit/test_evaluate_compare.py).
"""

from __future__ import annotations

import numpy as np

MAX_CELLS = 4_000_000  # resamples x listings per chunk: bounds memory to ~100 MB


def resample_counts(rng: np.random.Generator, n_listings: int, n: int) -> np.ndarray:
    """[n, n_listings] draw counts of `n` resamples with replacement of the listings."""
    idx = rng.integers(0, n_listings, size=(n, n_listings))
    flat = (idx + n_listings * np.arange(n)[:, None]).ravel()
    return np.bincount(flat, minlength=n * n_listings).reshape(n, n_listings)


def weighted_average_precision(y: np.ndarray, s: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AP of each resample (row of `counts`) of labels `y` and scores `s`; NaN if no positives."""
    order = np.argsort(-s, kind="stable")
    s, y, w = s[order], y[order], counts[:, order].astype(np.float64)
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last listing of each tied score
    tp = np.cumsum(w * y, axis=1)[:, ends]
    flagged = np.cumsum(w, axis=1)[:, ends]
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    gained = np.diff(tp, axis=1, prepend=0.0)  # positives gained at each threshold
    n_pos = tp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pos > 0, (gained * precision).sum(axis=1) / n_pos, np.nan)


def paired_bootstrap_ap(
    y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """AP of models a and b ([n, C] each) on the same `n` resamples of the listings."""
    rng = np.random.default_rng(seed)
    n_listings, n_classes = y_true.shape
    chunk = max(1, MAX_CELLS // max(n_listings, 1))
    ap_a = np.empty((n, n_classes))
    ap_b = np.empty((n, n_classes))
    for start in range(0, n, chunk):
        counts = resample_counts(rng, n_listings, min(chunk, n - start))
        rows = slice(start, start + len(counts))
        for j in range(n_classes):
            ap_a[rows, j] = weighted_average_precision(y_true[:, j], score_a[:, j], counts)
            ap_b[rows, j] = weighted_average_precision(y_true[:, j], score_b[:, j], counts)
    return ap_a, ap_b


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of the finite samples; None if there are none."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
