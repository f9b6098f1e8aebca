"""Precision and recall on live traffic from the reviewed audit sample, beside review-tier
precision (which says how good the queue is, not what the model misses).

Each reviewed listing stands for 1/p traffic listings of its tier, p = the tier's audit rate times
the share of that tier's selected tasks that came back reviewed (reviewers who stop early are
treated as a random subset of what they were sent: say so when you report it). The review tier is
taken whole (rate 1). Uncertainty picks are not a probability sample and never enter an estimate.
Intervals: Clopper-Pearson on Kish's effective sample size (mmdetect/policy/weighted.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmdetect.policy.weighted import weighted_rate


def response_rates(tasks: Sequence[Mapping[str, Any]], reviewed: set[str]) -> dict[str, float]:
    """Per tier: the share of the probability-sampled tasks that came back reviewed."""
    sent, back = Counter(), Counter()
    for t in tasks:
        if t.get("inclusion_prob") is None:
            continue
        sent[t["tier"]] += 1
        back[t["tier"]] += t["listing_id"] in reviewed
    return {tier: back[tier] / n for tier, n in sent.items() if n}


def estimate(
    reviews: Sequence[Mapping[str, Any]], tasks: Sequence[Mapping[str, Any]],
    taxonomy: Sequence[str], confidence: float = 0.95,
) -> dict[str, Any]:  # fmt: skip
    """{overall, per_class: {class: {hide_precision, recall, review_precision}}, design}.

    `tasks` are our tasks file's `data` entries; `reviews` the imported rows (labels per id)."""
    by_id = {t["listing_id"]: t for t in tasks}
    rows = [r for r in reviews if r["id"] in by_id and by_id[r["id"]].get("inclusion_prob")]
    response = response_rates(tasks, {r["id"] for r in rows})
    tiers = [by_id[r["id"]]["tier"] for r in rows]
    w = np.array([1.0 / (by_id[r["id"]]["inclusion_prob"] * response[t])
                  for r, t in zip(rows, tiers, strict=True)])  # fmt: skip
    y = np.array([[c in r["labels"] for c in taxonomy] for r in rows], dtype=bool).reshape(
        -1, len(taxonomy)
    )
    per = [by_id[r["id"]].get("decisions") or {} for r in rows]
    hide = np.array([[d.get(c) == "hide" for c in taxonomy] for d in per], dtype=bool).reshape(
        y.shape
    )
    flag = np.array(
        [[d.get(c) in ("hide", "review") for c in taxonomy] for d in per], dtype=bool
    ).reshape(y.shape)
    review_tier = np.array([t == "review" for t in tiers], dtype=bool)
    out: dict[str, Any] = {"per_class": {}, "listings_reviewed": len(rows),
                           "response_rate": response, "confidence": confidence}  # fmt: skip
    for j, c in enumerate(taxonomy):
        out["per_class"][c] = {
            "hide_precision": weighted_rate(y[:, j], hide[:, j], w, confidence),
            "recall": weighted_rate(flag[:, j], y[:, j], w, confidence),
            "review_precision": weighted_rate(y[:, j], flag[:, j] & review_tier,
                                              np.ones(len(rows)), confidence),
        }  # fmt: skip
    any_y, any_hide, any_flag = y.any(1), hide.any(1), flag.any(1)
    out["overall"] = {
        "hide_precision": weighted_rate(any_y, any_hide, w, confidence),
        "recall": weighted_rate(any_flag, any_y, w, confidence),
        "review_precision": weighted_rate(any_y, review_tier, np.ones(len(rows)), confidence),
        "prevalence": weighted_rate(any_y, np.ones(len(rows), dtype=bool), w, confidence),
    }
    return out
