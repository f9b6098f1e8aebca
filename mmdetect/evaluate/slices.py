"""Drift slices: AP, support and flag rate by month, category and has-photo.

Decisions are those of the served operating point, so a slice's `flag_rate` shows how the
review load shifts. A slice with fewer than `min_slice_support` listings is listed with its counts
but null metrics (too few listings to trust).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from mmdetect.evaluate.config import EvalConfig
from mmdetect.evaluate.metrics import average_precision
from mmdetect.evaluate.predictions import PredictionRecord

UNKNOWN = "(unknown)"


def slice_value(record: PredictionRecord, kind: str) -> str:
    """The slice a listing falls in: "YYYY-MM" (as written, no time-zone shift), category, yes/no."""
    if kind == "month":
        if record.created_at is None:
            return UNKNOWN
        return datetime.fromisoformat(record.created_at.replace("Z", "+00:00")).strftime("%Y-%m")
    if kind == "category":
        return record.category if record.category is not None else "(none)"
    if kind == "has_photo":
        return UNKNOWN if record.n_photos is None else ("yes" if record.n_photos > 0 else "no")
    raise ValueError(f"unknown slice kind {kind!r}")


def slice_metrics(
    y_true: np.ndarray,
    y_score: np.ndarray,
    flag: np.ndarray,
    taxonomy: Sequence[str],
    min_support: int,
) -> dict[str, Any]:
    """Counts, per-class and macro AP and flag rates of the listings of one slice."""
    n = len(y_true)
    support = {c: int(y_true[:, j].sum()) for j, c in enumerate(taxonomy)}
    if n < min_support:
        return {
            "count": n,
            "support": support,
            "macro_average_precision": None,
            "n_classes": 0,
            "average_precision": dict.fromkeys(taxonomy),
            "flag_rate": None,
            "flag_rate_by_class": dict.fromkeys(taxonomy),
            "note": f"fewer than {min_support} listings: metrics not computed",
        }
    ap = {c: average_precision(y_true[:, j], y_score[:, j]) for j, c in enumerate(taxonomy)}
    values = [v for v in ap.values() if v is not None]
    return {
        "count": n,
        "support": support,
        "macro_average_precision": float(np.mean(values)) if values else None,
        "n_classes": len(values),
        "average_precision": ap,
        "flag_rate": float(flag.any(axis=1).mean()),
        "flag_rate_by_class": {c: float(flag[:, j].mean()) for j, c in enumerate(taxonomy)},
        "note": None if values else "no positives in this slice",
    }


def drift_slices(
    records: Sequence[PredictionRecord],
    y_true: np.ndarray,
    y_score: np.ndarray,
    flag: np.ndarray,
    taxonomy: Sequence[str],
    cfg: EvalConfig,
) -> dict[str, list[dict[str, Any]]]:
    """`{kind: [slice, ...]}` for each configured kind; months in order, others largest first.
    `flag` [N, C]: the class sent the listing to review or hid it (operating.flagged)."""
    out = {}
    for kind in cfg.slices:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, rec in enumerate(records):
            groups[slice_value(rec, kind)].append(i)
        by = (lambda kv: kv[0]) if kind == "month" else (lambda kv: (-len(kv[1]), kv[0]))
        out[kind] = []
        for value, rows in sorted(groups.items(), key=by):
            m = slice_metrics(
                y_true[rows], y_score[rows], flag[rows], taxonomy, cfg.min_slice_support
            )
            out[kind].append({"value": value, **m})
    return out
