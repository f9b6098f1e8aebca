"""Where a command may write, and how: every output is checked, then written atomically.

`check_output` refuses an output that would overwrite or land inside an input, a bundle or a
registry. `atomic_output` / `atomic_outputs` write to `.NAME.partial-<pid>` beside the target and
rename it over the target only when the block finishes: a killed run never leaves a file at the
target that looks complete. On an exception (KeyboardInterrupt included) the partial file is
removed, or kept when `keep_partial=True` (a command that can resume from it, like `predict`);
SIGKILL always leaves it, under its explicit `.partial-<pid>` name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from mmdetect.common.staging import pid_alive

BUNDLE_MARKERS = ("SHA256SUMS", "meta.json")  # a directory holding both is a bundle
REGISTRY_HISTORY, REGISTRY_BUNDLES, REGISTRY_CURRENT = "history.jsonl", "bundles", "current"


class OutputError(ValueError):
    """An output path that would destroy or corrupt something; one line naming both paths."""


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))  # follows every symlink that exists, keeps the rest


def is_bundle(path: Path) -> bool:
    return path.is_dir() and all((path / m).is_file() for m in BUNDLE_MARKERS)


def is_registry(path: Path) -> bool:
    """history.jsonl, or bundles/ beside a `current` link or the writers' .lock."""
    if not path.is_dir():
        return False
    if (path / REGISTRY_HISTORY).is_file():
        return True
    marked = (path / REGISTRY_CURRENT).is_symlink() or (path / ".lock").exists()
    return (path / REGISTRY_BUNDLES).is_dir() and marked


def _protected(out: Path, given: Path) -> str | None:
    """Why `out` (resolved) may not be written: inside a bundle or a registry, or via `current`."""
    for part in [given, *given.parents]:
        if part.name == REGISTRY_CURRENT and part.is_symlink() and is_registry(part.parent):
            return f"is reached through the registry pointer {part}"
    for anc in [out, *out.parents]:
        if is_bundle(anc):
            return f"is inside the bundle {anc}" if anc != out else "is a bundle"
        if is_registry(anc):
            return f"is inside the registry {anc}" if anc != out else "is a registry"
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # hard links too
    except OSError:
        return False


def check_output(path: str | Path, inputs: Sequence[str | Path], kind: str = "file") -> Path:
    """Refuse an output that equals, contains or is inside an input (symlinks and hard links
    followed), that is inside a bundle or a registry, or that has the wrong kind (an existing
    directory given for a file output, or the reverse). Returns `path`; raises OutputError."""
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    given = Path(path)
    if kind == "file" and given.is_dir():
        raise OutputError(f"output {given} is a directory; give a file path")
    if kind == "dir" and given.exists() and not given.is_dir():
        raise OutputError(f"output {given} is a file; give a directory")
    out = _resolved(given)
    for raw in inputs:
        inp = _resolved(Path(raw))
        if out == inp or _same_file(given, Path(raw)):
            raise OutputError(f"output {given} is the input {raw}: it would be overwritten")
        if inp in out.parents:
            raise OutputError(f"output {given} is inside the input {raw}")
        if out in inp.parents:
            raise OutputError(f"output {given} contains the input {raw}")
    why = _protected(out, given)
    if why:
        raise OutputError(f"output {given} {why}: bundles and registries are never written to")
    return given


def partial_path(path: Path, pid: int | None = None) -> Path:
    """The temporary beside `path` that becomes `path` on success."""
    return path.with_name(f".{path.name}.partial-{os.getpid() if pid is None else pid}")


def stale_partials(path: Path) -> list[Path]:
    """Partial files of `path` left by runs that are no longer alive, newest first."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.partial-(\d+)$")
    found = []
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            m = pattern.match(p.name)
            if (
                m
                and p.is_file()
                and int(m.group(1)) != os.getpid()
                and not pid_alive(int(m.group(1)))
            ):
                found.append(p)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_outputs(
    paths: Sequence[Path], binary: bool = False, keep_partial: bool = False, append: bool = False
) -> Iterator[list[IO]]:
    """Handles on `.NAME.partial-<pid>` for each path, all renamed over their targets when the
    block succeeds (the first path last: it is the one a reader checks). `append` continues an
    existing partial file (a resume); otherwise each starts empty."""
    parts = [partial_path(Path(p)) for p in paths]
    mode = ("a" if append else "w") + ("b" if binary else "")
    kw = {} if binary else {"encoding": "utf-8"}
    handles: list[IO] = []
    try:
        for part in parts:
            handles.append(part.open(mode, **kw))  # noqa: SIM115 (closed below)
        yield handles
        for fh in handles:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        for part, target in reversed(list(zip(parts, paths, strict=True))):
            os.replace(part, target)
        for d in {Path(p).parent for p in paths}:
            _fsync_dir(d)
    except BaseException:
        for fh in handles:
            fh.close()
        if not keep_partial:
            for part in parts:
                part.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_output(path: Path, binary: bool = False, keep_partial: bool = False) -> Iterator[IO]:
    """One output written atomically (see `atomic_outputs`)."""
    with atomic_outputs([Path(path)], binary, keep_partial) as (fh,):
        yield fh


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temporary file and a rename."""
    with atomic_output(Path(path)) as fh:
        fh.write(text)


