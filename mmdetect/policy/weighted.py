"""Proportions estimated from a weighted (unequal-probability) sample, with their bounds.

A listing drawn with inclusion probability pi stands for 1/pi listings of traffic (its
Horvitz-Thompson weight w). A traffic proportion is estimated by the weighted ratio
p = sum(w * hit) / sum(w), and its binomial bound by Clopper-Pearson on the Kish effective sample
size n_eff = (sum w)^2 / sum(w^2) with k_eff = p * n_eff "successes" (Korn & Graubard, 1998, the
method NCHS uses for survey proportions). With equal weights n_eff = n and k_eff = k, so every
bound equals the unweighted one exactly; unequal weights shrink n_eff and widen the interval.
docs/operating-points.md, "Traffic prevalence and sampling designs", states the caveats.
"""

from __future__ import annotations

import numpy as np

from mmdetect.policy.stats import interval


def effective_n(w: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 (0 for no weight)."""
    w = np.asarray(w, dtype=np.float64)
    sq = float((w * w).sum())
    return 0.0 if sq <= 0 else float(w.sum()) ** 2 / sq


def weighted_rate(
    hit: np.ndarray,
    among: np.ndarray,
    w: np.ndarray,
    confidence: float = 0.95,
    method: str = "clopper_pearson",
) -> dict:
    """The weighted share of `among` listings that are `hit`, with its two-sided interval.

    `{value, ci, n_eff, count, of, weight}`: `count`/`of` are the raw listings behind it, `weight`
    the traffic listings `of` stands for (sum of weights); value and ci are None when `of` is 0.
    """
    among = np.asarray(among, dtype=bool)
    hit = np.asarray(hit, dtype=bool) & among
    w = np.asarray(w, dtype=np.float64)
    equal = among.any() and np.ptp(w[among]) == 0  # a random sample: exactly the raw figures
    total = float(w[among].sum())
    n_eff = float(among.sum()) if equal else effective_n(w[among])
    out = {"count": int(hit.sum()), "of": int(among.sum()), "weight": total, "n_eff": n_eff,
           "value": None, "ci": None}  # fmt: skip
    if total <= 0:
        return out
    p = float(w[hit].sum()) / total
    k = float(hit.sum()) if equal else p * n_eff  # k_eff; equal weights: the raw count
    lo, hi = interval(k, n_eff, confidence, method)
    out.update(value=p, ci=[lo, hi])
    return out
