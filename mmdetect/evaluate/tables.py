"""Report tables as `(header, rows)` of strings, built from the result dict only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Table = tuple[list[str], list[list[str]]]


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table; None -> "n/a"."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def fmt_rate(r: Mapping[str, Any] | None, pct: bool = False) -> str:
    """`0.950 [0.83, 0.99] (19/20)`, or `n/a (0/0)`; percentages with pct."""
    if r is None:
        return "n/a"
    if r["value"] is None:
        return f"n/a ({r['count']}/{r['of']})"
    f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.3f}")
    return f"{f(r['value'])} [{f(r['ci'][0])}, {f(r['ci'][1])}] ({r['count']}/{r['of']})"


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """Provenance, size and the operating point that was applied."""
    src = ", ".join(f"{k}={v}" for k, v in result["source"].items() if v is not None)
    op = result["operating_point"]
    policy = op.get("policy") or {}
    fitted_on = (op.get("source") or {}).get("snapshot")
    lines = [
        f"source: {src or 'not given'}",
        f"listings: {result['n_listings']} ({result['n_labeled']} labeled); "
        f"classes: {', '.join(result['taxonomy'])}",
        "operating point: "
        + (
            f"fitted on {fitted_on or '?'}; calibration {op['calibration']}; review when "
            f"priority >= {op['review_threshold']:.4g} (budget {_pct(op['review_budget'])}); "
            f"auto-hide certified at precision >= {policy.get('hide_precision')} with "
            f"{policy.get('hide_confidence')} confidence"
            if op["fitted"]
            else f"NOT FITTED: {op['note']}"
        ),
    ]
    return lines


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def operating_lines(result: Mapping[str, Any]) -> list[str]:
    """What the served decisions did, with 95 % intervals (labels used where present)."""
    o = result["operating"]
    ratio = o["review_vs_budget"]
    lines = [
        f"{o['listings']} listings: hidden {o['hidden']}, to review {o['reviewed']}, "
        f"passed {o['passed']}",
        f"review rate {fmt_rate(o['review_rate'], True)}; budget {_pct(o['review_budget'])}"
        + ("" if ratio is None else f" ({ratio:.2f}x the budget)"),
        f"hide rate {fmt_rate(o['hide_rate'], True)}",
    ]
    if o["labeled"]:
        lines += [
            f"auto-hide precision (hidden listings that are prohibited): "
            f"{fmt_rate(o['hide_precision'])}",
            f"false-hide rate (clean listings hidden): {fmt_rate(o['false_hide_rate'], True)}",
            f"recall of prohibited listings (hidden or reviewed): "
            f"{fmt_rate(o['recall_at_review'])}",
            f"review precision (reviewed listings that are prohibited): "
            f"{fmt_rate(o['review_precision'])}",
        ]
    else:
        lines.append("no labels: rates only (precision and recall need labeled listings)")
    return lines


def operating_table(result: Mapping[str, Any]) -> Table:
    """Per class: hide threshold, certification, hidden and flagged, realised rates."""
    o, op = result["operating"], result["operating_point"]
    header = ["class", "hide >=", "certified", "hidden", "flagged", "positives"]
    header += ["precision at hide [95% CI]", "recall (hidden or reviewed) [95% CI]", "note"]
    rows = []
    for name in result["taxonomy"]:
        c = o["classes"][name]
        rows.append([
            name, fmt(c["hide_threshold"], 4), "yes" if c["certified"] else "no",
            str(c["hidden"]), str(c["flagged"]),
            "n/a" if c["positives"] is None else str(c["positives"]),
            fmt_rate(c.get("hide_precision")), fmt_rate(c.get("recall_at_review")),
            op["classes"][name].get("note") or "",
        ])  # fmt: skip
    return header, rows


def hidden_table(result: Mapping[str, Any], limit: int = 50) -> Table:
    """The hidden listings (highest priority first), with the classes that hid them."""
    header = ["id", "hidden by", "calibrated scores", "labels"]
    rows = [
        [h["id"], ", ".join(h["classes"]),
         ", ".join(f"{c}={v:.3f}" for c, v in h["scores"].items()),
         "unlabeled" if h["labels"] is None else (", ".join(h["labels"]) or "clean")]
        for h in result["operating"]["hidden_listings"]["listed"][:limit]
    ]  # fmt: skip
    return header, rows


def calibration_table(result: Mapping[str, Any]) -> Table:
    """ECE per class of the model's probabilities and of the calibrated ones."""
    cal = result["calibration"]
    header = ["class", "ECE model", "ECE calibrated"]
    rows = [[c, fmt(cal["raw"]["classes"][c]), fmt(cal["calibrated"]["classes"][c])]
            for c in result["taxonomy"]]  # fmt: skip
    rows.append(["macro", fmt(cal["raw"]["macro"]), fmt(cal["calibrated"]["macro"])])
    return header, rows


