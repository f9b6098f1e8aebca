"""`mmdetect promote`, `mmdetect rollback`, `mmdetect registry`: the command line of registry.py."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmdetect.artifacts.bundle_format import BundleError
from mmdetect.artifacts.registry_history import read_history, scan_history
from mmdetect.artifacts.registry_layout import BUNDLES
from mmdetect.common.cliargs import non_negative_int, positive_int
from mmdetect.evaluate.config import EvaluationError, load_eval_config
from mmdetect.ops.promotion import PromotionError, _f
from mmdetect.ops.registry import (
    RegistryError,
    current_name,
    current_problem,
    open_registry,
    stale_temporaries,
)
from mmdetect.ops.registry_promote import promote, rollback


def _run(fn, *args, **kw) -> Any:
    try:
        return fn(*args, **kw)
    except (RegistryError, PromotionError, EvaluationError, BundleError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def promote_main(argv: Sequence[str] | None = None) -> int:
    """`mmdetect promote --registry DIR --bundle NEW --on SNAPSHOT [--force --reason TEXT]`."""
    p = argparse.ArgumentParser(prog="mmdetect promote", description=promote.__doc__.split("\n")[0])
    p.add_argument("--registry", type=Path, required=True)
    p.add_argument("--bundle", type=Path, help="exported bundle directory to promote")
    p.add_argument("--on", type=Path, help="labeled snapshot to compare champion and challenger on")
    p.add_argument("--config", type=Path, help="configs/evaluate/*.yaml (default: built-in)")
    p.add_argument("--name", type=_bundle_name,
                   help="name under bundles/: A-Z a-z 0-9 . _ - (default: <dir>-<checksum prefix>)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="promote even if the evaluation refuses")
    p.add_argument("--reason", help="why (required with --force; recorded)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--num-workers", type=non_negative_int, default=0)
    p.add_argument("--list", action="store_true", help="print the current bundle and history")
    args = p.parse_args(argv)
    if args.list:
        return registry_main(["--registry", str(args.registry)])
    if args.bundle is None or args.on is None:
        p.error("--bundle and --on are required (or --list)")
    cfg = _run(load_eval_config, args.config)
    entry = cfg and _run(promote, args.registry, args.bundle, args.on, cfg, args.force,
                         args.reason, args.name, args.batch_size, args.num_workers)  # fmt: skip
    if entry is None:
        return 1
    m, reasons = entry["metrics"], entry["decision"]["reasons"]
    if m:
        print(f"champion {entry['previous']} vs challenger {entry['bundle']} on {args.on}: "
              f"{m['verdict']}; macro AP {_f(m['champion_macro_ap'])} -> "
              f"{_f(m['challenger_macro_ap'])} ({_f(m['delta'], True)})")  # fmt: skip
        print(f"report: {args.registry / entry['report']}")
    for name, g in (entry.get("gates") or {}).items():
        print(f"  gate {name}: {'passed' if g['passed'] else 'FAILED'}")
    if entry["action"] == "refuse":
        print(f"REFUSED: {entry['bundle']} is not promoted; current stays {entry['previous']}:")
        print("\n".join(f"  - {r}" for r in reasons))
        print("(to promote anyway: --force --reason TEXT; recorded in history)")
        return 1
    if entry["forced"] and not entry["decision"]["accepted"]:
        print("FORCED despite:\n" + "\n".join(f"  - {r}" for r in reasons))
    elif reasons:
        print(reasons[0])
    print(f"promoted {entry['bundle']} (previous: {entry['previous']}); "
          f"current -> {BUNDLES}/{entry['bundle']}")  # fmt: skip
    return 0


def rollback_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mmdetect rollback", description=rollback.__doc__)
    p.add_argument("--registry", type=Path, required=True)
    p.add_argument("--reason", help="recorded in history")
    args = p.parse_args(argv)
    entry = _run(rollback, args.registry, args.reason)
    if entry is None:
        return 1
    print(f"rolled back: current -> {BUNDLES}/{entry['bundle']} (was {entry['previous']})")
    return 0


def registry_main(argv: Sequence[str] | None = None) -> int:
    """Print the current bundle and the history; exit 1 if either is damaged."""
    p = argparse.ArgumentParser(prog="mmdetect registry", description="Current bundle, history.")
    p.add_argument("--registry", type=Path, required=True)
    p.add_argument("--json", action="store_true", help="print history.jsonl entries as JSON")
    args = p.parse_args(argv)
    scanned = _run(open_registry, args.registry) and _run(scan_history, args.registry)
    if scanned is None:
        return 1
    entries, problems = scanned
    broken = current_problem(args.registry)
    if args.json:
        doc = {"current": current_name(args.registry), "current_problem": broken,
               "history": entries, "history_problems": problems}  # fmt: skip
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        print(format_history(args.registry, entries))
    for msg in [broken] if broken else []:
        print(f"error: {msg}", file=sys.stderr)
    if problems:
        print(f"error: {len(problems)} damaged history lines skipped above:", file=sys.stderr)
        print("\n".join(f"  {m}" for m in problems[:5]), file=sys.stderr)
    for tmp in stale_temporaries(args.registry):
        print(f"note: {tmp} was left by a killed promote; the next promote removes it",
              file=sys.stderr)  # fmt: skip
    return 1 if broken or problems else 0


def format_history(root: str | Path, entries: Sequence[Mapping[str, Any]] | None = None) -> str:
    root = Path(root)
    lines = [f"registry {root}", f"current: {current_name(root) or '(none)'}"]
    for e in read_history(root) if entries is None else entries:
        m = e.get("metrics") or {}
        fig = ""
        if m:
            ci = m["ci"] and f" CI {m['ci'][0]:+.4f}..{m['ci'][1]:+.4f}"
            fig = (f" macro AP {_f(m['champion_macro_ap'])} -> {_f(m['challenger_macro_ap'])}"
                   f" ({_f(m['delta'], True)}{ci or ''}, {m['verdict']})")  # fmt: skip
        forced = " FORCED" if e.get("forced") else ""
        why = f" reason: {e['reason']}" if e.get("reason") else ""
        lines.append(
            f"{e['time']} {e['action']:<8} {e['bundle']} (previous {e['previous']}){fig}"
            f"{forced}{why} [{e.get('user')}]"
        )
    return "\n".join(lines)


def _bundle_name(text: str) -> str:
    """argparse type of --name (registry_names.check_bundle_name)."""
    from mmdetect.ops.registry_names import check_bundle_name

    try:
        return check_bundle_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
