"""`mmdetect rules check|test|promote|rollback|show`: rules files beside the model (docs/rules.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mmdetect.common.cliargs import positive_int

USAGE = """usage: mmdetect rules check FILE [--bundle DIR]
       mmdetect rules test FILE --snapshot DIR (--model BUNDLE | --registry DIR) [--against FILE]
       mmdetect rules promote --registry DIR --file FILE [--reason TEXT] [--name NAME]
       mmdetect rules rollback --registry DIR [--reason TEXT]
       mmdetect rules show --registry DIR [--json]"""


def _errors() -> tuple[type[Exception], ...]:
    from mmdetect.artifacts.bundle_format import BundleError
    from mmdetect.artifacts.registry_history import RegistryError
    from mmdetect.common.outputs import OutputError
    from mmdetect.data.reader import SnapshotError
    from mmdetect.evaluate.config import EvaluationError
    from mmdetect.policy.config import PolicyError

    return (PolicyError, RegistryError, BundleError, SnapshotError, EvaluationError, OutputError,
            OSError, ValueError)  # fmt: skip


def check_main(argv: Sequence[str]) -> int:
    from mmdetect.policy.rules import load_rules

    p = argparse.ArgumentParser(prog="mmdetect rules check", description="Validate a rules file.")
    p.add_argument("file", type=Path)
    p.add_argument("--bundle", type=Path, help="check categories against this bundle's taxonomy")
    args = p.parse_args(argv)
    taxonomy = None
    if args.bundle:
        pre = json.loads((args.bundle / "preprocess.json").read_text(encoding="utf-8"))
        taxonomy = pre["taxonomy"]
    rules = load_rules(args.file, taxonomy)
    print(f"{args.file}: {len(rules.rules)} rules, valid ({rules.name})")
    for r in rules.rules:
        until = f", expires {r.expires:%Y-%m-%d %H:%M} UTC" if r.expires else ""
        print(f"  {r.id}: {r.action} {r.category} (owner {r.owner}{until}) at {r.where}")
    print("\n".join(f"warning: {w}" for w in rules.warnings), end="\n" if rules.warnings else "")
    return 0


def test_main(argv: Sequence[str]) -> int:
    """Dry run: score the snapshot once, decide under the old rules and the new, show changes."""
    from mmdetect.artifacts.registry_layout import resolve_current
    from mmdetect.artifacts.rules_layout import load_promoted, resolve_rules
    from mmdetect.common.outputs import atomic_write_text, check_output
    from mmdetect.evaluate.operating import apply_operating_point
    from mmdetect.evaluate.rules_diff import format_diff, rules_diff
    from mmdetect.policy.rules import EMPTY, load_rules
    from mmdetect.serving.scoring import score_snapshot

    p = argparse.ArgumentParser(prog="mmdetect rules test", description=test_main.__doc__)
    p.add_argument("file", type=Path, help="the changed rules file")
    p.add_argument("--snapshot", type=Path, required=True)
    p.add_argument("--model", type=Path, help="bundle (default: the registry's current bundle)")
    p.add_argument("--registry", type=Path, help="compare with its current rules and bundle")
    p.add_argument("--against", type=Path, help="rules file to compare with (default: the "
                   "registry's current rules, else no rules)")  # fmt: skip
    p.add_argument("--created-from", help="only listings created on or after this ISO date")
    p.add_argument("--created-to", help="only listings created before this ISO date")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--limit", type=int, default=20, help="changed listings printed")
    p.add_argument("--out", type=Path, help="directory for changes.json (every changed listing)")
    args = p.parse_args(argv)
    if args.model is None and args.registry is None:
        p.error("give --model BUNDLE or --registry DIR")
    new = load_rules(args.file)  # before scoring: a bad file costs no model time
    old = load_rules(args.against) if args.against else EMPTY
    if args.against is None and args.registry is not None:
        where = resolve_rules(args.registry)
        old = load_promoted(where) if where else EMPTY
    if args.out:
        given = [args.file, args.snapshot, *(x for x in (args.model, args.against) if x)]
        check_output(args.out, given, kind="dir")
    model = args.model or resolve_current(args.registry)
    records, taxonomy, snap, served = score_snapshot(
        model, args.snapshot, args.batch_size, 0, args.created_from, args.created_to)  # fmt: skip
    if served is None:
        raise ValueError(f"{model}: a checkpoint serves no thresholds; give an exported bundle")
    for rules in (old, new):
        rules.check_taxonomy(taxonomy)
    records = apply_operating_point(records, served, taxonomy)
    diff = rules_diff(records, snap.listings, old, new, taxonomy)
    print(format_diff(diff, args.limit))
    for w in new.warnings:
        print(f"warning: {w}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / "changes.json", json.dumps(diff, ensure_ascii=False, indent=2))
        print(f"changes written to {args.out / 'changes.json'}")
    return 0


def promote_main(argv: Sequence[str]) -> int:
    from mmdetect.ops.registry_rules import promote_rules

    p = argparse.ArgumentParser(prog="mmdetect rules promote", description=promote_rules.__doc__)
    p.add_argument("--registry", type=Path, required=True)
    p.add_argument("--file", type=Path, required=True)
    p.add_argument("--reason", help="why (recorded in rules_history.jsonl)")
    p.add_argument("--name", help="name under rules/ (default: <file stem>-<sha256 prefix>)")
    args = p.parse_args(argv)
    e = promote_rules(args.registry, args.file, args.reason, args.name)
    print(f"promoted rules {e['rules']} ({e['count']} rules; previous: {e['previous']}); "
          f"rules_current -> rules/{e['rules']}")  # fmt: skip
    print("\n".join(f"warning: {w}" for w in e["warnings"]), end="\n" if e["warnings"] else "")
    return 0


def rollback_main(argv: Sequence[str]) -> int:
    from mmdetect.ops.registry_rules import rollback_rules

    p = argparse.ArgumentParser(prog="mmdetect rules rollback", description=rollback_rules.__doc__)
    p.add_argument("--registry", type=Path, required=True)
    p.add_argument("--reason", help="recorded in rules_history.jsonl")
    args = p.parse_args(argv)
    e = rollback_rules(args.registry, args.reason)
    print(f"rolled back rules: rules_current -> rules/{e['rules']} (was {e['previous']})")
    return 0


def show_main(argv: Sequence[str]) -> int:
    from mmdetect.ops.registry import open_registry
    from mmdetect.ops.registry_rules import rules_status

    p = argparse.ArgumentParser(prog="mmdetect rules show", description="Current rules, history.")
    p.add_argument("--registry", type=Path, required=True)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    s = rules_status(open_registry(args.registry))
    rules = s.pop("rules")
    if args.json:
        s["ids"] = list(rules.ids) if rules else []
        print(json.dumps(s, ensure_ascii=False, indent=2))
    else:
        print(f"registry {args.registry}\nrules current: {s['current'] or '(none)'}")
        for r in rules.rules if rules else ():
            print(f"  {r.id}: {r.action} {r.category} (owner {r.owner})")
        for e in s["history"]:
            why = f" reason: {e['reason']}" if e.get("reason") else ""
            print(f"{e['time']} {e['action']:<8} {e['rules']} (previous {e['previous']}){why} "
                  f"[{e.get('user')}]")  # fmt: skip
    for msg in [s["problem"], *s["history_problems"]]:
        if msg:
            print(f"error: {msg}", file=sys.stderr)
    return 1 if s["problem"] or s["history_problems"] else 0


VERBS = {"check": check_main, "test": test_main, "promote": promote_main,
         "rollback": rollback_main, "show": show_main}  # fmt: skip


def rules_main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in VERBS:
        print(USAGE, file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        return VERBS[argv[0]](argv[1:])
    except _errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
