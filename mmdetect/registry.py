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

import argparse
import contextlib
import fcntl
import getpass
import hashlib
import json
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mmdetect.bundle import PREPROCESS_FILE, SUMS_FILE, BundleError, read_json, verify_checksums
from mmdetect.cliutil import non_negative_int, positive_int
from mmdetect.evaluate.config import EvalConfig, EvaluationError, load_eval_config
from mmdetect.outputs import is_registry

log = logging.getLogger(__name__)

BUNDLES, CURRENT, HISTORY, REPORTS, LOCK = "bundles", "current", "history.jsonl", "reports", ".lock"


class RegistryError(RuntimeError):
    """A registry operation that cannot proceed, worded for the person who ran it."""


# ---- the decision --------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reasons: tuple[str, ...]  # why not, one line each; empty when accepted


def promotion_decision(gates: Mapping[str, Any], cfg: EvalConfig | None = None) -> Decision:
    """Accept when every gate passed; the reasons are the failed gates' lines."""
    reasons = [g["reason"] for g in gates.values() if not g["passed"]]
    return Decision(not reasons, tuple(reasons))


def promotion_gates(
    result: Mapping[str, Any],
    doc: Mapping[str, Any],
    base: Sequence[Any],
    records: Sequence[Any],
    cfg: EvalConfig,
) -> dict[str, dict[str, Any]]:
    """Every promotion gate with its figures and a `reason` line (docs/operating-points.md):

    * operating_point: the challenger's thresholds are fitted under a policy (certified hides
      are checked when the bundle loads);
    * review_load: its realised review rate on the snapshot <= budget x review_tolerance;
    * false_hides: it does not hide significantly more clean listings than the champion (exact
      one-sided McNemar test on the shared clean listings, p < 0.05);
    * macro_ap: macro AP not significantly worse (paired-bootstrap CI entirely below 0);
    * class_ap: no class's AP drop significantly beyond class_margin (CI entirely below -margin).
    """
    comparison, o = result["comparison"], result["operating"]
    policy = doc.get("policy") or {}
    gates: dict[str, dict[str, Any]] = {}
    fitted = bool(doc.get("fitted"))
    gates["operating_point"] = {
        "passed": fitted,
        "fitted": fitted,
        "certified_classes": [c for c, v in doc["classes"].items() if v.get("certified")],
        "reason": "thresholds not fitted (exported without --thresholds): "
        "fit with `mmdetect thresholds fit` and re-export",
    }
    budget, tol = doc["review"].get("budget"), float(policy.get("review_tolerance", 1.5))
    rate = o["review_rate"]["value"]
    ok = bool(budget is not None and rate is not None and rate <= budget * tol)
    gates["review_load"] = {
        "passed": ok, "review_rate": o["review_rate"], "budget": budget, "tolerance": tol,
        "reason": f"review load {_pct(rate)} of the snapshot exceeds the budget "
        f"{_pct(budget)} x {tol:g}",
    }  # fmt: skip
    gates["false_hides"] = false_hide_gate(base, records)
    m = comparison["bootstrap"]["macro_average_precision"]
    chal_ap = comparison["challenger"]["metrics"]["macro"]["average_precision"]
    base_ap = comparison["baseline"]["metrics"]["macro"]["average_precision"]
    gates["macro_ap"] = {
        "passed": comparison["verdict"] != "worse", **comparison_figures(comparison),
        "reason": f"macro AP significantly worse: {_f(base_ap)} -> {_f(chal_ap)} "
        f"({_f(m['delta'], True)}, 95% CI {_f(m['ci_low'], True)} .. {_f(m['ci_high'], True)})",
    }  # fmt: skip
    worse = list(comparison["classes_worse_than_margin"])
    boot = comparison["bootstrap"]["classes"]
    gates["class_ap"] = {
        "passed": not worse, "class_margin": cfg.class_margin, "classes": worse,
        "reason": "; ".join(
            f"{c}: AP drop {_f(boot[c]['delta'], True)} (95% CI {_f(boot[c]['ci_low'], True)} .. "
            f"{_f(boot[c]['ci_high'], True)}) significantly beyond the margin {cfg.class_margin:g}"
            for c in worse
        ),
    }  # fmt: skip
    return gates


