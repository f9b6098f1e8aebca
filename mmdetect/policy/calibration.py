"""Per-class probability calibration: fitted on a calibration split, applied by every consumer.

The model outputs p = sigmoid(z). Calibration maps p to p' per class:

* temperature (default): p' = sigmoid(logit(p) / T), one T > 0 per class fitted by minimising the
  binary cross-entropy. Monotone, so rankings and AP are unchanged; only the meaning of a score
  changes. One number per class is all a C++ or TorchScript consumer needs (docs/bundle-format.md).
* isotonic: a non-decreasing step function fitted by pool-adjacent-violators (scipy), stored as
  breakpoints and applied by linear interpolation (np.interp), clipped at both ends.
* none: identity.

A class without both positives and negatives keeps the identity (nothing to fit), with a note.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression, minimize_scalar
from scipy.special import expit

from mmdetect.policy.config import CALIBRATIONS, PolicyError

P_CLIP = 1e-7  # logit(0) and logit(1) are infinite; scores are clipped this far from them
LOG_T_BOUNDS = (-4.0, 4.0)  # T in [0.018, 55]: wider than any sane model needs


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), P_CLIP, 1.0 - P_CLIP)
    return np.log(p) - np.log1p(-p)


def _bce(y: np.ndarray, z: np.ndarray) -> float:
    # log(1 + e^z) - y z, computed stably
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(y: np.ndarray, p: np.ndarray) -> float:
    """The T > 0 minimising the cross-entropy of sigmoid(logit(p) / T) against y."""
    z = logit(p)
    res = minimize_scalar(
        lambda log_t: _bce(y, z / np.exp(log_t)), bounds=LOG_T_BOUNDS, method="bounded"
    )
    return float(np.exp(res.x))


def fit_isotonic(y: np.ndarray, p: np.ndarray) -> dict[str, list[float]]:
    """Breakpoints (x ascending, y non-decreasing) of the isotonic fit of y on p."""
    order = np.argsort(p, kind="stable")
    xs, ys = np.asarray(p, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order]
    fitted = isotonic_regression(ys).x
    # one breakpoint per distinct score (the mean fit over ties), so interpolation is a function
    ux, inverse = np.unique(xs, return_inverse=True)
    uy = np.maximum.accumulate(np.bincount(inverse, weights=fitted) / np.bincount(inverse))
    # keep the two ends of each flat block: interpolation between them is the same function
    keep = np.ones(len(uy), dtype=bool)
    keep[1:-1] = (uy[1:-1] != uy[:-2]) | (uy[1:-1] != uy[2:])
    return {"x": ux[keep].tolist(), "y": uy[keep].tolist()}


def fit_calibration(
    y_true: np.ndarray, probs: np.ndarray, taxonomy: Sequence[str], method: str
) -> dict[str, Any]:
    """The `calibration` block of thresholds.json, fitted per class on labeled scores."""
    if method not in CALIBRATIONS:
        raise PolicyError(f"calibration must be one of {list(CALIBRATIONS)}, got {method!r}")
    classes: dict[str, Any] = {}
    for j, name in enumerate(taxonomy):
        y, p = y_true[:, j].astype(np.float64), probs[:, j].astype(np.float64)
        n_pos = int(y.sum())
        if method == "none" or n_pos in (0, len(y)):
            note = None if method == "none" else "needs positives and negatives: identity"
            classes[name] = {"temperature": 1.0, "note": note}
        elif method == "temperature":
            classes[name] = {"temperature": fit_temperature(y, p), "note": None}
        else:
            classes[name] = {"isotonic": fit_isotonic(y, p), "note": None}
    return {"method": method, "classes": classes}


def apply_calibration(
    calibration: Mapping[str, Any], probs: np.ndarray, taxonomy: Sequence[str]
) -> np.ndarray:
    """Calibrated probabilities [N, C] float64 (identity for a class fitted as such)."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(taxonomy))
    out = np.empty_like(probs)
    for j, name in enumerate(taxonomy):
        cls = calibration["classes"][name]
        if "isotonic" in cls:
            iso = cls["isotonic"]
            out[:, j] = np.interp(probs[:, j], iso["x"], iso["y"])
        elif cls["temperature"] == 1.0:
            out[:, j] = probs[:, j]  # exactly the model's score: no clip round trip
        else:
            out[:, j] = expit(logit(probs[:, j]) / cls["temperature"])
    return out


def check_calibration(calibration: Any, taxonomy: Sequence[str], where: str) -> None:
    """Raise PolicyError unless every class has a positive temperature or valid breakpoints."""
    if not isinstance(calibration, Mapping) or not isinstance(calibration.get("classes"), Mapping):
        raise PolicyError(f"{where}: calibration: expected an object with 'classes'")
    for name in taxonomy:
        cls = calibration["classes"].get(name)
        if not isinstance(cls, Mapping):
            raise PolicyError(f"{where}: calibration.classes.{name}: missing")
        if "isotonic" in cls:
            iso = cls["isotonic"]
            x, y = np.asarray(iso.get("x", []), float), np.asarray(iso.get("y", []), float)
            ok = len(x) == len(y) > 0 and np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0)
            if not (ok and np.all((y >= 0) & (y <= 1))):
                raise PolicyError(f"{where}: calibration.classes.{name}.isotonic: bad breakpoints")
        else:
            t = cls.get("temperature")
            if not (isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < np.inf):
                raise PolicyError(
                    f"{where}: calibration.classes.{name}.temperature must be > 0, got {t!r}"
                )
