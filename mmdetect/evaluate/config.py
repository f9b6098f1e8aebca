"""`EvalConfig`: the settings of `mmdetect evaluate`, loaded from configs/evaluate/*.yaml."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

SLICE_KINDS = ("month", "category", "has_photo")


class EvaluationError(ValueError):
    """A problem with the inputs of an evaluation, worded for the person who ran it."""


@dataclass(frozen=True)
class EvalConfig:
    """Metric settings, slicing and the promotion margin of an evaluation (defaults =
    default.yaml). What hide and review mean is the policy's (configs/policy/)."""

    precision_at_recall: tuple[float, ...] = (0.8, 0.9)
    recall_at_precision: tuple[float, ...] = (0.9, 0.95)
    ece_bins: int = 10
    bootstrap: int = 1000
    seed: int = 0
    slices: tuple[str, ...] = SLICE_KINDS
    min_slice_support: int = 20
    class_margin: float = 0.05

    def __post_init__(self) -> None:
        for name in ("precision_at_recall", "recall_at_precision", "slices"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name, value in _probabilities(self):
            if not 0.0 < value <= 1.0:
                raise EvaluationError(f"config: {name} must be in (0, 1], got {value!r}")
        if self.ece_bins < 1:
            raise EvaluationError(f"config: ece_bins must be >= 1, got {self.ece_bins}")
        if self.bootstrap < 0:
            raise EvaluationError(f"config: bootstrap must be >= 0, got {self.bootstrap}")
        if self.min_slice_support < 1:
            raise EvaluationError("config: min_slice_support must be >= 1")
        if not 0.0 <= self.class_margin <= 1.0:
            raise EvaluationError(
                f"config: class_margin must be in [0, 1], got {self.class_margin}"
            )
        unknown = [s for s in self.slices if s not in SLICE_KINDS]
        if unknown:
            raise EvaluationError(f"config: unknown slices {unknown}; known: {list(SLICE_KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _probabilities(cfg: EvalConfig) -> list[tuple[str, float]]:
    """Every setting that must be a probability, with its name for error messages."""
    out = [("precision_at_recall", v) for v in cfg.precision_at_recall]
    out += [("recall_at_precision", v) for v in cfg.recall_at_precision]
    return out


def load_eval_config(path: str | Path | None = None) -> EvalConfig:
    """Read a YAML config; None gives the defaults. Unknown keys are an error naming them."""
    if path is None:
        return EvalConfig()
    from mmdetect.common.inputs_check import InputFileError, read_config_text

    try:  # a regular file of at most MAX_CONFIG_BYTES: a FIFO or /dev/zero never reaches YAML
        text = read_config_text(path)
    except InputFileError as exc:
        raise EvaluationError(str(exc)) from None
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise EvaluationError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    known = {f.name for f in fields(EvalConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise EvaluationError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return EvalConfig(**data)
    except TypeError as exc:
        raise EvaluationError(f"{path}: {exc}") from exc
