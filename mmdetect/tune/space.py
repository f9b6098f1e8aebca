"""The search space file of `mmdetect tune`: parsed and checked once, then sampled per trial.

A space file names LightningCLI keys by their dotted path (`model.lr`, `data.batch_size`) and
says how each is drawn; `when` makes an entry conditional on earlier ones. Every problem is a
SpaceError naming the file, the line and the key. Drawing from a parsed space is draw.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# objective name -> optimisation direction
OBJECTIVES = {"val_macro_ap": "maximize", "operating_recall": "maximize", "latency_ms": "minimize"}
PRIMARY = ("val_macro_ap", "operating_recall")
SAMPLERS = ("tpe", "random", "nsga2")
PRUNERS = ("median", "percentile", "successive_halving", "hyperband", "none")
TYPES = ("float", "int", "categorical")
TOP_KEYS = ("objectives", "sampler", "pruner", "monitor", "policy", "latency", "fixed", "params")
PARAM_KEYS = ("type", "low", "high", "step", "log", "choices", "when")
LATENCY_KEYS = ("listings",)
# what pruning may watch: AP curves that rise as the fit improves (TrialPruning maximises), and
# a PRUNED trial is recorded with the last value it reported, so the objective must be an AP too
MONITOR = re.compile(r"val/(macro_ap|ap_[A-Za-z0-9_.-]+)")


class SpaceError(ValueError):
    """A bad space file; one line naming file, line and key."""


@dataclass(frozen=True)
class Param:
    """One searched key: how it is drawn and when it is active."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: dict[str, Any] | None = None  # label -> value (labels are what Optuna records)
    when: dict[str, list[Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Space:
    """A parsed space file."""

    path: Path
    params: tuple[Param, ...]
    objectives: tuple[str, ...] = ("val_macro_ap",)
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    monitor: str = "val/macro_ap"
    policy: str | None = None
    latency: dict[str, Any] = field(default_factory=lambda: {"listings": 32})
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]


def _key_lines(text: str) -> dict[str, int]:
    """1-based line of each top-level key and of each `params.KEY` / `fixed.KEY`."""
    lines: dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if not isinstance(root, yaml.MappingNode):
        return lines
    for k, v in root.value:
        lines[str(k.value)] = k.start_mark.line + 1
        if isinstance(v, yaml.MappingNode):
            for k2, v2 in v.value:
                lines[f"{k.value}.{k2.value}"] = k2.start_mark.line + 1
                if isinstance(v2, yaml.MappingNode):
                    for k3, _ in v2.value:
                        lines[f"{k.value}.{k2.value}.{k3.value}"] = k3.start_mark.line + 1
    return lines


class _Where:
    """Builds the `FILE:LINE: KEY: message` errors of one file."""

    def __init__(self, path: Path, lines: dict[str, int]):
        self.path, self.lines = path, lines

    def error(self, key: str, message: str) -> SpaceError:
        parts = key.split(".")
        line = next(
            (self.lines[".".join(parts[:n])] for n in range(len(parts), 0, -1)
             if ".".join(parts[:n]) in self.lines), None,
        )  # fmt: skip
        at = f"{self.path}:{line}" if line else str(self.path)
        return SpaceError(f"{at}: {key}: {message}")


def key_error(path: str | Path, key: str, message: str) -> SpaceError:
    """A SpaceError `FILE:LINE: KEY: message` for a check made after the file was loaded (e.g.
    against fit's parser): the line of `key` (or of its nearest parent) in the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        text = ""
    return _Where(path, _key_lines(text)).error(key, message)


def _number(where: _Where, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise where.error(key, f"must be a finite number, got {value!r}")
    return value


def _param(where: _Where, key: str, doc: Any, earlier: dict[str, Param]) -> Param:
    at = f"params.{key}"
    if not isinstance(doc, Mapping):
        raise where.error(at, "must be a mapping with `type` (float, int or categorical)")
    unknown = sorted(set(doc) - set(PARAM_KEYS))
    if unknown:
        raise where.error(f"{at}.{unknown[0]}", f"unknown field; fields: {', '.join(PARAM_KEYS)}")
    kind = doc.get("type")
    if kind not in TYPES:
        raise where.error(f"{at}.type", f"must be one of {', '.join(TYPES)}, got {kind!r}")
    when = _when(where, at, doc.get("when") or {}, earlier)
    if kind == "categorical":
        extra = sorted(set(doc) & {"low", "high", "step", "log"})
        if extra:
            raise where.error(f"{at}.{extra[0]}", "a categorical entry takes only `choices`")
        return Param(key, kind, choices=_choices(where, at, doc.get("choices")), when=when)
    if "choices" in doc:
        raise where.error(f"{at}.choices", f"a {kind} entry takes low/high[/step][/log]")
    for bound in ("low", "high"):
        if bound not in doc:
            raise where.error(f"{at}.{bound}", f"a {kind} entry needs `{bound}`")
    low, high = _number(where, f"{at}.low", doc["low"]), _number(where, f"{at}.high", doc["high"])
    step = None if doc.get("step") is None else _number(where, f"{at}.step", doc["step"])
    log = doc.get("log", False)
    if not isinstance(log, bool):
        raise where.error(f"{at}.log", f"must be true or false, got {log!r}")
    if kind == "int" and not all(float(x).is_integer() for x in (low, high, step or 1)):
        raise where.error(at, "an int entry needs integer low, high and step")
    if low >= high:
        raise where.error(f"{at}.low", f"low ({low}) must be < high ({high})")
    if log and low <= 0:
        raise where.error(f"{at}.low", f"a log scale needs low > 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise where.error(f"{at}.step", "step must be > 0 and cannot go with log: true")
    return Param(key, kind, low, high, step, log, when=when)


def _choices(where: _Where, at: str, choices: Any) -> dict[str, Any]:
    """A list of scalars, or a mapping label -> value (a value may be a dict, e.g. a class_path
    with init_args; Optuna records the label)."""
    if isinstance(choices, list) and choices:
        out = {}
        for c in choices:
            if not (c is None or isinstance(c, bool | int | float | str)):
                raise where.error(
                    f"{at}.choices", f"{c!r} is not a scalar; give `choices` as label: value"
                )
            out[str(c)] = c
        if len(out) != len(choices):
            raise where.error(f"{at}.choices", "choices repeat")
        return out
    if isinstance(choices, Mapping) and choices:
        return {str(k): v for k, v in choices.items()}
    raise where.error(f"{at}.choices", "a categorical entry needs a non-empty list or mapping")


def _when(where: _Where, at: str, doc: Any, earlier: dict[str, Param]) -> dict[str, list[Any]]:
    if not isinstance(doc, Mapping):
        raise where.error(f"{at}.when", "must map an earlier key to a value or a list of values")
    out = {}
    for key, want in doc.items():
        if key not in earlier:
            raise where.error(f"{at}.when", f"{key!r} is not a searched key listed above this one")
        values = want if isinstance(want, list) else [want]
        known = earlier[key].choices
        for v in values:
            if known is not None and str(v) not in known:
                raise where.error(f"{at}.when", f"{v!r} is not a choice of {key}")
        out[key] = [str(v) for v in values] if known is not None else values
    return out


def _section(where: _Where, doc: Mapping, key: str, names: tuple[str, ...]) -> dict[str, Any]:
    value = doc.get(key) or {}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping) or value.get("name") not in names:
        raise where.error(f"{key}.name", f"must be one of {', '.join(names)}")
    return dict(value)


def _check_pruning(where: _Where, objectives: list[str], pruner: dict, monitor: str) -> None:
    """Pruning is sound only for one val_macro_ap objective watched on a rising AP curve: Optuna
    records a pruned trial with its last reported value, and the callback maximises."""
    if not MONITOR.fullmatch(monitor):
        raise where.error(
            "monitor", f"must be val/macro_ap or val/ap_CLASS (an AP the pruner maximises), "
            f"got {monitor!r}",
        )  # fmt: skip
    if pruner["name"] != "none" and objectives != ["val_macro_ap"]:
        raise where.error(
            "pruner", f"pruning needs the single objective val_macro_ap (a pruned trial is "
            f"recorded with its last validation AP), got {objectives}: use `pruner: none`",
        )  # fmt: skip


def parse_space(doc: Any, path: str | Path = "<space>", text: str = "") -> Space:
    """Check a loaded space document; SpaceError names the first problem."""
    path = Path(path)
    where = _Where(path, _key_lines(text))
    if not isinstance(doc, Mapping):
        raise where.error("params", "a space file is a mapping with at least `params`")
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise where.error(unknown[0], f"unknown key; keys: {', '.join(TOP_KEYS)}")
    raw = doc.get("params")
    if not isinstance(raw, Mapping) or not raw:
        raise where.error("params", "must map dotted LightningCLI keys to entries")
    params: dict[str, Param] = {}
    for key, entry in raw.items():
        if not isinstance(key, str) or not all(key.split(".")):
            raise where.error(f"params.{key}", "must be a dotted key such as model.lr")
        params[key] = _param(where, key, entry, dict(params))
    objectives = doc.get("objectives", ["val_macro_ap"])
    objectives = [objectives] if isinstance(objectives, str) else objectives
    if (
        not isinstance(objectives, list)
        or not 1 <= len(objectives) <= 2
        or objectives[0] not in PRIMARY
        or any(o != "latency_ms" for o in objectives[1:])
    ):
        raise where.error(
            "objectives", f"must be one of {', '.join(PRIMARY)}, optionally followed by "
            f"latency_ms; got {objectives!r}",
        )  # fmt: skip
    sampler = _section(where, {"sampler": {"name": "tpe"}, **doc}, "sampler", SAMPLERS)
    # pruning by default only where it is sound: a single val_macro_ap objective
    default = "median" if objectives == ["val_macro_ap"] else "none"
    pruner = _section(where, {"pruner": {"name": default}, **doc}, "pruner", PRUNERS)
    fixed = doc.get("fixed") or {}
    if not isinstance(fixed, Mapping) or not all(isinstance(k, str) for k in fixed):
        raise where.error("fixed", "must map dotted LightningCLI keys to values")
    clash = sorted(set(fixed) & set(params))
    if clash:
        raise where.error(f"fixed.{clash[0]}", "is also a searched key under params")
    latency = doc.get("latency") or {}
    if not isinstance(latency, Mapping):
        raise where.error("latency", f"must be a mapping such as {{listings: 32}}, got {latency!r}")
    unknown = sorted(set(latency) - set(LATENCY_KEYS))
    if unknown:
        raise where.error(
            f"latency.{unknown[0]}", f"unknown field; fields: {', '.join(LATENCY_KEYS)}"
        )
    latency = {"listings": 32, **latency}
    if not isinstance(latency["listings"], int) or latency["listings"] < 1:
        raise where.error("latency.listings", "must be an integer >= 1")
    for key in ("monitor", "policy"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise where.error(key, f"must be a string, got {doc[key]!r}")
    _check_pruning(where, objectives, pruner, doc.get("monitor") or "val/macro_ap")
    return Space(
        path, tuple(params.values()), tuple(objectives), sampler, pruner,
        doc.get("monitor") or "val/macro_ap", doc.get("policy"), latency, dict(fixed),
    )  # fmt: skip


def load_space(path: str | Path) -> Space:
    """Read and check a space file (SpaceError on a missing file or bad YAML too)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise SpaceError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_space(doc, path, text)
