"""Class paths from configs and checkpoints, resolved only inside an allow-list (issue #27).

Importing a module runs it: a checkpoint whose `fusion.class_path` named `venv.__main__` ran
venv's command line before any nn.Module check could look at what it got. So the module part of
a path is checked against the allow-list *before* anything is imported:
- mmdetect's own modules and torch.nn, always;
- the packages the user names: `model.allow_modules` in the config they pass to `mmdetect fit`,
  or MMDETECT_ALLOW_MODULES (comma-separated) in the environment of a command that reads a
  checkpoint (export, evaluate, predict ...). A checkpoint's own `allow_modules` is never used.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterable

DEFAULT_ALLOWED = ("mmdetect", "torch.nn")
ENV_VAR = "MMDETECT_ALLOW_MODULES"
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class ClassPathError(ValueError):
    """A class path outside the allow-list, malformed, or not naming the expected kind."""


def env_allowed() -> tuple[str, ...]:
    """The module prefixes MMDETECT_ALLOW_MODULES names (empty when unset)."""
    return tuple(p.strip() for p in os.environ.get(ENV_VAR, "").split(",") if p.strip())


def allowed_modules(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """DEFAULT_ALLOWED, then the user's `extra`, then the environment's."""
    return (*DEFAULT_ALLOWED, *(str(m) for m in extra), *env_allowed())


def is_allowed(module: str, allowed: Iterable[str]) -> bool:
    """True when `module` is one of `allowed` or inside one of them (package prefix)."""
    return any(module == p or module.startswith(p + ".") for p in allowed)


def import_class(class_path: str, base: type, allowed: Iterable[str], what: str) -> type:
    """The subclass of `base` that `class_path` names; ClassPathError before any import when
    its module is outside `allowed`."""
    allowed = tuple(allowed)
    module_name, _, name = class_path.rpartition(".")
    if not module_name or not _DOTTED.fullmatch(class_path):
        raise ClassPathError(f"{what} {class_path!r}: expected a dotted class path")
    if not is_allowed(module_name, allowed):
        raise ClassPathError(
            f"{what} {class_path!r}: module {module_name!r} is not allowed (allowed: "
            f"{', '.join(allowed)}); name its package in model.allow_modules or {ENV_VAR} "
            "if you trust it (nothing was imported)"
        )
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ClassPathError(f"{what} {class_path!r} cannot be imported: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        kind = "an nn.Module" if base.__qualname__ == "Module" else f"a {base.__qualname__}"
        raise ClassPathError(f"{what} {class_path!r} is not {kind} subclass")
    return cls
