"""Promotion gates: what `mmdetect promote` checks before a challenger replaces the champion.

Each gate returns its figures and a `reason` line; every gate's figures go into history.jsonl
(docs/operating-points.md, "Promotion gates"). `evaluate_pair` scores both bundles on the
promotion snapshot, each under its own operating point, and computes the gates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmdetect.artifacts.bundle_format import PREPROCESS_FILE, read_json
from mmdetect.evaluate.config import EvalConfig


class PromotionError(RuntimeError):
    """The promotion snapshot cannot decide (e.g. it has no labels)."""


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
    from mmdetect.artifacts.bundle import check_thresholds
    from mmdetect.artifacts.bundle_format import THRESHOLDS_FILE

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


def evaluate_pair(
    champion: Path, challenger: Path, snapshot: Path, cfg: EvalConfig, out: Path, source: dict,
    batch_size: int = 64, num_workers: int = 0,
) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """Score both bundles on the snapshot under their own operating points and compare;
    (gates, classes the challenger drops). The report is written to `out`."""
    from mmdetect.evaluate.operating import apply_operating_point
    from mmdetect.evaluate.run import run_evaluation
    from mmdetect.serving.scoring import score_snapshot

    kw = {"batch_size": batch_size, "num_workers": num_workers}
    base, base_tax, _, base_doc = score_snapshot(champion, snapshot, **kw)
    records, taxonomy, snap, doc = score_snapshot(challenger, snapshot, **kw)
    if not snap.labeled:
        raise PromotionError(f"{snapshot}: no labeled listings: promotion needs a labeled snapshot")
    base = apply_operating_point(base, base_doc, base_tax)
    records = apply_operating_point(records, doc, taxonomy)
    result = run_evaluation(records, taxonomy, cfg, out, doc, base, source)
    champion_classes = read_json(champion / PREPROCESS_FILE)["taxonomy"]
    gates = promotion_gates(result, doc, base, records, cfg)
    return gates, [c for c in champion_classes if c not in taxonomy]
