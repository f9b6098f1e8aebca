"""Model registry: the store of bundles and the `current` pointer (promote and rollback, which
switch it, are in mmdetect.ops.registry_promote).

```
REGISTRY/
  bundles/<name>/     complete, verified bundles (copied in; never modified or deleted here)
  current -> bundles/<name>   relative symlink, switched atomically (os.replace of a new link)
  history.jsonl       one line per promotion, refusal and rollback
  reports/<time>-<name>/      champion-vs-challenger evaluation reports
```

A reader resolves `current` once (`resolve_current`) and uses that directory: bundles are copied
under a temporary name, verified and renamed before the pointer moves, and nothing here deletes a
bundle, so a resolved path always holds a complete bundle. Writers (promote, rollback) take an
exclusive lock on REGISTRY/.lock, so the champion cannot change during an evaluation.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from mmdetect.artifacts.bundle_format import SUMS_FILE, BundleError, verify_checksums
from mmdetect.artifacts.registry_history import HISTORY, RegistryError
from mmdetect.artifacts.registry_layout import BUNDLES, CURRENT, LOCK, served_bundle
from mmdetect.common.outputs import is_registry
from mmdetect.ops.registry_names import safe_name

log = logging.getLogger(__name__)


# ---- the directory -------------------------------------------------------------------------


def current_name(root: Path) -> str | None:
    link = root / CURRENT
    return Path(os.readlink(link)).name if link.is_symlink() else None


def current_problem(root: Path) -> str | None:
    """Why `current` cannot be served (missing or damaged bundle, not a link); None if fine."""
    link = root / CURRENT
    if not link.is_symlink() and not link.exists():
        return None
    try:
        target = served_bundle(root)
    except RegistryError as exc:
        return str(exc)
    try:
        verify_checksums(target)
    except BundleError as exc:
        return f"{link} points to a bundle that does not verify: {exc}"
    return None


def open_registry(root: Path, create: bool = False) -> Path:
    """Check that `root` is a registry; with `create`, a new or empty directory becomes one.
    A mistyped path is never created by a reader (registry, rollback, promote --list)."""
    if root.exists() and not root.is_dir():
        raise RegistryError(f"{root}: is a file, not a registry directory")
    if not root.exists():
        if not create:
            raise RegistryError(f"{root}: no such registry (check the path; nothing was created)")
        root.mkdir(parents=True)
    elif not is_registry(root) and (not create or any(root.iterdir())):
        raise RegistryError(
            f"{root}: not a registry (no {HISTORY} or {BUNDLES}/); "
            + ("give a new or empty directory" if create else "check the path")
        )
    return root


def stale_temporaries(root: Path) -> list[Path]:
    """Staging copies and pointer links a killed promote or rollback left behind (bundles/ and
    current, or another pointer's: rules/ and rules_current, registry_rules.py)."""
    found = [*root.glob("*/.tmp-*"), *root.glob(".*.tmp-*")]
    return sorted(found)


def clean_stale(root: Path) -> list[Path]:
    """Remove stale temporaries; call only under the lock (no writer is running then)."""
    stale = stale_temporaries(root)
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
        log.warning("removed %s, left by a killed promote or rollback", p)
    return stale


@contextlib.contextmanager
def _locked(root: Path, create: bool = False) -> Iterator[None]:
    open_registry(root, create)
    if create:
        (root / BUNDLES).mkdir(exist_ok=True)
    with (root / LOCK).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            clean_stale(root)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def switch_current(root: Path, name: str, link: str = CURRENT, under: str = BUNDLES) -> None:
    """Point `current` (or `link`) at bundles/<name> (or under/<name>): a new symlink renamed
    over the old one (atomic)."""
    tmp = root / f".{link}.tmp-{uuid.uuid4().hex[:8]}"
    os.symlink(f"{under}/{name}", tmp)
    try:
        os.replace(tmp, root / link)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself is durable before history records it
    finally:
        os.close(fd)


def bundle_name(src: Path) -> str:
    """<directory name>-<8 hex of its SHA256SUMS>: the same bundle always gets the same name."""
    digest = hashlib.sha256((src / SUMS_FILE).read_bytes()).hexdigest()[:8]
    return f"{safe_name(src.resolve().name)}-{digest}"


def _verify(path: Path) -> None:
    try:
        verify_checksums(path)
    except BundleError as exc:
        raise RegistryError(f"not a complete bundle: {exc}") from exc


def stage_bundle(root: Path, src: Path, name: str) -> Path:
    """Copy src to bundles/.tmp-<name>-<rand> and verify the copy; the caller renames it."""
    tmp = root / BUNDLES / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(src, tmp)
        _verify(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


# ---- promote / rollback --------------------------------------------------------------------
