"""The registry's on-disk layout (bundles/, current, reports/, .lock) and where `current`
points: what serving reads and ops writes.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmdetect.artifacts.registry_history import HISTORY, RegistryError, scan_history

BUNDLES, CURRENT, REPORTS, LOCK = "bundles", "current", "reports", ".lock"


def resolve_current(root: str | Path) -> Path:
    """The directory `current` points to (resolve once, then read from it)."""
    link = Path(root) / CURRENT
    try:
        return link.resolve(strict=True)
    except (FileNotFoundError, RuntimeError) as exc:
        if link.is_symlink():
            raise RegistryError(
                f"{link} points to {os.readlink(link)}, which does not exist"
            ) from exc
        raise RegistryError(f"{root}: no current bundle (nothing promoted yet?)") from exc


def served_bundle(root: str | Path) -> Path:
    """The bundle `current` names, by the one rule `mmdetect registry` and `mmdetect serve`
    share: `current` is a link to `bundles/<name>` (relative, as switch_current writes it),
    bundles/<name> is a real directory inside bundles/ (not a link out of it), and <name> was
    promoted (history.jsonl). RegistryError with a one-line reason otherwise."""
    root = Path(root)
    link = root / CURRENT
    if not link.is_symlink():
        if link.exists():
            raise RegistryError(f"{link} is not a symlink")
        raise RegistryError(f"{root}: no current bundle (nothing promoted yet?)")
    text = os.readlink(link)
    parts = Path(text).parts
    if (
        Path(text).is_absolute()
        or len(parts) != 2
        or parts[0] != BUNDLES
        or parts[1] in ("..", ".")
    ):
        raise RegistryError(f"{link} points to {text!r}, not to {BUNDLES}/<name> in the registry")
    target = root / BUNDLES / parts[1]
    if target.is_symlink():
        raise RegistryError(f"{link} points to {text}, a symlink: bundles live inside {BUNDLES}/")
    if not target.is_dir():
        raise RegistryError(f"{link} points to {text}, which does not exist")
    promoted = {e["bundle"] for e in scan_history(root)[0] if e.get("action") == "promote"}
    if parts[1] not in promoted:
        raise RegistryError(f"{link} points to {text}, never promoted (not in {HISTORY})")
    return target.resolve()
