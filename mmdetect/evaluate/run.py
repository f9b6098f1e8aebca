"""Entry points: `evaluate_records` (pure), `run_evaluation` (writes files), and the
`mmdetect evaluate --predictions FILE ...` front that recomputes everything without the model.

Evaluation judges the operating point a model SERVES (its thresholds.json): it never fits one.
Fitting is `mmdetect thresholds fit` (mmdetect/policy).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmdetect.common.inputs_check import InputFileError, check_input_files
from mmdetect.common.outputs import (
    OutputError,
    atomic_dir,
    atomic_write_text,
    check_output,
    replaceable_dir,
)
from mmdetect.evaluate.compare import compare
from mmdetect.evaluate.config import EvalConfig, EvaluationError, load_eval_config
from mmdetect.evaluate.metrics import calibration_errors, summarize_metrics
from mmdetect.evaluate.operating import apply_operating_point, flagged, operating_figures
from mmdetect.evaluate.predictions import (
    PredictionRecord,
    check_labels,
    read_predictions,
    records_to_arrays,
    write_predictions,
)
from mmdetect.evaluate.report import format_console, write_report
from mmdetect.evaluate.slices import drift_slices
from mmdetect.evaluate.traffic import SAMPLING_FILE, read_sampling, traffic_figures, write_sampling

# (inclusion probability per record, NaN = unknown; the design) from traffic.sampling_design
Traffic = tuple[np.ndarray, Mapping[str, Any]]

SCHEMA_VERSION = 2


def operating_point_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What metrics.json keeps of the served thresholds.json (the whole file is beside it)."""
    return {
        "fitted": bool(doc.get("fitted")),
        "note": doc.get("note"),
        "source": doc.get("source"),
        "policy": doc.get("policy"),
        "calibration": doc["calibration"]["method"],
        "review_threshold": doc["review"]["threshold"],
        "review_budget": doc["review"].get("budget"),
        "classes": {
            c: {k: v.get(k) for k in ("hide", "certified", "note")}
            for c, v in doc["classes"].items()
        },
    }


def evaluate_records(
    records: Sequence[PredictionRecord],
    taxonomy: Sequence[str],
    cfg: EvalConfig,
    operating_point: Mapping[str, Any],
    baseline: Sequence[PredictionRecord] | None = None,
    source: Mapping[str, Any] | None = None,
    traffic: Traffic | None = None,
) -> dict[str, Any]:
    """The whole evaluation as a JSON-serialisable dict (the content of metrics.json).

    `records` carry decisions (apply_operating_point). Figures that need labels are computed on
    the labeled records; an unlabeled snapshot still gets hide/review rates and hidden listings.
    `traffic`: the snapshot's sampling design, for the figures expected on traffic
    (`operating.traffic`); without it they are marked unknown.
    """
    if not taxonomy:
        raise EvaluationError("empty taxonomy: nothing to evaluate")
    if not records:
        raise EvaluationError("no listings to evaluate (an empty snapshot or period?)")
    labeled = [r for r in records if r.labels is not None]
    src = {"snapshot": None, "model": None, **(source or {})}
    src = {k: str(v) if isinstance(v, Path) else v for k, v in src.items()}
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "source": src,
        "config": cfg.to_dict(),
        "taxonomy": list(taxonomy),
        "n_listings": len(records),
        "n_labeled": len(labeled),
        "operating_point": operating_point_summary(operating_point),
        "operating": operating_figures(records, taxonomy, operating_point),
        "metrics": None,
        "calibration": None,
        "slices": None,
        "comparison": None,
    }
    probs, design = traffic if traffic is not None else (None, None)
    result["operating"]["traffic"] = traffic_figures(
        records, taxonomy, operating_point, probs, design
    )
    if not labeled:
        return result
    check_labels(labeled, taxonomy)
    y_true, y_score = records_to_arrays(labeled, taxonomy)
    raw = np.array([[(r.model_scores or r.scores)[c] for c in taxonomy] for r in labeled])
    result["metrics"] = summarize_metrics(y_true, y_score, taxonomy, cfg)
    result["calibration"] = calibration_errors(
        y_true, raw.reshape(y_true.shape), y_score, taxonomy, cfg.ece_bins
    )
    flags = flagged(labeled, taxonomy)
    result["slices"] = drift_slices(labeled, y_true, y_score, flags, taxonomy, cfg)
    if baseline is not None:
        result["comparison"] = compare(baseline, labeled, taxonomy, cfg)
    return result