def _complete_row(raw: bytes) -> dict | None:
    """A JSONL row written whole (newline-terminated, a JSON object with a string id)."""
    if not raw.endswith(b"\n"):
        return None
    try:
        row = json.loads(raw)
    except ValueError:
        return None
    return row if isinstance(row, dict) and isinstance(row.get("id"), str) else None


def resume_jsonl(
    path: Path, keep_ids: set[str] | None = None, on_row: Callable[[dict], None] | None = None
) -> tuple[set[str], Path | None]:
    """Continue an interrupted JSONL output: the newest stale partial of `path` becomes this
    run's partial, cut before its first incomplete row (the one a kill cut short) and, with
    `keep_ids`, without rows whose id is not in it. Returns (ids kept, the partial resumed from
    or None); older stale partials are removed. `on_row(row)` sees every kept row."""
    stale = stale_partials(path)
    ids: set[str] = set()
    with partial_path(path).open("wb") as out:
        if stale:
            with stale[0].open("rb") as fh:
                for raw in fh:
                    row = _complete_row(raw)
                    if row is None:
                        break  # everything after a cut row is scored again
                    if keep_ids is None or row["id"] in keep_ids:
                        out.write(raw)
                        ids.add(row["id"])
                        if on_row is not None:
                            on_row(row)
    for p in stale:
        p.unlink(missing_ok=True)
    return ids, stale[0] if stale else None


def replaceable_dir(path: str | Path, marker: str) -> Path:
    """An output directory a command may replace whole: absent, empty, or holding `marker` (the
    file that command writes, e.g. an earlier report's metrics.json); OutputError otherwise,
    so a mistyped `--out ~` is never swapped away."""
    path = Path(path)
    if path.is_dir() and not (path / marker).is_file() and any(path.iterdir()):
        raise OutputError(
            f"output {path} is a non-empty directory without {marker}: not an earlier output "
            "of this command; choose a new or empty --out"
        )
    return path


def _stale_dirs(path: Path, infix: str) -> list[Path]:
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.{infix}-(\d+)$")
    found = []
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            m = pattern.match(p.name)
            if m and p.is_dir() and not p.is_symlink() and not pid_alive(int(m.group(1))):
                found.append(p)
    return found


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A fresh `.NAME.partial-<pid>` directory beside `path` to write into; when the block
    succeeds it becomes `path` (an existing `path` is moved aside first and removed after), on
    any exception it is removed and `path` stays as it was. Leftovers of dead runs are removed."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_dirs(path, "partial") + _stale_dirs(path, "old"):
        shutil.rmtree(stale, ignore_errors=True)
    stage = partial_path(path)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        had_old = path.is_dir() and not path.is_symlink()
        if had_old:
            os.rename(path, old)
        try:
            os.rename(stage, path)
        except BaseException:
            if had_old:
                os.rename(old, path)
            raise
        _fsync_dir(path.parent)
        if had_old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def enclosing_snapshot(path: str | Path) -> Path | None:
    """The snapshot directory (one holding listings.jsonl) that `path` is or lies in, if any."""
    out = _resolved(Path(path))
    for anc in [out, *out.parents]:
        if (anc / "listings.jsonl").is_file():
            return anc
    return None


def check_generated_dir(path: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """`check_output(kind="dir")` for a command that fills a directory with new data (samples,
    vocab): also never a snapshot or inside one (OutputError)."""
    given = check_output(path, inputs, kind="dir")
    snap = enclosing_snapshot(given)
    if snap is not None:
        where = "is the snapshot" if snap == _resolved(given) else "is inside the snapshot"
        raise OutputError(f"output {given} {where} {snap}: snapshots are never written to")
    return given
