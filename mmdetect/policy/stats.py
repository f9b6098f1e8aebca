"""Binomial confidence bounds for the rates an operating point promises.

Clopper-Pearson (exact, from the beta distribution) is the default because it never
under-covers, which is what "certified" has to mean; Wilson is offered for comparison, since it
is narrower and is what many dashboards show. scipy provides the beta quantile; nothing else here
needs more than numpy.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from scipy.stats import beta

METHODS = ("clopper_pearson", "wilson")


def lower_bound(k: float, n: float, confidence: float, method: str = "clopper_pearson") -> float:
    """One-sided lower bound of a proportion k/n at `confidence` (0 when n or k is 0). k and n
    may be fractional: the effective counts of a weighted sample (policy/weighted.py)."""
    if n <= 0 or k <= 0:
        return 0.0
    k = min(k, n)
    if method == "clopper_pearson":
        return float(beta.ppf(1.0 - confidence, k, n - k + 1))
    return _wilson(k, n, NormalDist().inv_cdf(confidence))[0]


def upper_bound(k: float, n: float, confidence: float, method: str = "clopper_pearson") -> float:
    """One-sided upper bound of a proportion k/n at `confidence` (1 when n is 0 or k reaches n);
    fractional k, n allowed as in `lower_bound`."""
    if n <= 0 or k >= n:
        return 1.0
    k = max(k, 0.0)
    if method == "clopper_pearson":
        return float(beta.ppf(confidence, k + 1, n - k))
    return _wilson(k, n, NormalDist().inv_cdf(confidence))[1]


def interval(
    k: float, n: float, confidence: float = 0.95, method: str = "clopper_pearson"
) -> tuple[float, float] | None:
    """Two-sided interval of k/n at `confidence` (each tail (1 - confidence) / 2); None if n == 0."""
    if n <= 0:
        return None
    tail = 1.0 - (1.0 - confidence) / 2.0
    return lower_bound(k, n, tail, method), upper_bound(k, n, tail, method)


def _wilson(k: float, n: float, z: float) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def min_hits_to_certify(target: float, confidence: float) -> int:
    """The fewest flagged listings, all correct, whose Clopper-Pearson lower bound reaches `target`.

    With k = n the bound is (1 - confidence) ** (1 / n), so n >= ln(1 - confidence) / ln(target):
    59 for 0.95 at 95 %. A class with fewer positives than this can never auto-hide.
    """
    return math.ceil(math.log(1.0 - confidence) / math.log(target) - 1e-12)
