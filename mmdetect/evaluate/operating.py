"""The operating point a model serves, judged on a snapshot: decisions applied, rates realised.

`apply_operating_point` turns raw scores into what `predict` writes (calibrated scores, priority,
per-class and overall decisions) through policy.decide, so evaluate and predict cannot disagree.
`operating_figures` reports what those decisions did, with two-sided 95 % binomial intervals:
hide and review rates against the budget on any snapshot, and on labeled listings the precision
of auto-hide, the false-hide rate, and the recall of prohibited listings (hidden or reviewed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from mmdetect.evaluate.config import EvaluationError
from mmdetect.evaluate.predictions import PredictionRecord
from mmdetect.policy import TIERS, decide
from mmdetect.policy.stats import interval

MAX_HIDDEN_LISTED = 200
LABELED_FIGURES = ("prohibited", "hide_precision", "false_hide_rate", "recall_at_review",
                   "review_precision")  # fmt: skip


def apply_operating_point(
    records: Sequence[PredictionRecord], doc: Mapping[str, Any], taxonomy: Sequence[str]
) -> list[PredictionRecord]:
    """Records whose `scores` are the model's raw probabilities -> records with decisions."""
    raw = np.array([[r.scores[c] for c in taxonomy] for r in records], dtype=np.float64)
    d = decide(doc, raw.reshape(len(records), len(taxonomy)), taxonomy)
    out = []
    for i, r in enumerate(records):
        per_class, overall = d.tier_names(i, taxonomy)
        out.append(
            replace(
                r,
                scores=dict(zip(taxonomy, d.calibrated[i].tolist(), strict=True)),
                model_scores=dict(zip(taxonomy, raw[i].tolist(), strict=True)),
                priority=float(d.priority[i]),
                decision=overall,
                decisions=per_class,
            )
        )
    return out


def tier_codes(
    records: Sequence[PredictionRecord], taxonomy: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(overall [N], per class [N, C]) tier codes from the records' decision fields."""
    missing = [r.id for r in records if r.decision is None]
    if missing:
        raise EvaluationError(
            f"{len(missing)} predictions carry no decision (e.g. {missing[0]}): "
            "pass --thresholds to apply an operating point to their scores"
        )
    code = {t: i for i, t in enumerate(TIERS)}
    overall = np.array([code[r.decision] for r in records], dtype=np.int8)
    per_class = np.array([[code[r.decisions[c]] for c in taxonomy] for r in records], np.int8)
    return overall, per_class.reshape(len(records), len(taxonomy))


def rate(k: int, n: int, confidence: float = 0.95, method: str = "clopper_pearson") -> dict:
    """`{count, of, value, ci}`: k of n with its two-sided interval (value and ci None if n = 0)."""
    k, n = int(k), int(n)
    ci = interval(k, n, confidence, method)
    return {"count": k, "of": n, "value": k / n if n else None,
            "ci": None if ci is None else [ci[0], ci[1]]}  # fmt: skip


def operating_figures(
    records: Sequence[PredictionRecord], taxonomy: Sequence[str], doc: Mapping[str, Any]
) -> dict[str, Any]:
    """Realised hide/review figures, overall and per class (labels used where present)."""
    overall, codes = tier_codes(records, taxonomy)
    method = doc.get("policy", {}).get("interval", "clopper_pearson")
    n = len(records)
    hidden, reviewed = overall == 2, overall == 1
    budget = doc["review"].get("budget")
    review_rate = rate(reviewed.sum(), n, method=method)
    out: dict[str, Any] = {
        "listings": n,
        "hidden": int(hidden.sum()),
        "reviewed": int(reviewed.sum()),
        "passed": int((overall == 0).sum()),
        "hide_rate": rate(hidden.sum(), n, method=method),
        "review_rate": review_rate,
        "review_budget": budget,
        "review_vs_budget": None
        if budget is None or review_rate["value"] is None
        else review_rate["value"] / budget,
        "labeled": 0,
        "classes": {},
    }
    y, labeled = label_matrix(records, taxonomy)
    prohibited, clean = labeled & y.any(axis=1), labeled & ~y.any(axis=1)
    out["labeled"] = int(labeled.sum())
    out.update(dict.fromkeys(LABELED_FIGURES))  # null, not absent, without labels
    if labeled.any():
        out.update(
            prohibited=int(prohibited.sum()),
            hide_precision=rate((hidden & prohibited).sum(), (hidden & labeled).sum(), method=method),
            false_hide_rate=rate((hidden & clean).sum(), clean.sum(), method=method),
            recall_at_review=rate(((overall > 0) & prohibited).sum(), prohibited.sum(), method=method),
            review_precision=rate((reviewed & prohibited).sum(), (reviewed & labeled).sum(), method=method),
        )  # fmt: skip
    for j, name in enumerate(taxonomy):
        by_c, pos = codes[:, j] == 2, labeled & y[:, j]
        cls = doc["classes"][name]
        entry = {"hide_threshold": cls.get("hide"), "certified": bool(cls.get("certified")),
                 "hidden": int(by_c.sum()), "flagged": int((codes[:, j] > 0).sum())}  # fmt: skip
        entry.update(positives=None, hide_precision=None, recall_at_review=None)
        if labeled.any():
            entry.update(
                positives=int(pos.sum()),
                hide_precision=rate((by_c & pos).sum(), (by_c & labeled).sum(), method=method),
                recall_at_review=rate(((overall > 0) & pos).sum(), pos.sum(), method=method),
            )
        out["classes"][name] = entry
    out["hidden_listings"] = hidden_listings(records, taxonomy, hidden)
    return out


def label_matrix(
    records: Sequence[PredictionRecord], taxonomy: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(y [N, C] bool, labeled [N] bool); labels outside the taxonomy are ignored here."""
    index = {c: j for j, c in enumerate(taxonomy)}
    y = np.zeros((len(records), len(taxonomy)), dtype=bool)
    for i, r in enumerate(records):
        for label in r.labels or ():
            if label in index:
                y[i, index[label]] = True
    return y, np.array([r.labels is not None for r in records], dtype=bool)


def hidden_listings(
    records: Sequence[PredictionRecord], taxonomy: Sequence[str], hidden: np.ndarray
) -> dict[str, Any]:
    """The hidden listings, highest priority first (the first MAX_HIDDEN_LISTED of them)."""
    rows = [records[i] for i in np.flatnonzero(hidden)]
    rows.sort(key=lambda r: (-(r.priority or 0.0), r.id))
    listed = [
        {"id": r.id, "classes": [c for c in taxonomy if r.decisions[c] == "hide"],
         "scores": {c: r.scores[c] for c in taxonomy if r.decisions[c] == "hide"},
         "labels": None if r.labels is None else list(r.labels)}
        for r in rows[:MAX_HIDDEN_LISTED]
    ]  # fmt: skip
    return {"count": len(rows), "listed": listed}


def flagged(records: Sequence[PredictionRecord], taxonomy: Sequence[str]) -> np.ndarray:
    """[N, C] bool: the class sends the listing to review or hides it."""
    return tier_codes(records, taxonomy)[1] > 0
