"""Rules in the registry beside the bundles: their own pointer, history, promote and rollback.

```
REGISTRY/
  rules/<name>/rules.yaml + SHA256SUMS   a promoted rules file, byte for byte (never modified)
  rules_current -> rules/<name>          switched atomically, as `current` (registry.switch_current)
  rules_history.jsonl                    one line per promotion and rollback
```

The pointer, the lock, the stale-temporary cleanup and the history lines are registry.py's and
registry_history.py's, called with the rules' names. A promoted file is validated against the
current bundle's taxonomy, copied under a temporary name, checksummed, validated again from the
copy and only then renamed and pointed to; the HTTP service re-verifies it before it switches
(serving/rules_reload.py). `<name>` is `<file stem>-<8 hex of its sha256>`.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from mmdetect.artifacts.bundle_format import SUMS_FILE, write_checksums
from mmdetect.artifacts.registry_history import (
    RegistryError,
    _append_history,
    pointer_stack,
    read_history,
    scan_history,
)
from mmdetect.artifacts.registry_layout import BUNDLES, resolve_current
from mmdetect.artifacts.rules_layout import (
    RULES,
    RULES_CURRENT,
    RULES_FILE,
    RULES_HISTORY,
    load_promoted,
    resolve_rules,
    rules_current_name,
)
from mmdetect.ops.registry import _locked, switch_current
from mmdetect.ops.registry_promote import _iso, _now, _user
from mmdetect.policy.rules import load_rules
from mmdetect.policy.rules_yaml import RulesError

RULES_KEYS = {"time": str, "action": str, "rules": str, "previous": (str, type(None))}


def current_taxonomy(root: Path) -> tuple[str, ...] | None:
    """The current bundle's taxonomy (rules are checked against it), None without a bundle."""
    try:
        pre = json.loads((resolve_current(root) / "preprocess.json").read_text(encoding="utf-8"))
    except (RegistryError, OSError, ValueError):
        return None
    return tuple(pre.get("taxonomy") or ()) or None


def promote_rules(
    root: str | Path, file: str | Path, reason: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """Validate FILE, copy it in, point rules_current at it, record the promotion."""
    root, file = Path(root), Path(file)
    taxonomy = current_taxonomy(root) if root.is_dir() else None
    rules = load_rules(file, taxonomy)
    name = name or rules.name
    if name != Path(name).name or name.startswith(".") or not name:
        raise RegistryError(f"rules name {name!r}: a plain directory name, not hidden")
    raw = file.read_bytes()
    with _locked(root, create=True):
        previous, final = rules_current_name(root), root / RULES / name
        if previous == name:
            raise RegistryError(f"{name} is already the current rules")
        if final.exists():  # promoted before (rolled back from): must be the same file
            if (final / RULES_FILE).read_bytes() != raw:
                raise RegistryError(f"{final} exists with other content; choose another --name")
            load_promoted(final)
        else:
            tmp = root / RULES / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
            try:
                tmp.mkdir(parents=True)
                (tmp / RULES_FILE).write_bytes(raw)
                write_checksums(tmp)
                rules = load_promoted(tmp, taxonomy)  # what is recorded is what was copied
                tmp.rename(final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        entry = {"time": _iso(_now()), "action": "promote", "rules": name, "previous": previous,
                 "source": str(file), "sha256": rules.sha256, "count": len(rules.rules),
                 "ids": list(rules.ids), "warnings": list(rules.warnings), "reason": reason,
                 "user": _user()}  # fmt: skip
        switch_current(root, name, RULES_CURRENT, RULES)
        _append_history(root, entry, RULES_HISTORY)
        return entry


def rules_history(root: Path) -> list[dict[str, Any]]:
    return read_history(root, RULES_HISTORY, RULES_KEYS)


def rollback_rules(root: str | Path, reason: str | None = None) -> dict[str, Any]:
    """Point rules_current back at the rules current before (from rules_history.jsonl)."""
    root = Path(root)
    with _locked(root):
        stack, current = pointer_stack(rules_history(root), "rules"), rules_current_name(root)
        if not stack or current is None:
            raise RegistryError(f"{root}: no rules promoted: nothing to roll back")
        if stack[-1] != current:
            raise RegistryError(f"{root}: rules_current points to {current} but {RULES_HISTORY} "
                                f"says {stack[-1]}; fix the pointer or the history by hand")  # fmt: skip
        if len(stack) < 2:
            raise RegistryError(f"{current} are the first promoted rules: nothing to roll back "
                                "to (promote a file with `rules: []` to serve none)")  # fmt: skip
        target = stack[-2]
        load_promoted(root / RULES / target)
        entry = {"time": _iso(_now()), "action": "rollback", "rules": target,
                 "previous": current, "reason": reason, "user": _user()}  # fmt: skip
        switch_current(root, target, RULES_CURRENT, RULES)
        _append_history(root, entry, RULES_HISTORY)
        return entry


def rules_status(root: Path) -> dict[str, Any]:
    """Current rules (verified), history and damaged lines, for `rules show`."""
    entries, problems = scan_history(root, RULES_HISTORY, RULES_KEYS)
    current, problem, rules = rules_current_name(root), None, None
    try:
        where = resolve_rules(root)
        rules = where and load_promoted(where, current_taxonomy(root))
    except (RegistryError, RulesError) as exc:
        problem = str(exc)
    return {"current": current, "problem": problem, "rules": rules, "history": entries,
            "history_problems": problems, "bundles": (root / BUNDLES).is_dir()}  # fmt: skip


__all__ = ["RULES", "RULES_CURRENT", "RULES_FILE", "RULES_HISTORY", "SUMS_FILE", "load_promoted",
           "promote_rules", "resolve_rules", "rollback_rules", "rules_status"]  # fmt: skip
