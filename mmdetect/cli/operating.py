"""`mmdetect thresholds fit` and `mmdetect evaluate --model`: fitting an operating point, and
judging the one a model serves. Both score a snapshot through mmdetect.serving.scoring (checkpoint or
bundle); fitting and deciding are mmdetect.policy, the report is mmdetect.evaluate.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mmdetect.common.cliargs import non_negative_int, positive_int
from mmdetect.common.inputs_check import check_input_files
from mmdetect.common.outputs import OutputError, atomic_dir, check_output, replaceable_dir
from mmdetect.data.reader import SnapshotError
from mmdetect.data.sampling import SamplingError
from mmdetect.evaluate import EvaluationError, format_console, load_eval_config, run_evaluation
from mmdetect.evaluate.generalisation import format_generalisation, generalisation
from mmdetect.evaluate.metrics import calibration_errors
from mmdetect.evaluate.operating import apply_operating_point
from mmdetect.evaluate.predictions import records_to_arrays
from mmdetect.evaluate.run import write_failure
from mmdetect.evaluate.traffic import sampling_design
from mmdetect.ops.traffic_fit import budget_basis, fit_traffic_lines, traffic_args
from mmdetect.policy import PolicyError, decide, fit_operating_point, load_policy
from mmdetect.policy.design import certification_sample
from mmdetect.policy.io import read_operating_point, write_operating_point
from mmdetect.policy.rules import RuleSet, load_rules

ERRORS = (EvaluationError, SnapshotError, PolicyError, SamplingError, FileNotFoundError,
          OutputError, ValueError)  # fmt: skip
HOW_TO_FIT = (
    "fit one with `mmdetect thresholds fit --model {model} --snapshot CALIBRATION_SNAPSHOT "
    "--out DIR` and pass --thresholds DIR/thresholds.json"
)


def _scoring_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a .ckpt file or an exported bundle directory")
    p.add_argument("--snapshot", type=Path, required=True)
    p.add_argument("--created-from", help="only listings created on or after this ISO date")
    p.add_argument("--created-to", help="only listings created before this ISO date")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--num-workers", type=non_negative_int, default=2)
    p.add_argument("--out", type=Path, required=True)


def check_args(args: argparse.Namespace, *inputs: str | Path | None) -> None:
    """Before any scoring: the period bounds parse, and --out is no input, not inside one, and
    not inside a bundle or a registry (OutputError / ValueError, one line each)."""
    from mmdetect.data.records import parse_date_bound

    parse_date_bound(args.created_from, "--created-from")
    parse_date_bound(args.created_to, "--created-to")
    given = [args.snapshot, args.model, *inputs]
    check_output(args.out, [Path(p) for p in given if p is not None], kind="dir")
    for flag in ("thresholds", "baseline_thresholds", "config", "policy"):
        # a FIFO or /dev/zero would block or fill memory in the YAML / JSON reader
        check_input_files((f"--{flag.replace('_', '-')}", getattr(args, flag, None)), config=True)


def _score(model: str, args: argparse.Namespace, traffic: bool = False):
    """Score --snapshot in its period (or, with `traffic`, --traffic in the traffic period)."""
    from mmdetect.serving.scoring import score_snapshot

    prefix = "traffic_" if traffic else ""
    kw = {"batch_size": args.batch_size, "num_workers": args.num_workers,
          "created_from": getattr(args, f"{prefix}created_from"),
          "created_to": getattr(args, f"{prefix}created_to")}  # fmt: skip
    return score_snapshot(model, args.traffic if traffic else args.snapshot, **kw)


def operating_point_for(
    model: str, served: dict | None, thresholds: Path | None, taxonomy: Sequence[str]
) -> dict[str, Any]:
    """--thresholds if given, else the one the bundle serves; a checkpoint must be given one."""
    if thresholds is not None:
        return read_operating_point(thresholds, taxonomy)
    if served is None:
        raise EvaluationError(
            f"{model}: a checkpoint serves no thresholds; " + HOW_TO_FIT.format(model=model)
        )
    return served


def evaluate_main(argv: Sequence[str]) -> int:
    """`mmdetect evaluate --model CKPT_OR_BUNDLE --snapshot DIR [--thresholds F] --out DIR`."""
    p = argparse.ArgumentParser(
        prog="mmdetect evaluate",
        description="Judge the operating point a model serves on a snapshot (labeled or not): "
        "decisions, hide/review rates against the budget, precision and recall with intervals, "
        "metrics, drift. `--predictions FILE --out DIR` recomputes a report without the model.",
    )
    _scoring_args(p)
    p.add_argument("--thresholds", type=Path, help="operating point (default: the bundle's own)")
    p.add_argument("--baseline", help="the champion (.ckpt or bundle) to compare against")
    p.add_argument("--baseline-thresholds", type=Path, help="the champion's operating point")
    p.add_argument("--config", type=Path, help="configs/evaluate/*.yaml (default: built-in)")
    p.add_argument("--explain-errors", type=non_negative_int, default=0, metavar="N",
                   help="explain up to N false hides and N missed positives per class "
                        "(mmdetect.explain; default 0: off)")  # fmt: skip
    p.add_argument("--rules", type=Path, help="a rules file: rules alone, model alone and both "
                   "at the same review budget, per rule hits and precision (docs/rules.md)")  # fmt: skip
    p.add_argument("--independent", type=Path, action="append", default=[], metavar="DIR",
                   help="an independently written labeled snapshot to score beside --snapshot "
                        "(repeatable): the generalisation table (generalisation.md)")  # fmt: skip
    args = p.parse_args(argv)
    try:
        check_args(args, args.thresholds, args.baseline, args.baseline_thresholds, args.config,
                   args.rules, *args.independent)  # fmt: skip
        replaceable_dir(args.out, "metrics.json")  # the report replaces an earlier one whole
        rules = load_rules(args.rules) if args.rules else None  # before the (long) scoring
        cfg = load_eval_config(args.config)
        records, taxonomy, snap, served = _score(args.model, args)
        doc = operating_point_for(args.model, served, args.thresholds, taxonomy)
        records = apply_operating_point(records, doc, taxonomy)
        baseline = None
        if args.baseline:
            base, base_tax, _, base_served = _score(args.baseline, args)
            if args.baseline_thresholds or base_served:
                base_doc = operating_point_for(
                    args.baseline, base_served, args.baseline_thresholds, base_tax
                )
                base = apply_operating_point(base, base_doc, base_tax)
            baseline = base
        source = {"snapshot": str(args.snapshot), "model": args.model, "baseline": args.baseline,
                  "thresholds": str(args.thresholds or f"{args.model}/thresholds.json"),
                  "created_from": args.created_from, "created_to": args.created_to}  # fmt: skip
        traffic = sampling_design(snap)
        table = _generalisation(args, records, taxonomy, doc) if args.independent else None
        try:  # error cards and the report: staged together, renamed into place whole
            with atomic_dir(args.out) as stage:
                errors = None
                if args.explain_errors:
                    from mmdetect.serving.error_analysis import error_analysis

                    errors = error_analysis(args.model, args.thresholds, records, snap,
                                            taxonomy, stage, args.explain_errors)  # fmt: skip
                result = run_evaluation(records, taxonomy, cfg, stage, doc, baseline, source,
                                        traffic, errors, table, staged=True)  # fmt: skip
                rules_text = rules and evaluate_rules(rules, records, snap, taxonomy, stage)
        except OSError as exc:
            raise EvaluationError(write_failure(args.out, exc)) from None
    except ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_console(result))
    if rules_text:
        print(rules_text)
    if table is not None:
        print(format_generalisation(table))
    if snap.problems.total:
        print(f"skipped while reading the snapshot: {dict(snap.problems.counts)}")
    print(f"report: {args.out / 'report.html'}")
    return 0


def evaluate_rules(
    rules: RuleSet, records: Sequence, snap: Any, taxonomy: Sequence[str], out: Path
) -> str:  # fmt: skip
    """`evaluate --rules`: the comparison table (evaluate/rules_table.py), written beside the
    report as rules.json and rules.md."""
    from mmdetect.evaluate.rules_report import write_rules_report
    from mmdetect.evaluate.rules_table import rules_comparison

    rules.check_taxonomy(taxonomy)
    return write_rules_report(out, rules_comparison(records, snap.listings, rules, taxonomy))


def _generalisation(args: argparse.Namespace, records, taxonomy, doc) -> dict[str, Any]:
    """Each --independent snapshot scored by the same model under the same operating point."""
    from mmdetect.serving.scoring import score_snapshot

    others = []
    for path in args.independent:
        got, tax, _, _ = score_snapshot(args.model, path, args.batch_size, args.num_workers)
        others.append((str(path), apply_operating_point(got, doc, tax)))
    return generalisation((str(args.snapshot), records), others, taxonomy)


def thresholds_main(argv: Sequence[str]) -> int:
    """`mmdetect thresholds fit --model M --snapshot CAL [--policy P] --out DIR`."""
    if not argv or argv[0] != "fit":
        print("usage: mmdetect thresholds fit --model CKPT_OR_BUNDLE --snapshot CAL "
              "[--policy FILE] [--traffic SNAPSHOT] --out DIR", file=sys.stderr)  # fmt: skip
        return 2
    p = argparse.ArgumentParser(
        prog="mmdetect thresholds fit",
        description="Fit calibration, certified auto-hide thresholds and the review threshold "
        "of the policy on a labeled calibration snapshot (the review budget on --traffic scores "
        "when given); write DIR/thresholds.json and a report.",
    )
    _scoring_args(p)
    p.add_argument("--policy", type=Path, help="configs/policy/*.yaml (default: built-in)")
    traffic_args(p)
    args = p.parse_args(argv[1:])
    try:
        check_args(args, args.policy, args.traffic)
        policy = load_policy(args.policy)
        records, taxonomy, snap, _ = _score(args.model, args)
        labeled = [r for r in records if r.labels is not None]
        if not labeled:
            raise EvaluationError(f"{args.snapshot}: no labeled listings in the period to fit on")
        y, raw = records_to_arrays(labeled, taxonomy)
        listings = [x for x in snap.listings if x.labels is not None]
        inclusion, design = sampling_design(snap, listings)
        rows, hide_w, certification = certification_sample(
            inclusion, y.any(axis=1), args.certify_on, policy.min_positives
        )
        certification["design"] = design
        budget_on = budget_basis(args, taxonomy, labeled, inclusion, design, _score)
        source = {"snapshot": str(args.snapshot), "model": str(args.model),
                  "created_from": args.created_from, "created_to": args.created_to,
                  "listings": len(records), "labeled": len(labeled),
                  "fitted_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
        doc = fit_operating_point(
            y, raw, taxonomy, policy, budget_on.probs, budget_on.weights, budget_on.per_day,
            source, hide_rows=rows, hide_weights=hide_w,
        )  # fmt: skip
        doc["certification"] = certification
        doc["review"]["traffic"] = budget_on.record
        cal = decide(doc, raw, taxonomy).calibrated
        doc["fit_report"] = {
            "ece_in_sample": calibration_errors(y, raw, cal, taxonomy, 10),
        }
        path = write_operating_point(args.out / "thresholds.json", doc)
    except ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_fit(doc, taxonomy))
    print(f"operating point written to {path}")
    return 0


def format_fit(doc: dict[str, Any], taxonomy: Sequence[str]) -> str:
    """The fitted operating point in a few lines a reviewer lead can read."""
    r, ece = doc["review"], doc["fit_report"]["ece_in_sample"]
    cal = doc["calibration"]
    lines = [
        f"{'class':<17} {'severity':>8} {'calib':>8} {'ECE':>6} {'ECEcal':>6} {'hide>=':>7}  note"
    ]
    for c in taxonomy:
        k = cal["classes"][c]
        t = (f"T={k['temperature']:.2f}" if "temperature" in k
             else f"{k['slope']:.2f},{k['intercept']:+.1f}" if "slope" in k else "isotonic")  # fmt: skip
        hide = "-" if doc["classes"][c]["hide"] is None else f"{doc['classes'][c]['hide']:.4f}"
        lines.append(
            f"{c:<17} {doc['severity'][c]:>8.2f} {t:>8} {_f(ece['raw']['classes'][c]):>6} "
            f"{_f(ece['calibrated']['classes'][c]):>6} {hide:>7}  {doc['classes'][c]['note']}"
        )
    lines.append(
        f"review when priority >= {r['threshold']:.4f}: {100 * r['fitted_rate']:.1f}% of "
        f"{r['listings']} listings (budget {100 * r['budget']:.1f}%), hidden "
        f"{100 * r['fitted_hide_rate']:.1f}% (in-sample ECE macro {_f(ece['raw']['macro'])} -> "
        f"{_f(ece['calibrated']['macro'])})"
    )
    lines += fit_traffic_lines(doc)
    if r.get("note"):
        lines.append(f"warning: {r['note']}")
    return "\n".join(lines)


def _f(x: float | None) -> str:
    return "n/a" if x is None or np.isnan(x) else f"{x:.3f}"
