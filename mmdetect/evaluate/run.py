"""Entry points: `evaluate_records` (pure), `run_evaluation` (writes files), and the
`mmdetect evaluate --predictions FILE ...` front that recomputes everything without the model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmdetect.evaluate.compare import compare
from mmdetect.evaluate.config import EvalConfig, EvaluationError, load_eval_config
from mmdetect.evaluate.metrics import summarize_metrics
from mmdetect.evaluate.predictions import (
    PredictionRecord,
    check_labels,
    read_predictions,
    records_to_arrays,
    write_predictions,
)
from mmdetect.evaluate.report import format_console, write_report
from mmdetect.evaluate.slices import drift_slices
from mmdetect.evaluate.thresholds import decision_table, thresholds_document

SCHEMA_VERSION = 1


def evaluate_records(
    records: Sequence[PredictionRecord],
    taxonomy: Sequence[str],
    cfg: EvalConfig,
    baseline: Sequence[PredictionRecord] | None = None,
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole evaluation as a JSON-serialisable dict (the content of metrics.json).

    Unlabeled records are skipped and counted; `source` is free-form provenance (strings or
    paths; its `snapshot` and `model` go into thresholds.json).
    """
    if not taxonomy:
        raise EvaluationError("empty taxonomy: nothing to evaluate")
    check_labels(records, taxonomy)
    labeled = [r for r in records if r.labels is not None]
    y_true, y_score = records_to_arrays(labeled, taxonomy)
    src = {"snapshot": None, "model": None, **(source or {})}
    src = {k: str(v) if isinstance(v, Path) else v for k, v in src.items()}
    th = thresholds_document(
        y_true, y_score, taxonomy, cfg.target_precision, cfg.target_recall, src
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "source": src,
        "config": cfg.to_dict(),
        "taxonomy": list(taxonomy),
        "n_listings": len(labeled),
        "n_unlabeled_skipped": len(records) - len(labeled),
        "metrics": summarize_metrics(y_true, y_score, taxonomy, cfg, th),
        "thresholds": th,
        "decisions": decision_table(y_true, y_score, taxonomy, th),
        "slices": drift_slices(labeled, y_true, y_score, taxonomy, th, cfg),
        "comparison": None if baseline is None else compare(baseline, labeled, taxonomy, cfg),
    }


def run_evaluation(
    records: Sequence[PredictionRecord],
    taxonomy: Sequence[str],
    cfg: EvalConfig,
    out_dir: str | Path,
    baseline: Sequence[PredictionRecord] | None = None,
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`evaluate_records`, then write predictions.jsonl (+ baseline_predictions.jsonl) and the
    report files (metrics.json, thresholds.json, report.md, report.html) into `out_dir`."""
    result = evaluate_records(records, taxonomy, cfg, baseline, source)
    out = Path(out_dir)
    write_predictions(out / "predictions.jsonl", records)
    if baseline is not None:
        write_predictions(out / "baseline_predictions.jsonl", baseline)
    write_report(out, result, records, baseline)
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmdetect evaluate",
        description="Recompute metrics, thresholds and the report from saved predictions.",
    )
    p.add_argument("--predictions", type=Path, required=True, help="predictions.jsonl to score")
    p.add_argument("--baseline-predictions", type=Path, help="champion predictions to compare")
    p.add_argument("--config", type=Path, help="configs/evaluate/*.yaml (default: built-in)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--source-model", help="model name recorded in thresholds.json")
    p.add_argument("--source-snapshot", help="snapshot name recorded in thresholds.json")
    return p


def evaluate_predictions_main(argv: Sequence[str] | None = None) -> int:
    """`mmdetect evaluate --predictions FILE [--baseline-predictions FILE] --out DIR`."""
    args = _parser().parse_args(argv)
    try:
        cfg = load_eval_config(args.config)
        records, taxonomy = read_predictions(args.predictions)
        baseline = None
        if args.baseline_predictions is not None:
            baseline, _ = read_predictions(args.baseline_predictions)
        source = {
            "snapshot": args.source_snapshot,
            "model": args.source_model,
            "predictions": str(args.predictions),
            "baseline_predictions": args.baseline_predictions and str(args.baseline_predictions),
        }
        result = run_evaluation(records, taxonomy, cfg, args.out, baseline, source)
    except (EvaluationError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_console(result))
    print(f"report: {args.out / 'report.html'}")
    return 0
