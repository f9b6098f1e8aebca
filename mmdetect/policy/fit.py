"""Fitting an operating point (thresholds.json) under a policy: calibration, certified per-class
auto-hide thresholds, and one listing-level review threshold sized to the review budget.

Arrays in, a JSON-ready document out; `mmdetect thresholds fit` scores the snapshot and calls
`fit_operating_point`. The statistics are explained in docs/operating-points.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmdetect.policy.calibration import apply_calibration, fit_calibration
from mmdetect.policy.config import PolicyConfig, PolicyError
from mmdetect.policy.decide import FORMAT_VERSION, priority_of
from mmdetect.policy.stats import lower_bound, min_hits_to_certify

# Larger than the numeric differences between the exported runtimes (fp32: about 1e-7), far
# below any difference in risk.
RUNTIME_TOLERANCE = 1e-6


def certify_hide(
    y: np.ndarray, s: np.ndarray, policy: PolicyConfig, weights: np.ndarray | None = None
) -> dict[str, Any]:
    """The lowest threshold whose precision is certified, by fixed-sequence testing.

    Thresholds are the distinct calibrated scores, highest first. Testing starts at the first
    one that flags at least `min_hits_to_certify` listings (fewer could never pass) and goes down
    while the one-sided lower bound of precision stays >= the target; the first failure stops it,
    so a lucky stretch further down cannot be picked. With `weights` (inclusion weights), the
    precision is the weighted one (traffic prevalence) and the counts are effective sample sizes
    (mmdetect/policy/weighted.py). Returns the `classes.<name>` entry.
    """
    target, conf = policy.hide_precision, policy.hide_confidence
    n_pos, need = int(y.sum()), min_hits_to_certify(target, conf)
    entry: dict[str, Any] = {"hide": None, "certified": False, "positives": n_pos, "evidence": None}
    claim = f"precision >= {target:g} at {conf:.0%} confidence"
    if weights is not None:
        claim += " on traffic (re-weighted)"
    if n_pos < max(policy.min_positives, need):
        why = f"{n_pos} labeled positives < min_positives {policy.min_positives}"
        if n_pos >= policy.min_positives:
            why = f"{n_pos} labeled positives; certifying {claim} needs >= {need} correct hides"
        entry["note"] = f"never auto-hides: {why}"
        return entry
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tp, flagged = np.cumsum(y_sorted)[ends], ends + 1
    k_eff, n_eff = tp.astype(np.float64), flagged.astype(np.float64)  # unweighted: the counts
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)[order]
        w_hit, w_all = np.cumsum(w * y_sorted)[ends], np.cumsum(w)[ends]
        n_eff = w_all**2 / np.cumsum(w * w)[ends]
        k_eff = w_hit / w_all * n_eff
    testable = np.flatnonzero(n_eff >= need * (1 - 1e-12))
    best = None
    for k in testable:
        lb = lower_bound(float(k_eff[k]), float(n_eff[k]), conf, policy.interval)
        if lb < target:
            if best is None:
                entry["note"] = (
                    f"never auto-hides: at the first testable threshold {s_sorted[ends[k]]:.4g} "
                    f"{_ratio(k_eff[k], n_eff[k])} correct, lower bound {lb:.3f} < {target:g}"
                )
            break
        best = (k, lb)
    if best is None:
        entry.setdefault("note", f"never auto-hides: no threshold certifies {claim}")
        return entry
    k, lb = best
    entry.update(
        hide=_between(s_sorted, ends[k]),
        certified=True,
        evidence={
            "hidden": int(flagged[k]),
            "correct": int(tp[k]),
            "precision": float(k_eff[k] / n_eff[k]),
            "lower_bound": float(lb),
            "first_tested": float(s_sorted[ends[testable[0]]]),
        },
        note=f"certified: {claim} ({_ratio(k_eff[k], n_eff[k])}, bound {lb:.3f})",
    )
    if weights is not None:
        entry["evidence"].update(weighted=True, n_eff=float(n_eff[k]))
    return entry


def _between(desc: np.ndarray, end: int) -> float:
    """A threshold that keeps exactly desc[: end + 1] (scores sorted descending) at or above it,
    placed RUNTIME_TOLERANCE below desc[end] (or halfway to the next lower score when that is
    closer). A threshold equal to an observed score lets a 1e-7 difference between runtimes
    (ONNX Runtime vs torch) flip that listing's decision; a lower one would widen the claim."""
    cut = float(desc[end]) - RUNTIME_TOLERANCE
    if end + 1 < len(desc):
        cut = max(cut, float((desc[end] + desc[end + 1]) / 2))
    return cut


def _ratio(k: float, n: float) -> str:
    """k/n as counts, or as effective counts when weighted (fractional)."""
    if float(k).is_integer() and float(n).is_integer():
        return f"{int(k)}/{int(n)}"
    return f"{k:.1f}/{n:.1f} effective"


