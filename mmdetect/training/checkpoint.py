"""Reading a Lightning checkpoint without running code from it.

A checkpoint is a pickle: loading one with `weights_only=False` runs whatever its `__reduce__`
says. Every checkpoint a user hands us (export, evaluate, warm start, benchmarks) goes through
`read_checkpoint`: `torch.load(weights_only=True)` with an allow-list of exactly the classes our
own checkpoints hold; `build_module` then builds the DetectorModule from the hyper-parameters and
loads the weights itself, so a mismatch is one clear line instead of a traceback.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mmdetect.models.image import ImageConfig
from mmdetect.models.text import TextConfig
from mmdetect.training.moved_paths import translate_class_path

log = logging.getLogger(__name__)

# LightningCLI checkpoints hold only builtins and tensors; a DetectorModule built in Python
# (Trainer.save_checkpoint in a notebook or test) pickles its tower configs as these dataclasses.
# Plain dataclasses: unpickling one sets attributes and runs no code.
SAFE_GLOBALS = (TextConfig, ImageConfig)
# Lightning bookkeeping in saved hyper-parameters (`_instantiator`, `_class_path`).
PRIVATE_PREFIX = "_"
# Keys whose string value is an importable class path (LightningCLI's and a YAML fusion's).
CLASS_PATH_KEYS = ("class_path", "_class_path")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely, or whose weights do not fit its hyper-parameters."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _detail(exc: BaseException) -> str:
    """The useful part of torch's message: its weights-only refusals open with advice to
    retry with weights_only=False, which is exactly what must not be done with this file."""
    if isinstance(exc, pickle.UnpicklingError):
        match = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        if match:
            return match.group(1).strip()
    return _first_line(exc)


def _refused_global(exc: BaseException) -> str | None:
    """The global a weights-only load refused (torch names it in its long message), if any."""
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    return match.group(1) if match else None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with weights_only=True; CheckpointError names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    # A hostile or damaged file can fail anywhere in the zip reader or the restricted
    # unpickler (RuntimeError, EOFError, UnpicklingError, ValueError, struct.error, ...);
    # whatever the failure, the answer is the same: not a checkpoint we can read.
    except Exception as exc:
        refused = _refused_global(exc)
        if refused:
            raise CheckpointError(
                f"{path}: refused: it contains {refused}, which no mmdetect checkpoint holds "
                "(loading it could run code); nothing from it was loaded"
            ) from None
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated, corrupt, not a torch file, or a "
            f"pickle that a weights-only load rejects): {_detail(exc)}"
        ) from None
    return translate_paths(check_layout(raw, path))


def translate_paths(raw: dict[str, Any]) -> dict[str, Any]:
    """Class paths in the hyper-parameters (`_class_path`, a fusion's `class_path`) written before
    the stage packages (issue #28), e.g. `mmdetect.training.module.DetectorModule`, rewritten to where the
    class lives now; in place, before anything imports them. Paths not moved are left as given."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in CLASS_PATH_KEYS and isinstance(value, str):
                    node[key] = translate_class_path(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        return node

    for key in ("hyper_parameters", "datamodule_hyper_parameters"):
        if isinstance(raw.get(key), dict):
            walk(raw[key])
    return raw


def check_layout(raw: Any, path: Path) -> dict[str, Any]:
    """The keys later steps index, with the types they assume."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, got {type(raw).__name__}")
    state = raw.get("state_dict")
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path}: no 'state_dict' of weights: not a Lightning checkpoint")
    bad = next((k for k, v in state.items() if not torch.is_tensor(v)), None)
    if bad is not None:
        raise CheckpointError(f"{path}: state_dict[{bad!r}] is not a tensor")
    for key in ("hyper_parameters", "datamodule_hyper_parameters"):
        if raw.get(key) is not None and not isinstance(raw[key], Mapping):
            raise CheckpointError(
                f"{path}: '{key}' must be a mapping, got {type(raw[key]).__name__}"
            )
    return raw


def state_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, Any]) -> str | None:
    """None when `given` has exactly the names and shapes of `expected`, else a one-line summary."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {list(given[k].shape)} vs {list(v.shape)}"
        for k, v in expected.items()
        if k in given and torch.is_tensor(given[k]) and given[k].shape != v.shape
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if names:
            more = f" (+{len(names) - 2} more)" if len(names) > 2 else ""
            parts.append(f"{len(names)} {label}: {', '.join(names[:2])}{more}")
    return "; ".join(parts)
