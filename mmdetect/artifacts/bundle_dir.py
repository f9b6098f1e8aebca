"""Where an artifact directory may be written: what `--force` may replace, temporaries, leftovers.

Rules (issue #12): never write into an input; `--force` replaces only what is recognisably our
own artifact (an empty directory, or a bundle whose meta.json has a format_version and whose
SHA256SUMS verify); temporaries are named `.NAME.tmp-PID-RAND` beside the target, so the next
run can tell a dead run's leftovers from a live one's and remove them.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from mmdetect.artifacts import bundle_format
from mmdetect.common.staging import pid_alive

# A temporary whose name carries no pid (an older mmdetect) is stale once this old.
UNNAMED_STALE_S = 3600


class TargetError(RuntimeError):
    """The output path is not something we may create or replace."""


def is_our_bundle(path: Path) -> str | None:
    """None if `path` is a verified bundle, else why it is not one."""
    meta = path / bundle_format.META_FILE
    if not meta.is_file():
        return f"no {bundle_format.META_FILE}"
    try:
        doc = bundle_format.read_json(meta)
        if not isinstance(doc, dict) or "format_version" not in doc:
            return f"{bundle_format.META_FILE} has no format_version"
        bundle_format.verify_checksums(path)
    except bundle_format.BundleError as exc:
        return str(exc)
    return None


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_target(out: Path, inputs: Iterable[Path], force: bool) -> None:
    """Raise TargetError unless `out` may become a new bundle.

    `inputs` (the checkpoint, the parity snapshot, a thresholds file...) must not lie at or
    under `out`: replacing `out` would delete them.
    """
    target = out.resolve()
    for src in inputs:
        if src is not None and _within(Path(src).resolve(), target):
            raise TargetError(
                f"{out}: it contains the input {src}; replacing it would delete that input: "
                "choose another --out"
            )
    if out.is_symlink():
        raise TargetError(f"{out}: is a symbolic link; refusing to replace it")
    if not out.exists():
        return
    if not out.is_dir():
        raise TargetError(f"{out}: exists and is not a directory; refusing to replace it")
    if not force:
        raise TargetError(f"{out} exists; pass --force to replace it")
    if not any(out.iterdir()):
        return
    why = is_our_bundle(out)
    if why is not None:
        raise TargetError(
            f"{out}: not an mmdetect bundle ({why}); --force replaces only a bundle that "
            "verifies: choose another --out or remove it yourself"
        )


def temp_dir(out: Path) -> Path:
    """A fresh `.NAME.tmp-PID-RAND` directory beside `out` (same filesystem: rename is atomic)."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=False)
    return tmp


def _is_stale(path: Path, prefix: str) -> bool:
    pid_text = path.name[len(prefix) :].split("-", 1)[0]
    if pid_text.isdigit():
        return int(pid_text) != os.getpid() and not pid_alive(int(pid_text))
    return time.time() - path.lstat().st_mtime > UNNAMED_STALE_S


def clean_stale(out: Path) -> list[str]:
    """Remove the temporaries a killed run left beside `out`; returns one line per action.

    `.NAME.tmp-*`: a half-written bundle, removed. `.NAME.old-*`: the previous bundle, renamed
    away by an install that was killed; removed only when `out` exists again, else reported.
    """
    notes: list[str] = []
    if not out.parent.is_dir():
        return notes
    tmp_prefix, old_prefix = f".{out.name}.tmp-", f".{out.name}.old-"
    for path in sorted(out.parent.iterdir()):
        if path.is_symlink() or not path.is_dir():
            continue
        if path.name.startswith(tmp_prefix) and _is_stale(path, tmp_prefix):
            shutil.rmtree(path, ignore_errors=True)
            notes.append(f"removed {path}, left by an interrupted export")
        elif path.name.startswith(old_prefix) and _is_stale(path, old_prefix):
            if out.exists():
                shutil.rmtree(path, ignore_errors=True)
                notes.append(f"removed {path}, a replaced bundle left by an interrupted export")
            else:
                notes.append(
                    f"warning: {path} is the previous bundle, left by an interrupted export; "
                    f"rename it back to {out} or remove it"
                )
    return notes


def install(tmp: Path, out: Path, force: bool) -> None:
    """Rename tmp to out; with force, the old out is renamed away first and deleted last."""
    if not out.exists():
        tmp.rename(out)
        return
    if not force:
        raise TargetError(f"{out} exists; pass --force to replace it")
    old = out.with_name(f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old)
