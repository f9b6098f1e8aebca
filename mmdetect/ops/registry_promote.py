"""`mmdetect promote` and `mmdetect rollback` on a registry: the gated switch of `current`,
its history.jsonl entry and report; the store and the pointer are in mmdetect.ops.registry.
"""

from __future__ import annotations

import getpass
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mmdetect.artifacts.bundle_format import SUMS_FILE
from mmdetect.artifacts.registry_history import (
    HISTORY,
    RegistryError,
    _append_history,
    pointer_stack,
    read_history,
)
from mmdetect.artifacts.registry_layout import BUNDLES, REPORTS
from mmdetect.evaluate.config import EvalConfig
from mmdetect.ops.promotion import evaluate_pair, first_promotion_gate, promotion_decision
from mmdetect.ops.registry import (
    _locked,
    _verify,
    bundle_name,
    current_name,
    current_problem,
    stage_bundle,
    switch_current,
)
from mmdetect.ops.registry_names import check_bundle_name


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
