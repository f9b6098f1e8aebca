"""Applying an operating point (thresholds.json): raw model probabilities in, decisions out.

Every consumer (Predictor and `predict`, `evaluate`, export's parity check, promotion, and the
HTTP service later) calls `decide` on the document it was given, so they cannot disagree:

1. calibrate each class (policy.calibration);
2. hide when any class's calibrated probability reaches its certified hide threshold;
3. otherwise review when the listing's priority, max over classes of severity x calibrated
   probability, reaches the one review threshold fitted to the review budget;
4. otherwise pass.

Per class, "hide" marks the classes that hide the listing and "review" the classes whose weighted
probability reaches the review threshold, so the overall decision is the highest class tier.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmdetect.policy.calibration import apply_calibration, check_calibration
from mmdetect.policy.config import PolicyError, policy_from_dict

FORMAT_VERSION = 2
TIERS = ("pass", "review", "hide")  # codes 0, 1, 2: the overall decision is the max code
UNFITTED = (
    "not fitted: no calibration, review when severity x probability >= 0.5, never auto-hide; "
    "fit with `mmdetect thresholds fit` and re-export with --thresholds"
)


@dataclass(frozen=True)
class Decisions:
    """Arrays for N listings: calibrated [N, C], priority [N], codes [N, C] and overall [N]."""

    calibrated: np.ndarray
    priority: np.ndarray
    codes: np.ndarray
    overall: np.ndarray

    def tier_names(self, i: int, taxonomy: Sequence[str]) -> tuple[dict[str, str], str]:
        """(`decisions` per class, `decision`) of listing i, as predict writes them."""
        per_class = {c: TIERS[int(t)] for c, t in zip(taxonomy, self.codes[i], strict=True)}
        return per_class, TIERS[int(self.overall[i])]


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else float(value)


def severity_vector(doc: Mapping[str, Any], taxonomy: Sequence[str]) -> np.ndarray:
    return np.array([float(doc["severity"][c]) for c in taxonomy])


def priority_of(calibrated: np.ndarray, severity: np.ndarray) -> np.ndarray:
    """One review priority per listing: max over classes of severity x calibrated probability."""
    if calibrated.shape[1] == 0:
        return np.zeros(calibrated.shape[0])
    return (calibrated * severity).max(axis=1)


def decide(doc: Mapping[str, Any], probs: np.ndarray, taxonomy: Sequence[str]) -> Decisions:
    """Decisions for raw model probabilities [N, C] (columns in `taxonomy` order)."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(taxonomy))
    cal = apply_calibration(doc["calibration"], probs, taxonomy)
    sev = severity_vector(doc, taxonomy)
    hide_t = np.array([_or_inf(doc["classes"][c]["hide"]) for c in taxonomy])
    review_t = float(doc["review"]["threshold"])
    prio = priority_of(cal, sev)
    hide = cal >= hide_t
    codes = np.where((cal * sev >= review_t) & (prio >= review_t)[:, None], 1, 0).astype(np.int8)
    codes[hide] = 2
    overall = np.where(hide.any(axis=1), 2, np.where(prio >= review_t, 1, 0)).astype(np.int8)
    return Decisions(cal, prio, codes, overall)


def unfitted_operating_point(taxonomy: Sequence[str]) -> dict[str, Any]:
    """What a bundle exported without thresholds serves: identity calibration, review at 0.5 of
    severity x probability, no auto-hide. Promotion refuses it (`fitted: false`)."""
    from mmdetect.policy.config import PolicyConfig

    policy = PolicyConfig(calibration="none")
    return {
        "format_version": FORMAT_VERSION,
        "fitted": False,
        "note": UNFITTED,
        "taxonomy": list(taxonomy),
        "policy": policy.to_dict(),
        "severity": policy.severities(taxonomy),
        "calibration": {
            "method": "none",
            "classes": {c: {"temperature": 1.0, "note": None} for c in taxonomy},
        },
        "review": {"threshold": 0.5, "budget": None, "note": UNFITTED},
        "classes": {c: {"hide": None, "certified": False, "note": UNFITTED} for c in taxonomy},
        "source": {},
    }


def check_operating_point(
    doc: Any, taxonomy: Sequence[str], where: str = "thresholds.json"
) -> None:
    """Raise PolicyError for a document that must not be served: another format or taxonomy,
    no review threshold, a hide threshold below the review one or not certified, bad values."""
    if not isinstance(doc, Mapping):
        raise PolicyError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise PolicyError(
            f"{where}: thresholds format {version!r} (per-class review thresholds without "
            f"calibration, before mmdetect 0.2?); this mmdetect reads format {FORMAT_VERSION}: "
            "refit with `mmdetect thresholds fit` and re-export"
        )
    if list(doc.get("taxonomy") or []) != list(taxonomy):
        raise PolicyError(
            f"{where}: fitted for taxonomy {doc.get('taxonomy')}, the model scores "
            f"{list(taxonomy)} (names and order must match)"
        )
    for key in ("policy", "severity", "review", "classes", "calibration"):
        if not isinstance(doc.get(key), Mapping):
            raise PolicyError(f"{where}: {key}: missing or not an object")
    policy_from_dict(doc["policy"], f"{where}: policy")
    check_calibration(doc["calibration"], taxonomy, where)
    review = doc["review"].get("threshold")
    if not _is_number(review) or review < 0:
        raise PolicyError(
            f"{where}: review.threshold must be a number >= 0, got {review!r} "
            "(null everywhere would never flag anything)"
        )
    for name in taxonomy:
        w, cls = doc["severity"].get(name), doc["classes"].get(name)
        if not _is_number(w) or w <= 0:
            raise PolicyError(f"{where}: severity.{name} must be a positive number, got {w!r}")
        if not isinstance(cls, Mapping):
            raise PolicyError(f"{where}: classes.{name}: missing")
        hide = cls.get("hide")
        if hide is None:
            continue
        if not _is_number(hide) or not 0.0 <= hide <= 1.0:
            raise PolicyError(f"{where}: classes.{name}.hide must be a probability or null")
        if cls.get("certified") is not True:
            raise PolicyError(f"{where}: classes.{name} hides at {hide:g} but is not certified")
        if w * hide < review:
            raise PolicyError(
                f"{where}: classes.{name}: hide {hide:g} is below the review threshold "
                f"({w:g} x {hide:g} < {review:g}): it would hide listings it would not review"
            )


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