def false_hide_gate(base: Sequence[Any], records: Sequence[Any]) -> dict[str, Any]:
    """Exact one-sided McNemar test: on clean listings both scored, does the challenger hide
    significantly more than the champion? (b: only the challenger hides, c: only the champion)."""
    from scipy.stats import binomtest

    hidden_by_base = {r.id: r.decision == "hide" for r in base}
    b = c = n_clean = 0
    for r in records:
        if r.labels is None or r.labels or r.id not in hidden_by_base:
            continue
        n_clean += 1
        mine, theirs = r.decision == "hide", hidden_by_base[r.id]
        b += mine and not theirs
        c += theirs and not mine
    p = binomtest(b, b + c, 0.5, alternative="greater").pvalue if b + c else 1.0
    return {
        "passed": bool(p >= 0.05), "clean_listings": n_clean, "only_challenger_hides": b,
        "only_champion_hides": c, "p_value": float(p),
        "reason": f"hides significantly more clean listings than the champion ({b} vs {c} of "
        f"{n_clean}, one-sided McNemar p = {p:.3g})",
    }  # fmt: skip


def first_promotion_gate(bundle: Path) -> dict[str, Any]:
    """The operating-point gate alone (nothing to compare with): thresholds valid and fitted."""
    from mmdetect.bundle import THRESHOLDS_FILE, check_thresholds

    doc = read_json(bundle / THRESHOLDS_FILE)
    check_thresholds(doc, read_json(bundle / PREPROCESS_FILE)["taxonomy"], str(bundle))
    fitted = bool(doc.get("fitted"))
    return {
        "passed": fitted, "fitted": fitted,
        "certified_classes": [c for c, v in doc["classes"].items() if v.get("certified")],
        "reason": "thresholds not fitted (exported without --thresholds): "
        "fit with `mmdetect thresholds fit` and re-export",
    }  # fmt: skip


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _f(x: float | None, sign: bool = False) -> str:
    return "n/a" if x is None else f"{x:+.4f}" if sign else f"{x:.4f}"


def comparison_figures(comparison: Mapping[str, Any]) -> dict[str, Any]:
    """What history.jsonl keeps of an evaluation: macro AP of both, delta, CI, verdict, classes."""
    m = comparison["bootstrap"]["macro_average_precision"]
    ap = {s: comparison[s]["metrics"] for s in ("baseline", "challenger")}
    return {
        "champion_macro_ap": ap["baseline"]["macro"]["average_precision"],
        "challenger_macro_ap": ap["challenger"]["macro"]["average_precision"],
        "delta": m["delta"],
        "ci": None if m["ci_low"] is None else [m["ci_low"], m["ci_high"]],
        "verdict": comparison["verdict"],
        "class_margin": comparison["class_margin"],
        "classes_worse_than_margin": list(comparison["classes_worse_than_margin"]),
        "n_listings": comparison["n_common"],
        "classes": {
            name: {
                "champion_ap": ap["baseline"]["classes"][name]["average_precision"],
                "challenger_ap": ap["challenger"]["classes"][name]["average_precision"],
                "delta": c["delta"],
                "ci": None if c["ci_low"] is None else [c["ci_low"], c["ci_high"]],
            }
            for name, c in comparison["bootstrap"]["classes"].items()
        },
    }


# ---- the directory -------------------------------------------------------------------------


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


def current_name(root: Path) -> str | None:
    link = root / CURRENT
    return Path(os.readlink(link)).name if link.is_symlink() else None


def current_problem(root: Path) -> str | None:
    """Why `current` cannot be served (missing or damaged bundle, not a link); None if fine."""
    link = root / CURRENT
    if not link.is_symlink():
        return f"{link} is not a symlink" if link.exists() else None
    target = root / BUNDLES / Path(os.readlink(link)).name
    if not target.is_dir():
        return f"{link} points to {os.readlink(link)}, which does not exist"
    try:
        verify_checksums(target)
    except BundleError as exc:
        return f"{link} points to a bundle that does not verify: {exc}"
    return None


HISTORY_KEYS = {"time": str, "action": str, "bundle": str, "previous": (str, type(None))}
ACTIONS = ("promote", "refuse", "rollback")


def _history_entry(raw: bytes, where: str) -> dict[str, Any]:
    """One history.jsonl line, checked; RegistryError naming file:line and what is wrong."""
    try:
        entry = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{where}: damaged line (not UTF-8 JSON: {exc})") from None
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: damaged line (a {type(entry).__name__}, not an object)")
    for key, kind in HISTORY_KEYS.items():
        if not isinstance(entry.get(key), kind):
            raise RegistryError(f"{where}: {key}: missing or of the wrong type")
    if entry["action"] not in ACTIONS:
        raise RegistryError(f"{where}: action: {entry['action']!r} is not one of {ACTIONS}")
    return entry