def metrics_table(result: Mapping[str, Any]) -> Table:
    """Per class, macro and micro: AP, ROC-AUC, operating points, ECE."""
    cfg, m = result["config"], result["metrics"]
    par = [f"{r:g}" for r in cfg["precision_at_recall"]]
    rap = [f"{p:g}" for p in cfg["recall_at_precision"]]
    header = ["class", "listings", "positives", "AP", "ROC-AUC"]
    header += [f"P@R{r}" for r in par] + [f"R@P{p}" for p in rap] + ["ECE", "note"]

    def row(label: str, block: Mapping[str, Any], count: str, support: str, note: str) -> list:
        values = [block["average_precision"], block["roc_auc"]]
        values += [block["precision_at_recall"][r] for r in par]
        values += [block["recall_at_precision"][p] for p in rap] + [block["ece"]]
        return [label, count, support, *(fmt(v) for v in values), note]

    rows = [
        row(name, c, str(c["count"]), str(c["support"]), c["note"] or "")
        for name, c in m["classes"].items()
    ]
    n = m["macro"]["n_classes"]["average_precision"]
    rows.append(row("macro", m["macro"], "", "", f"mean over {n} classes with positives"))
    mi = m["micro"]
    rows.append(
        row("micro", mi, str(mi["count"]), str(mi["support"]), "all (listing, class) pairs")
    )
    return header, rows


def comparison_table(comp: Mapping[str, Any]) -> Table:
    """Baseline vs challenger AP per class and macro, with the paired-bootstrap CI."""
    header = ["class", "positives", "baseline AP", "challenger AP", "ΔAP", "95% CI", "ΔROC-AUC"]
    header += ["ΔECE", f"CI below -{comp['class_margin']:g}"]
    base, chal = comp["baseline"]["metrics"], comp["challenger"]["metrics"]
    boot, delta = comp["bootstrap"], comp["delta"]

    def ci(b: Mapping[str, Any]) -> str:
        return "n/a" if b["ci_low"] is None else f"{b['ci_low']:+.3f} .. {b['ci_high']:+.3f}"

    rows = []
    for name in comp["classes_compared"]:
        b, d = boot["classes"][name], delta["classes"][name]
        flag = {True: "YES", False: "no", None: "n/a"}[b["worse_than_margin"]]
        rows.append([
            name, str(chal["classes"][name]["support"]),
            fmt(base["classes"][name]["average_precision"]),
            fmt(chal["classes"][name]["average_precision"]),
            _signed(d["average_precision"]), ci(b), _signed(d["roc_auc"]), _signed(d["ece"]), flag,
        ])  # fmt: skip
    mb, dm = boot["macro_average_precision"], delta["macro"]
    rows.append([
        "macro", "", fmt(base["macro"]["average_precision"]),
        fmt(chal["macro"]["average_precision"]), _signed(dm["average_precision"]), ci(mb),
        _signed(dm["roc_auc"]), _signed(dm["ece"]), comp["verdict"],
    ])  # fmt: skip
    return header, rows


def slice_table(result: Mapping[str, Any], slices: Sequence[Mapping[str, Any]]) -> Table:
    """One row per slice: size, labels, macro AP, flag rate, AP per class."""
    taxonomy = result["taxonomy"]
    header = ["slice", "listings", "labels", "macro AP", "flag rate"]
    header += [f"AP {c}" for c in taxonomy] + ["note"]
    rows = [
        [s["value"], str(s["count"]), str(sum(s["support"].values())),
         fmt(s["macro_average_precision"]), fmt(s["flag_rate"])]
        + [fmt(s["average_precision"][c]) for c in taxonomy]
        + [s["note"] or ""]
        for s in slices
    ]  # fmt: skip
    return header, rows
