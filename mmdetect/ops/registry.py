"""Model registry: promote a bundle over the current one only if it is not worse; roll back.

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
import getpass
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mmdetect.artifacts.bundle_format import SUMS_FILE, BundleError, verify_checksums
from mmdetect.artifacts.registry_history import (
    HISTORY,
    RegistryError,
    _append_history,
    pointer_stack,
    read_history,
)
from mmdetect.artifacts.registry_layout import BUNDLES, CURRENT, LOCK, REPORTS, served_bundle
from mmdetect.common.outputs import is_registry
from mmdetect.evaluate.config import EvalConfig
from mmdetect.ops.promotion import (  # noqa: F401 (promotion_decision, false_hide_gate: re-exported)
    evaluate_pair,
    false_hide_gate,
    first_promotion_gate,
    promotion_decision,
)
from mmdetect.ops.registry_names import check_bundle_name, safe_name

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


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def _report_dir(root: Path, t: datetime, name: str) -> Path:
    out = root / REPORTS / f"{t:%Y%m%dT%H%M%SZ}-{name}"
    return out if not out.exists() else out.with_name(f"{out.name}-{uuid.uuid4().hex[:6]}")


# ---- promote / rollback --------------------------------------------------------------------


def promote(
    root: str | Path,
    bundle: str | Path,
    snapshot: str | Path,
    cfg: EvalConfig | None = None,
    force: bool = False,
    reason: str | None = None,
    name: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Promote `bundle` (copied in) unless it loses to the current one on `snapshot`.

    Returns the history entry: action "promote" (current switched) or "refuse" (nothing
    switched; the challenger is not kept). `force` (with a reason) promotes despite a refusal.
    """
    root, bundle, snapshot, cfg = Path(root), Path(bundle), Path(snapshot), cfg or EvalConfig()
    if force and not (reason or "").strip():
        raise RegistryError("--force needs --reason: say why the evaluation is overridden")
    _verify(bundle)
    name = name or bundle_name(bundle)
    try:
        check_bundle_name(name)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    with _locked(root, create=True):
        previous, final = current_name(root), root / BUNDLES / name
        broken = current_problem(root)
        if broken:
            raise RegistryError(f"{broken}: no champion to compare with; repair the registry")
        staged = None
        # promoted before (e.g. rolled back from, or the current one): must be the same bundle
        if final.exists() and (final / SUMS_FILE).read_bytes() != (bundle / SUMS_FILE).read_bytes():
            what = " (the current bundle)" if previous == name else ""
            raise RegistryError(f"{final}{what} exists with other content than {bundle}; "
                                "choose another --name")  # fmt: skip
        if previous == name:
            raise RegistryError(f"{name} is already the current bundle")
        if final.exists():
            _verify(final)
        else:
            staged = stage_bundle(root, bundle, name)
        try:
            t = _now()
            entry = {"time": _iso(t), "action": "promote", "bundle": name, "previous": previous,
                     "source": str(bundle), "snapshot": str(snapshot), "forced": force,
                     "reason": reason, "user": _user(), "metrics": None, "report": None,
                     "decision": {"accepted": True, "reasons": []}}  # fmt: skip
            entry["rules"] = _serving_rules(root)
            if previous is None:
                gate = first_promotion_gate(bundle)
                entry["gates"] = {"operating_point": gate}
                entry["decision"]["reasons"] = ["first promotion: no champion to compare with"]
                if not gate["passed"]:
                    entry["decision"] = {"accepted": False, "reasons": [gate["reason"]]}
                    if not force:
                        entry["action"] = "refuse"
                        _append_history(root, entry)
                        return entry
            else:
                report = _report_dir(root, t, name)
                source = {"snapshot": str(snapshot), "model": name, "baseline": previous}
                gates, dropped = evaluate_pair(
                    root / BUNDLES / previous, staged or final, snapshot, cfg, report, source,
                    batch_size, num_workers,
                )  # fmt: skip
                reasons = list(promotion_decision(gates).reasons)
                if dropped:
                    reasons.append(f"does not score {dropped}, which the champion scores")
                entry["metrics"] = {k: v for k, v in gates["macro_ap"].items()
                                    if k not in ("passed", "reason")}  # fmt: skip
                entry["gates"] = gates
                entry["report"] = str(report.relative_to(root))
                entry["decision"] = {"accepted": not reasons, "reasons": reasons}
                if reasons and not force:
                    entry["action"] = "refuse"
                    _append_history(root, entry)
                    return entry
            if staged is not None:
                staged.rename(final)
            switch_current(root, name)
            _append_history(root, entry)
            return entry
        finally:
            if staged is not None and staged.exists():
                shutil.rmtree(staged, ignore_errors=True)


def _serving_rules(root: Path) -> str | None:
    """The rules the service decides with beside this bundle (registry_rules.py), recorded:
    the gates compare the models alone, as the same rules apply to both (docs/rules.md)."""
    from mmdetect.artifacts.rules_layout import rules_current_name

    return rules_current_name(root)


def rollback(root: str | Path, reason: str | None = None) -> dict[str, Any]:
    """Point `current` back at the bundle that was current before it (from history)."""
    root = Path(root)
    with _locked(root):
        stack, current = pointer_stack(read_history(root)), current_name(root)
        if not stack or current is None:
            raise RegistryError(f"{root}: nothing promoted: nothing to roll back")
        broken = current_problem(root)
        if broken:
            raise RegistryError(
                f"{broken}; rollback refuses a damaged registry: restore bundles/{current} "
                "or point current at a complete bundle by hand"
            )
        if stack[-1] != current:
            raise RegistryError(
                f"{root}: current points to {current} but {HISTORY} says {stack[-1]}; "
                "fix the pointer or the history by hand"
            )
        if len(stack) < 2:
            raise RegistryError(f"{current} is the first promoted bundle: nothing to roll back to")
        target = stack[-2]
        _verify(root / BUNDLES / target)
        entry = {"time": _iso(_now()), "action": "rollback", "bundle": target,
                 "previous": current, "forced": False, "reason": reason, "user": _user(),
                 "metrics": None}  # fmt: skip
        switch_current(root, target)
        _append_history(root, entry)
        return entry