def scan_history(root: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(valid entries, one message per damaged line naming history.jsonl:line)."""
    path = Path(root) / HISTORY
    entries, problems = [], []
    if not path.exists():
        return entries, problems
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror}") from None
    for lineno, raw in enumerate(data.splitlines(), 1):
        if raw.strip():
            try:
                entries.append(_history_entry(raw, f"{path}:{lineno}"))
            except RegistryError as exc:
                problems.append(str(exc))
    return entries, problems


def read_history(root: str | Path) -> list[dict[str, Any]]:
    """Every entry; RegistryError at the first damaged line (promote and rollback rely on it)."""
    entries, problems = scan_history(root)
    if problems:
        raise RegistryError(f"{problems[0]}; repair or remove that line by hand")
    return entries


def _append_history(root: Path, entry: Mapping[str, Any]) -> None:
    with (root / HISTORY).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


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
    """Staging copies and pointer links a killed promote or rollback left behind."""
    found = [*(root / BUNDLES).glob(".tmp-*"), *root.glob(f".{CURRENT}.tmp-*")]
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


def switch_current(root: Path, name: str) -> None:
    """Point `current` at bundles/<name>: a new symlink renamed over the old one (atomic)."""
    tmp = root / f".{CURRENT}.tmp-{uuid.uuid4().hex[:8]}"
    os.symlink(f"{BUNDLES}/{name}", tmp)
    try:
        os.replace(tmp, root / CURRENT)
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
    return f"{src.resolve().name}-{digest}"


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


def evaluate_pair(
    champion: Path, challenger: Path, snapshot: Path, cfg: EvalConfig, out: Path, source: dict,
    batch_size: int = 64, num_workers: int = 0,
) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """Score both bundles on the snapshot under their own operating points and compare;
    (gates, classes the challenger drops). The report is written to `out`."""
    from mmdetect.evaluate.operating import apply_operating_point
    from mmdetect.evaluate.run import run_evaluation
    from mmdetect.scoring import score_snapshot

    kw = {"batch_size": batch_size, "num_workers": num_workers}
    base, base_tax, _, base_doc = score_snapshot(champion, snapshot, **kw)
    records, taxonomy, snap, doc = score_snapshot(challenger, snapshot, **kw)
    if not snap.labeled:
        raise RegistryError(f"{snapshot}: no labeled listings: promotion needs a labeled snapshot")
    base = apply_operating_point(base, base_doc, base_tax)
    records = apply_operating_point(records, doc, taxonomy)
    result = run_evaluation(records, taxonomy, cfg, out, doc, base, source)
    champion_classes = read_json(champion / PREPROCESS_FILE)["taxonomy"]
    gates = promotion_gates(result, doc, base, records, cfg)
    return gates, [c for c in champion_classes if c not in taxonomy]


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
    if name != Path(name).name or name.startswith("."):
        raise RegistryError(f"bundle name {name!r}: a plain directory name, not hidden")
    with _locked(root, create=True):
        previous, final = current_name(root), root / BUNDLES / name
        broken = current_problem(root)
        if broken:
            raise RegistryError(f"{broken}: no champion to compare with; repair the registry")
        if previous == name:
            raise RegistryError(f"{name} is already the current bundle")
        staged = None
        if final.exists():  # promoted before (e.g. rolled back from): must be the same bundle
            if (final / SUMS_FILE).read_bytes() != (bundle / SUMS_FILE).read_bytes():
                raise RegistryError(f"{final} exists with other content; choose another --name")
            _verify(final)
        else:
            staged = stage_bundle(root, bundle, name)
        try:
            t = _now()
            entry = {"time": _iso(t), "action": "promote", "bundle": name, "previous": previous,
                     "source": str(bundle), "snapshot": str(snapshot), "forced": force,
                     "reason": reason, "user": _user(), "metrics": None, "report": None,
                     "decision": {"accepted": True, "reasons": []}}  # fmt: skip
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


def pointer_stack(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Bundles that were current, oldest first: a promotion pushes, a rollback pops."""
    stack: list[str] = []
    for e in history:
        if e["action"] == "promote":
            stack.append(e["bundle"])
        elif e["action"] == "rollback" and stack:
            stack.pop()
    return stack


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


# ---- command line --------------------------------------------------------------------------


def _run(fn, *args, **kw) -> Any:
    try:
        return fn(*args, **kw)
    except (RegistryError, EvaluationError, BundleError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def promote_main(argv: Sequence[str] | None = None) -> int:
    """`mmdetect promote --registry DIR --bundle NEW --on SNAPSHOT [--force --reason TEXT]`."""
    p = argparse.ArgumentParser(prog="mmdetect promote", description=promote.__doc__.split("\n")[0])
    p.add_argument("--registry", type=Path, required=True)
    p.add_argument("--bundle", type=Path, help="exported bundle directory to promote")
    p.add_argument("--on", type=Path, help="labeled snapshot to compare champion and challenger on")
    p.add_argument("--config", type=Path, help="configs/evaluate/*.yaml (default: built-in)")
    p.add_argument("--name", help="name under bundles/ (default: <dir>-<checksum prefix>)")
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