def review_threshold(
    priority: np.ndarray, hidden: np.ndarray, budget: float, weights: np.ndarray | None = None
) -> tuple[float, float]:
    """(threshold, fitted review share): the lowest priority whose review volume (listings not
    hidden with priority >= threshold, weighted) stays within `budget` of the total weight."""
    w = np.ones(len(priority)) if weights is None else np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if total <= 0:
        raise PolicyError("cannot fit the review budget on an empty snapshot")
    cand = ~hidden
    p, wc = priority[cand], w[cand]
    order = np.argsort(-p, kind="stable")
    p, wc = p[order], wc[order]
    if len(p) == 0:
        return 1.0e9, 0.0
    ends = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]  # a tie is reviewed whole or not at all
    volume = np.cumsum(wc)[ends]
    ok = np.flatnonzero(volume <= budget * total * (1 + 1e-12))
    if ok.size == 0:  # even the top tie exceeds the budget: review nothing
        return float(np.nextafter(p[0], np.inf)), 0.0
    k = ok[-1]
    return _between(p, ends[k]), float(volume[k] / total)


def fit_operating_point(
    y_true: np.ndarray,
    probs: np.ndarray,
    taxonomy: Sequence[str],
    policy: PolicyConfig,
    traffic_probs: np.ndarray | None = None,
    traffic_weights: np.ndarray | None = None,
    listings_per_day: float | None = None,
    source: Mapping[str, Any] | None = None,
    hide_rows: np.ndarray | None = None,
    hide_weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """The thresholds.json document.

    `y_true`/`probs` [N, C]: labeled calibration listings (calibration and hide certification).
    `traffic_probs` (default: `probs`): the listings whose volume the review budget is fitted on,
    optionally weighted (inverse sampling probabilities) to stand for traffic.
    `hide_rows` (bool [N], default all) and `hide_weights` (aligned with those rows, default
    none): the listings hide precision is certified on, re-weighted to traffic prevalence.
    """
    taxonomy = list(taxonomy)
    if len(y_true) == 0:
        raise PolicyError("no labeled listings to fit calibration and hide thresholds on")
    severity = policy.severities(taxonomy)
    calibration = fit_calibration(y_true, probs, taxonomy, policy.calibration)
    cal = apply_calibration(calibration, probs, taxonomy)
    rows = np.ones(len(y_true), bool) if hide_rows is None else np.asarray(hide_rows, bool)
    classes = {}
    for j, name in enumerate(taxonomy):
        y_j = y_true[rows, j].astype(np.int64)
        classes[name] = certify_hide(y_j, cal[rows, j], policy, hide_weights)
    hide_t = np.array(
        [np.inf if classes[c]["hide"] is None else classes[c]["hide"] for c in taxonomy]
    )
    traffic = (
        cal if traffic_probs is None else apply_calibration(calibration, traffic_probs, taxonomy)
    )
    sev = np.array([severity[c] for c in taxonomy])
    budget = policy.budget(listings_per_day)
    prio = priority_of(traffic, sev)
    # A hide threshold must not sit below review / severity (it would hide listings it would not
    # review). Raising it stays certified while it is within the tested run; hidden listings
    # leave the review volume, so the review threshold is refitted until both are stable.
    for _ in range(len(taxonomy) + 1):
        hidden = (traffic >= hide_t).any(axis=1)
        threshold, fitted_rate = review_threshold(prio, hidden, budget, traffic_weights)
        changed = False
        for j, name in enumerate(taxonomy):
            c = classes[name]
            if c["hide"] is None or c["hide"] * severity[name] >= threshold:
                continue
            raised = threshold / severity[name]
            c["note"] += f"; raised to review threshold / severity {raised:.4g}"
            if raised > c["evidence"]["first_tested"]:
                c.update(hide=None, certified=False)
                c["note"] += ", above the tested range: never auto-hides"
            else:
                c["hide"] = float(raised)
            hide_t[j] = np.inf if c["hide"] is None else c["hide"]
            changed = True
        if not changed:
            break
    doc = {
        "format_version": FORMAT_VERSION,
        "fitted": True,
        "taxonomy": taxonomy,
        "policy": policy.to_dict(),
        "severity": severity,
        "calibration": calibration,
        "priority": "max over classes of severity x calibrated probability",
        "review": {
            "threshold": threshold,
            "budget": budget,
            "fitted_rate": fitted_rate,
            "fitted_hide_rate": float(np.average(hidden, weights=traffic_weights)),
            "fitted_on": "traffic" if traffic_probs is not None else "calibration snapshot",
            "listings": int(len(traffic)),
            "note": None
            if fitted_rate > 0
            else "the highest priority tie alone exceeds the budget: this operating point "
            "reviews nothing; fit on more listings or raise the budget",
        },
        "classes": classes,
        "source": dict(source or {}),
    }
    return doc
