"""Per-class probability calibration: fitted on a calibration split, applied by every consumer.

The model outputs p = sigmoid(z). Calibration maps p to p' per class:

* platt (default): p' = sigmoid(a logit(p) + b), a > 0 and b per class, fitted by minimising the
  binary cross-entropy. Temperature scaling with an intercept: our models train with pos_weight,
  which shifts every logit by about log(pos_weight), and a temperature alone cannot undo a shift
  (docs/operating-points.md has the measured ECE of each method). Monotone: rankings and AP are
  unchanged. Two numbers per class are all a C++ or TorchScript consumer needs.
* temperature: p' = sigmoid(logit(p) / T), the special case b = 0.
* isotonic: a non-decreasing step function fitted by pool-adjacent-violators (scipy), stored as
  breakpoints and applied by linear interpolation (np.interp), clipped at both ends.
* none: identity.

A class without both positives and negatives keeps the identity (nothing to fit), with a note.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression, minimize, minimize_scalar
from scipy.special import expit

from mmdetect.policy.config import CALIBRATIONS, PolicyError

P_CLIP = 1e-7  # logit(0) and logit(1) are infinite; scores are clipped this far from them
LOG_T_BOUNDS = (-4.0, 4.0)  # T in [0.018, 55]: wider than any sane model needs
AT_BOUND = "the fit reached the search bound: the model separates this class (nearly) perfectly"


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


def fit_platt(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(a, b), a > 0, minimising the cross-entropy of sigmoid(a logit(p) + b) against y."""
    z = logit(p)
    res = minimize(
        lambda v: _bce(y, np.exp(v[0]) * z + v[1]),
        x0=np.zeros(2),
        method="L-BFGS-B",
        bounds=[(-LOG_T_BOUNDS[1], -LOG_T_BOUNDS[0]), (-20.0, 20.0)],
    )
    return float(np.exp(res.x[0])), float(res.x[1])


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
            t = fit_temperature(y, p)
            classes[name] = {"temperature": t, "note": _bound_note(np.log(t), LOG_T_BOUNDS)}
        elif method == "platt":
            a, b = fit_platt(y, p)
            note = _bound_note(-np.log(a), LOG_T_BOUNDS) or _bound_note(b, (-20.0, 20.0))
            classes[name] = {"slope": a, "intercept": b, "note": note}
        else:
            classes[name] = {"isotonic": fit_isotonic(y, p), "note": None}
    return {"method": method, "classes": classes}


def _bound_note(value: float, bounds: tuple[float, float]) -> str | None:
    return AT_BOUND if min(abs(value - bounds[0]), abs(value - bounds[1])) < 1e-3 else None


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
        elif "slope" in cls:
            out[:, j] = expit(cls["slope"] * logit(probs[:, j]) + cls["intercept"])
        elif cls["temperature"] == 1.0:
            out[:, j] = probs[:, j]  # exactly the model's score: no clip round trip
        else:
            out[:, j] = expit(logit(probs[:, j]) / cls["temperature"])
    return out


def check_calibration(calibration: Any, taxonomy: Sequence[str], where: str) -> None:
    """Raise PolicyError unless the method is known and every class has valid parameters."""
    if not isinstance(calibration, Mapping) or not isinstance(calibration.get("classes"), Mapping):
        raise PolicyError(f"{where}: calibration: expected an object with 'classes'")
    if calibration.get("method") not in CALIBRATIONS:
        raise PolicyError(
            f"{where}: calibration.method must be one of {list(CALIBRATIONS)}, "
            f"got {calibration.get('method')!r}"
        )
    for name in taxonomy:
        cls = calibration["classes"].get(name)
        at = f"{where}: calibration.classes.{name}"
        if not isinstance(cls, Mapping):
            raise PolicyError(f"{at}: missing")
        if "isotonic" in cls:
            iso = cls["isotonic"] if isinstance(cls["isotonic"], Mapping) else {}
            try:
                x, y = np.asarray(iso.get("x", []), float), np.asarray(iso.get("y", []), float)
            except (TypeError, ValueError):
                raise PolicyError(f"{at}.isotonic: breakpoints must be numbers") from None
            ok = x.ndim == y.ndim == 1 and len(x) == len(y) > 0
            ok = ok and bool(np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0))
            if not (ok and np.all((y >= 0) & (y <= 1))):
                raise PolicyError(f"{at}.isotonic: bad breakpoints")
        elif "slope" in cls:
            a, b = cls.get("slope"), cls.get("intercept")
            if not (_finite(a) and a > 0 and _finite(b)):
                raise PolicyError(f"{at}: slope must be > 0 and intercept finite, got {a!r}, {b!r}")
        else:
            t = cls.get("temperature")
            if not (_finite(t) and t > 0):
                raise PolicyError(f"{at}.temperature must be > 0, got {t!r}")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and bool(np.isfinite(x))