def run_evaluation(
    records: Sequence[PredictionRecord],
    taxonomy: Sequence[str],
    cfg: EvalConfig,
    out_dir: str | Path,
    operating_point: Mapping[str, Any],
    baseline: Sequence[PredictionRecord] | None = None,
    source: Mapping[str, Any] | None = None,
    traffic: Traffic | None = None,
    error_analysis: Mapping[str, Any] | None = None,
    generalisation: Mapping[str, Any] | None = None,
    staged: bool = False,
) -> dict[str, Any]:
    """`evaluate_records`, then write predictions.jsonl (+ baseline_predictions.jsonl), the
    operating point that was applied (thresholds.json) and the report files into `out_dir`,
    staged beside it and renamed into place whole (outputs.atomic_dir); `staged`: `out_dir` is
    already such a staging directory (the caller renames it). `error_analysis`: the errors
    explained (mmdetect.serving.error_analysis), kept as given; `generalisation`:
    evaluate.generalisation's table, kept and written as generalisation.md."""
    result = evaluate_records(records, taxonomy, cfg, operating_point, baseline, source, traffic)
    if error_analysis is not None:
        result["error_analysis"] = dict(error_analysis)
    out = Path(out_dir)
    if generalisation is not None:
        result["generalisation"] = dict(generalisation)
    try:
        with contextlib.nullcontext(out) if staged else atomic_dir(out) as stage:
            if generalisation is not None:
                from mmdetect.evaluate.generalisation import format_generalisation

                atomic_write_text(
                    stage / "generalisation.md", format_generalisation(generalisation)
                )
            write_predictions(stage / "predictions.jsonl", records)
            if traffic is not None:
                write_sampling(stage, records, *traffic)
            if baseline is not None:
                write_predictions(stage / "baseline_predictions.jsonl", baseline)
            write_report(stage, result, records, operating_point, baseline)
    except OSError as exc:  # a full disk, an unwritable directory: one line, nothing half-written
        if staged:
            raise
        raise EvaluationError(write_failure(out, exc)) from None
    return result


def write_failure(out: Path, exc: OSError) -> str:
    """One line for an output that could not be written (the staged directory is gone)."""
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{out}: cannot write the report: {exc.strerror or exc}{where}; nothing was written"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmdetect evaluate",
        description="Recompute the report from saved predictions (their decisions, or those of "
        "--thresholds applied to their model scores).",
    )
    p.add_argument("--predictions", type=Path, required=True, help="predictions.jsonl to score")
    p.add_argument("--baseline-predictions", type=Path, help="champion predictions to compare")
    p.add_argument("--thresholds", type=Path, help="an operating point to apply instead")
    p.add_argument("--config", type=Path, help="configs/evaluate/*.yaml (default: built-in)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--source-model", help="model name recorded in the report")
    p.add_argument("--source-snapshot", help="snapshot name recorded in the report")
    return p


def _model_scores(records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
    """Records whose `scores` are the model's own probabilities again (for re-application)."""
    from dataclasses import replace

    return [replace(r, scores=r.model_scores or r.scores) for r in records]


def evaluate_predictions_main(argv: Sequence[str] | None = None) -> int:
    """`mmdetect evaluate --predictions FILE [--thresholds FILE] --out DIR`."""
    from mmdetect.policy import PolicyError, check_operating_point
    from mmdetect.policy.io import read_operating_point

    args = _parser().parse_args(argv)
    try:
        check_input_files(("--predictions", args.predictions),
                          ("--baseline-predictions", args.baseline_predictions))  # fmt: skip
        check_input_files(("--thresholds", args.thresholds), ("--config", args.config),
                          config=True)  # fmt: skip
        given = [args.predictions, args.baseline_predictions, args.thresholds, args.config]
        check_output(args.out, [p for p in given if p is not None], kind="dir")
        replaceable_dir(args.out, "metrics.json")
        cfg = load_eval_config(args.config)
        records, taxonomy = read_predictions(args.predictions)
        baseline = None
        if args.baseline_predictions is not None:
            baseline, _ = read_predictions(args.baseline_predictions)
        if args.thresholds is not None:
            doc = read_operating_point(args.thresholds, taxonomy)
            records = apply_operating_point(_model_scores(records), doc, taxonomy)
        else:
            doc = _embedded_operating_point(args.predictions)
            check_operating_point(doc, taxonomy, str(args.predictions.parent / "thresholds.json"))
            check_stored_decisions(records, doc, taxonomy, args.predictions)
        traffic = read_sampling(args.predictions.parent / SAMPLING_FILE, records)
        source = {
            "snapshot": args.source_snapshot,
            "model": args.source_model,
            "predictions": str(args.predictions),
            "baseline_predictions": args.baseline_predictions and str(args.baseline_predictions),
            "thresholds": str(args.thresholds) if args.thresholds else None,
        }
        result = run_evaluation(records, taxonomy, cfg, args.out, doc, baseline, source, traffic)
    except (EvaluationError, PolicyError, InputFileError, OutputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_console(result))
    print(f"report: {args.out / 'report.html'}")
    return 0


def check_stored_decisions(
    records: Sequence[PredictionRecord], doc: Mapping[str, Any], taxonomy: Sequence[str],
    path: Path,
) -> None:  # fmt: skip
    """The decisions stored in predictions.jsonl must be those its operating point makes from
    the stored model scores: a report never rests on decisions edited or made elsewhere."""
    if any(r.decision is None or r.model_scores is None for r in records):
        return  # tier_codes names the rows without decisions
    again = apply_operating_point(_model_scores(records), doc, taxonomy)
    differ = [r.id for r, a in zip(records, again, strict=True)
              if (r.decision, r.decisions) != (a.decision, a.decisions)]  # fmt: skip
    if differ:
        raise EvaluationError(
            f"{path}: {len(differ)} stored decisions differ from those of the thresholds.json "
            f"beside it (e.g. {differ[0]}): edited, or made under another operating point; "
            "pass --thresholds FILE to apply one to the model scores"
        )


def _embedded_operating_point(predictions: Path) -> dict[str, Any]:
    """The thresholds.json that evaluate wrote beside predictions.jsonl (the one applied)."""
    from mmdetect.policy.io import read_json_doc

    path = predictions.parent / "thresholds.json"
    if not path.is_file():
        raise EvaluationError(
            f"{path}: not found; the decisions in {predictions} need the operating point they "
            "were made under: pass --thresholds FILE"
        )
    return read_json_doc(path)
