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


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """Provenance, size and targets of the evaluation."""
    src = ", ".join(f"{k}={v}" for k, v in result["source"].items() if v is not None)
    cfg = result["config"]
    lines = [
        f"source: {src or 'not given'}",
        f"labeled listings: {result['n_listings']} (unlabeled skipped: "
        f"{result['n_unlabeled_skipped']}); classes: {', '.join(result['taxonomy'])}",
        f"targets: hide at precision >= {cfg['target_precision']:g}, "
        f"review at recall >= {cfg['target_recall']:g}",
    ]
    return lines


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


def decisions_table(result: Mapping[str, Any]) -> Table:
    """Per class: thresholds, hidden / to review / passed (positives among them), rates."""
    th, dec, m = result["thresholds"]["classes"], result["decisions"], result["metrics"]
    header = ["class", "hide >=", "review >=", "hidden (pos)", "to review (pos)", "passed (pos)"]
    header += ["P@hide", "R@hide", "P@review", "R@review", "F1@review", "note"]

    def counts(d: Mapping[str, int]) -> list[str]:
        return [f"{d[t]} ({d[t + '_positives']})" for t in ("hide", "review", "pass")]

    def rates(block: Mapping[str, Any]) -> list[str]:
        h, r = block["at_hide"], block["at_review"]
        return [fmt(v) for v in (h["precision"], h["recall"], r["precision"], r["recall"], r["f1"])]

    rows = [
        [name, fmt(th[name]["hide"], 4), fmt(th[name]["review"], 4)]
        + counts(dec["classes"][name])
        + rates(m["classes"][name])
        + [th[name]["note"] or ""]
        for name in result["taxonomy"]
    ]
    rows.append(["any class (per listing)", "", ""] + counts(dec["overall"]) + rates(m["micro"]))
    rows[-1].append("rates: micro over (listing, class) pairs")
    return header, rows


def comparison_table(comp: Mapping[str, Any]) -> Table:
    """Baseline vs challenger AP per class and macro, with the paired-bootstrap CI."""
    header = ["class", "positives", "baseline AP", "challenger AP", "ΔAP", "95% CI", "ΔROC-AUC"]
    header += ["ΔECE", f"ΔAP < -{comp['class_margin']:g}"]
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
    """One row per slice: size, labels, macro AP, flag rate at review, AP per class."""
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
