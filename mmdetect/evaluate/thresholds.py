"""Two-tier thresholds (auto-hide and human review) and the decisions they imply.

Per class, with "flagged" meaning score >= threshold:

* `hide` is the LOWEST threshold whose precision >= target_precision: it hides as much as it can
  while staying precise. Unreachable -> null: the class hides nothing on its own.
* `review` is the HIGHEST threshold whose recall >= target_recall: reviewers see as little as
  possible while catching the target share. Null only for a class with no positives: the class then
  sends nothing to review on its own (no evidence to set it from).
* `review` is never above `hide`; if it would be, it is clamped to `hide` and a note says so.

A listing is hidden if any class hides it, else reviewed if any class reviews it, else passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmdetect.evaluate.curves import EPS, binary_curve

NO_POSITIVES = "no positives in this snapshot"


def choose_thresholds(
    y: np.ndarray, s: np.ndarray, target_precision: float, target_recall: float
) -> dict[str, Any]:
    """`{"hide", "review", "note"}` for one class (see the module docstring for the rules)."""
    curve = binary_curve(y, s)
    if curve.n_pos == 0:
        return {"hide": None, "review": None, "note": f"{NO_POSITIVES}: hides and reviews nothing"}
    notes = []
    precise = np.flatnonzero(curve.precision >= target_precision - EPS)
    hide = float(curve.thresholds[precise[-1]]) if precise.size else None
    if hide is None:
        best = float(curve.precision.max())
        notes.append(
            f"target precision {target_precision:g} unreachable (best {best:.3f}): hides nothing"
        )
    review = float(curve.thresholds[np.flatnonzero(curve.recall >= target_recall - EPS)[0]])
    if hide is not None and review > hide:
        notes.append(f"review clamped from {review:.4g} to the hide threshold")
        review = hide
    return {"hide": hide, "review": review, "note": "; ".join(notes) or None}


def thresholds_document(
    y_true: np.ndarray,
    y_score: np.ndarray,
    taxonomy: Sequence[str],
    target_precision: float,
    target_recall: float,
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `thresholds.json` document that the export step reads."""
    classes = {
        name: choose_thresholds(y_true[:, j], y_score[:, j], target_precision, target_recall)
        for j, name in enumerate(taxonomy)
    }
    src = dict(source or {})
    return {
        "taxonomy": list(taxonomy),
        "target_precision": target_precision,
        "target_recall": target_recall,
        "classes": classes,
        "source": {"snapshot": src.get("snapshot"), "model": src.get("model")},
    }


def tier_masks(
    y_score: np.ndarray, taxonomy: Sequence[str], thresholds: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean [N, C] masks `(hide, flag)`: flag = score >= review, or hidden. Null = never."""
    never = np.inf
    hide_t = np.array([_or(thresholds["classes"][c]["hide"], never) for c in taxonomy])
    review_t = np.array([_or(thresholds["classes"][c]["review"], never) for c in taxonomy])
    hide = y_score >= hide_t
    return hide, hide | (y_score >= review_t)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def decision_table(
    y_true: np.ndarray, y_score: np.ndarray, taxonomy: Sequence[str], thresholds: Mapping[str, Any]
) -> dict[str, Any]:
    """Per class and per listing: how many are hidden, reviewed, passed (and how many positive)."""
    hide, flag = tier_masks(y_score, taxonomy, thresholds)
    review = flag & ~hide
    classes = {}
    for j, name in enumerate(taxonomy):
        tiers = {"hide": hide[:, j], "review": review[:, j], "pass": ~flag[:, j]}
        classes[name] = _tier_counts(tiers, y_true[:, j] == 1)
    any_hide, any_flag = hide.any(axis=1), flag.any(axis=1)
    overall = {"hide": any_hide, "review": any_flag & ~any_hide, "pass": ~any_flag}
    return {"classes": classes, "overall": _tier_counts(overall, y_true.any(axis=1))}


def _tier_counts(tiers: Mapping[str, np.ndarray], positive: np.ndarray) -> dict[str, int]:
    """Counts per tier, and how many of each tier are positive (`hide_positives`, ...)."""
    out = {tier: int(mask.sum()) for tier, mask in tiers.items()}
    out.update({f"{tier}_positives": int((mask & positive).sum()) for tier, mask in tiers.items()})
    return out
