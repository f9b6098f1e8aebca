"""Champion (baseline) vs challenger on the same listings: metrics, deltas, paired bootstrap CIs.

Listings are inner-joined by id; the challenger's labels are used for both models (a label that
differs between the two files is counted). A class is "worse than the margin" when the 95% CI
of its AP delta lies entirely below -class_margin (the point estimate when there is no
bootstrap). The verdict reads the 95% CI of the macro-AP delta (challenger - baseline):
"better" if entirely > 0, "worse" if entirely < 0, otherwise "no significant difference";
"not tested" when `bootstrap: 0`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from mmdetect.evaluate.bootstrap import paired_bootstrap_ap, percentile_ci
from mmdetect.evaluate.config import EvalConfig, EvaluationError
from mmdetect.evaluate.metrics import summarize_metrics
from mmdetect.evaluate.predictions import PredictionRecord, records_to_arrays, score_array

MAX_IDS = 20  # ids listed per kind of mismatch; the count is always complete
SKIP = ("count", "support", "note", "threshold", "n_classes")


def _ids(ids: Sequence[str]) -> dict[str, Any]:
    return {"count": len(ids), "ids": sorted(ids)[:MAX_IDS]}


def join_records(
    baseline: Sequence[PredictionRecord], records: Sequence[PredictionRecord]
) -> tuple[list[PredictionRecord], list[PredictionRecord], dict[str, Any]]:
    """Inner join by id, in challenger order; baseline rows take the challenger's labels."""
    base = {r.id: r for r in baseline}
    ids = {r.id for r in records}
    common = [r for r in records if r.id in base]
    joined_base = [replace(base[r.id], labels=r.labels) for r in common]
    mismatched = [
        r.id for r in common if _label_set(base[r.id].labels) not in (None, _label_set(r.labels))
    ]
    info = {
        "n_common": len(common),
        "missing_from_baseline": _ids([r.id for r in records if r.id not in base]),
        "missing_from_challenger": _ids([i for i in base if i not in ids]),
        "label_mismatches": _ids(mismatched),
    }
    return joined_base, common, info


def _label_set(labels: Sequence[str] | None) -> frozenset[str] | None:
    return None if labels is None else frozenset(labels)


def metric_delta(challenger: Any, baseline: Any) -> Any:
    """challenger - baseline for every numeric leaf of two metric trees (None if either is)."""
    if isinstance(challenger, Mapping):
        return {k: metric_delta(v, baseline[k]) for k, v in challenger.items() if k not in SKIP}
    if challenger is None or baseline is None:
        return None
    return float(challenger - baseline)


def verdict(ci: tuple[float, float] | None) -> str:
    """The one-word verdict from the macro-AP delta CI."""
    if ci is None:
        return "not tested"
    if ci[0] > 0:
        return "better"
    if ci[1] < 0:
        return "worse"
    return "no significant difference"


def _interval(point: float | None, samples: np.ndarray) -> dict[str, Any]:
    ci = percentile_ci(samples)
    return {
        "delta": point,
        "ci_low": None if ci is None else ci[0],
        "ci_high": None if ci is None else ci[1],
        "n_valid": int(np.isfinite(samples).sum()),
    }


def bootstrap_ap(
    y_true: np.ndarray,
    base_score: np.ndarray,
    score: np.ndarray,
    classes: Sequence[str],
    deltas: Mapping[str, Any],
    cfg: EvalConfig,
) -> dict[str, Any]:
    """Paired-bootstrap 95% CIs of the AP delta, per class and for macro AP (none if n = 0)."""
    ap_a, ap_b = paired_bootstrap_ap(y_true, base_score, score, cfg.bootstrap, cfg.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample where no class has positives
        macro = np.nanmean(ap_b, axis=1) - np.nanmean(ap_a, axis=1)
    per_class = {}
    for j, name in enumerate(classes):
        d = deltas["classes"][name]["average_precision"]
        per_class[name] = _interval(d, ap_b[:, j] - ap_a[:, j])
        # significantly beyond the margin: the whole CI below -margin (point estimate if no CI),
        # so the noise of a class with 15 positives does not refuse a better model
        high = per_class[name]["ci_high"]
        bound = d if high is None else high
        per_class[name]["worse_than_margin"] = None if d is None else bound < -cfg.class_margin
    return {
        "n": cfg.bootstrap,
        "seed": cfg.seed,
        "confidence": 0.95,
        "macro_average_precision": _interval(deltas["macro"]["average_precision"], macro),
        "classes": per_class,
    }


def shared_classes(
    baseline: Sequence[PredictionRecord], taxonomy: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Classes scored by every baseline row (compared), and the challenger-only ones."""
    keys = set.intersection(*(set(r.scores) for r in baseline)) if baseline else set()
    shared = [c for c in taxonomy if c in keys]
    return shared, [c for c in taxonomy if c not in keys]


def verdict_line(result: Mapping[str, Any]) -> str:
    """One sentence: verdict, macro-AP delta with its CI, and the listings it rests on."""
    m = result["bootstrap"]["macro_average_precision"]
    delta = "n/a" if m["delta"] is None else f"{m['delta']:+.4f}"
    ci = "" if m["ci_low"] is None else f" (95% CI {m['ci_low']:+.4f} .. {m['ci_high']:+.4f})"
    worse = result["classes_worse_than_margin"]
    margin = f"; AP drops > {result['class_margin']:g} on {', '.join(worse)}" if worse else ""
    return (
        f"challenger vs baseline: {result['verdict']}: macro AP {delta}{ci} "
        f"on {result['n_common']} shared listings{margin}"
    )


def compare(
    baseline_records: Sequence[PredictionRecord],
    records: Sequence[PredictionRecord],
    taxonomy: Sequence[str],
    cfg: EvalConfig,
) -> dict[str, Any]:
    """Both models' metrics on the shared labeled listings, deltas, CIs and the verdict."""
    labeled = [r for r in records if r.labels is not None]
    base, chal, info = join_records(baseline_records, labeled)
    classes, skipped = shared_classes(base, taxonomy)
    if not chal:
        raise EvaluationError("baseline and challenger predictions share no labeled listing ids")
    if not classes:
        raise EvaluationError(f"baseline predictions score none of the classes {list(taxonomy)}")
    y_all, _ = records_to_arrays(chal, taxonomy)
    y_true = y_all[:, [list(taxonomy).index(c) for c in classes]]
    score, base_score = score_array(chal, classes), score_array(base, classes)
    sides = {
        side: {"metrics": summarize_metrics(y_true, s, classes, cfg)}
        for side, s in (("baseline", base_score), ("challenger", score))
    }
    deltas = metric_delta(sides["challenger"]["metrics"], sides["baseline"]["metrics"])
    boot = bootstrap_ap(y_true, base_score, score, classes, deltas, cfg)
    m = boot["macro_average_precision"]
    ci = None if m["ci_low"] is None else (m["ci_low"], m["ci_high"])
    result = {
        **info,
        "classes_compared": classes,
        "classes_skipped": skipped,
        **sides,
        "delta": deltas,
        "bootstrap": boot,
        "class_margin": cfg.class_margin,
        "classes_worse_than_margin": [
            c for c in classes if boot["classes"][c]["worse_than_margin"]
        ],
        "verdict": verdict(ci),
    }
    result["verdict_line"] = verdict_line(result)
    return result
