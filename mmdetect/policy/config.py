"""`PolicyConfig`: what hide and review mean, as data (configs/policy/*.yaml).

Parsed by jsonargparse from the dataclass below, like every other config of mmdetect, so unknown
keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmdetect.data.taxonomy import DEFAULT_SEVERITY
from mmdetect.policy.stats import METHODS

CALIBRATIONS = ("platt", "temperature", "isotonic", "none")


class PolicyError(ValueError):
    """A policy or an operating point that cannot be used, worded for the person who ran it."""


@dataclass(frozen=True)
class PolicyConfig:
    """Review capacity, auto-hide certification and severities (defaults = default.yaml)."""

    review_budget: float = 0.05  # share of traffic humans can review
    review_per_day: int | None = None  # reviewer capacity in listings per day (optional)
    traffic_per_day: int | None = None  # listings per day; else estimated from the fit snapshot
    hide_precision: float = 0.95  # target precision of auto-hide, per class
    hide_confidence: float = 0.95  # one-sided confidence of that claim
    interval: str = "clopper_pearson"  # or "wilson"
    min_positives: int = 30  # fewer labeled positives: the class never auto-hides
    severity: dict[str, float] = field(default_factory=dict)  # overrides DEFAULT_SEVERITY
    calibration: str = "platt"  # or "temperature", "isotonic", "none"
    review_tolerance: float = 1.5  # promotion: realised review rate <= budget x this

    def __post_init__(self) -> None:
        for name in ("review_budget", "hide_precision", "hide_confidence"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
                raise PolicyError(f"policy: {name} must be in (0, 1), got {value!r}")
        for name in ("review_per_day", "traffic_per_day"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise PolicyError(f"policy: {name} must be a positive count or null, got {value}")
        if self.interval not in METHODS:
            raise PolicyError(f"policy: interval must be one of {list(METHODS)}")
        if self.calibration not in CALIBRATIONS:
            raise PolicyError(f"policy: calibration must be one of {list(CALIBRATIONS)}")
        if self.min_positives < 1:
            raise PolicyError("policy: min_positives must be >= 1")
        if not self.review_tolerance >= 1.0:
            raise PolicyError("policy: review_tolerance must be >= 1")
        for name, w in self.severity.items():
            if not (math.isfinite(w) and w > 0):
                raise PolicyError(f"policy: severity.{name} must be a positive number, got {w}")

    def severities(self, taxonomy: Sequence[str]) -> dict[str, float]:
        """Weight per class: the policy's override, else the taxonomy default, else 1."""
        unknown = sorted(set(self.severity) - set(taxonomy))
        if unknown:
            raise PolicyError(f"policy: severity names classes outside the taxonomy: {unknown}")
        return {c: float(self.severity.get(c, DEFAULT_SEVERITY.get(c, 1.0))) for c in taxonomy}

    def budget(self, listings_per_day: float | None) -> float:
        """The review share to fit: review_budget, capped by review_per_day / traffic per day."""
        per_day = self.traffic_per_day or listings_per_day
        if self.review_per_day is None or not per_day:
            return self.review_budget
        return min(self.review_budget, self.review_per_day / per_day)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def policy_from_dict(doc: Mapping[str, Any], where: str = "policy") -> PolicyConfig:
    """A PolicyConfig from a mapping (e.g. the copy stored in thresholds.json)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(PolicyConfig, "policy")
    try:
        cfg = parser.parse_object({"policy": dict(doc)})
        return parser.instantiate(cfg).policy
    except PolicyError:
        raise
    except Exception as exc:  # jsonargparse's ArgumentError / TypeError name the key
        raise PolicyError(f"{where}: {exc}".splitlines()[0]) from None


def load_policy(path: str | Path | None = None) -> PolicyConfig:
    """Read configs/policy/*.yaml; None gives the defaults."""
    if path is None:
        return PolicyConfig()
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read the policy: {exc}") from None
    if not isinstance(doc, Mapping):
        raise PolicyError(f"{path}: expected a mapping of settings, got {type(doc).__name__}")
    return policy_from_dict(doc, str(path))
