"""Drawing from a parsed space: one Optuna trial's values, the fit overlay they make, and the
probe configurations a space is checked against `mmdetect fit` with.

Sampling returns dotted values ({"model.lr": 0.003}); `overlay` nests them into the YAML
document that `mmdetect fit --config` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmdetect.tune.space import Param, Space, SpaceError


def active(param: Param, drawn: Mapping[str, Any]) -> bool:
    """Whether `param` is drawn, given the labels/values drawn before it."""
    return all(k in drawn and drawn[k] in values for k, values in param.when.items())


def suggest(space: Space, trial: Any) -> dict[str, Any]:
    """Draw one configuration with an Optuna trial: {dotted key: label or number}."""
    drawn: dict[str, Any] = {}
    for p in space.params:
        if not active(p, drawn):
            continue
        if p.type == "categorical":
            drawn[p.key] = trial.suggest_categorical(p.key, list(p.choices))
        elif p.type == "int":
            drawn[p.key] = trial.suggest_int(
                p.key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
            )
        else:
            drawn[p.key] = trial.suggest_float(p.key, p.low, p.high, step=p.step, log=p.log)
    return drawn


def values_of(space: Space, drawn: Mapping[str, Any]) -> dict[str, Any]:
    """Labels -> the values they stand for; inactive or unknown keys are left out."""
    by_key = {p.key: p for p in space.params}
    out = {}
    for key, value in drawn.items():
        p = by_key.get(key)
        if p is not None:
            out[key] = p.choices[str(value)] if p.choices is not None else value
    return out


def overlay(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """{"model.text.num_layers": 3} -> {"model": {"text": {"num_layers": 3}}}."""
    doc: dict[str, Any] = {}
    for key, value in dotted.items():
        node = doc
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpaceError(f"{key}: {part} is both a value and a section")
        node[leaf] = value
    return doc


def probes(space: Space) -> list[dict[str, Any]]:
    """A few configurations that together use every choice and both ends of every range (all
    conditions treated as met): what a space is checked against `mmdetect fit` with."""
    n = max([2] + [len(p.choices) for p in space.params if p.choices])
    out = []
    for i in range(n):
        drawn = {}
        for p in space.params:
            if p.choices is not None:
                drawn[p.key] = list(p.choices.values())[i % len(p.choices)]
            else:
                v = p.low if i % 2 == 0 else p.high
                drawn[p.key] = int(v) if p.type == "int" else float(v)
        out.append(drawn)
    return out
