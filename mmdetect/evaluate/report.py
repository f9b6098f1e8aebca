"""Report files of an evaluation: metrics.json, thresholds.json (the operating point that was
applied), report.md (+ PNGs) and a self-contained report.html (figures inlined as base64 PNG),
plus a console summary.

Markdown and HTML render the same `Section`s, so the two reports cannot drift apart.
"""

from __future__ import annotations

import base64
import html
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmdetect.evaluate.compare import join_records
from mmdetect.evaluate.plots import histograms_png, pr_curves_png
from mmdetect.evaluate.predictions import PredictionRecord, records_to_arrays, score_array
from mmdetect.evaluate.tables import (
    Table,
    calibration_table,
    comparison_table,
    fmt,
    hidden_table,
    metrics_table,
    operating_lines,
    operating_table,
    slice_table,
    summary_lines,
)
from mmdetect.evaluate.traffic import traffic_lines


@dataclass
class Section:
    """A report section: paragraphs, tables, and optionally a figure (key into the images)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    image: str | None = None
    links: list[tuple[str, str]] = field(default_factory=list)  # (text, relative href)


def build_sections(result: Mapping[str, Any]) -> list[Section]:
    """The report's sections in reading order (label-dependent ones only with labels)."""
    hidden = result["operating"]["hidden_listings"]
    sections = [
        Section("Summary", summary_lines(result)),
        Section(
            "Decisions of the served operating point",
            operating_lines(result),
            [operating_table(result)],
        ),  # fmt: skip
        Section("Expected on traffic", traffic_lines(result)),
        Section(f"Hidden listings ({hidden['count']})", tables=[hidden_table(result)]),
    ]
    if result["metrics"] is None:
        return sections
    sections += [
        Section(
            "Calibration",
            ["expected calibration error, 10 equal-width bins"],
            [calibration_table(result)],
        ),  # fmt: skip
        Section("Metrics (calibrated scores)", tables=[metrics_table(result)]),
        Section("Precision-recall curves", image="pr_curves"),
        Section("Score histograms", image="score_histograms"),
    ]
    comp = result.get("comparison")
    if comp is not None:
        info = (
            f"{comp['n_common']} shared listings; only in challenger: "
            f"{comp['missing_from_baseline']['count']}; only in baseline: "
            f"{comp['missing_from_challenger']['count']}; label mismatches: "
            f"{comp['label_mismatches']['count']}"
        )
        skipped = comp["classes_skipped"]
        notes = [comp["verdict_line"], info] + ([f"not compared: {skipped}"] if skipped else [])
        sections.append(Section("Champion vs challenger", notes, [comparison_table(comp)]))
    for kind, slices in result["slices"].items():
        sections.append(Section(f"Drift by {kind}", tables=[slice_table(result, slices)]))
    if result.get("error_analysis"):
        sections.append(error_section(result["error_analysis"]))
    return sections


def error_section(ea: Mapping[str, Any]) -> Section:
    """False hides and missed positives explained (mmdetect.serving.error_analysis): top words, cards."""
    rows = [[g["kind"].replace("_", " "), g["class"], str(g["explained"]),
             ", ".join(f"{w['word']} ({w['attribution']:+.3f}, {w['listings']})"
                       for w in g["top_words"])] for g in ea["groups"]]  # fmt: skip
    links = [(f"{g['kind'].replace('_', ' ')} {g['class']}: {i}", href)
             for g in ea["groups"] for i, href in zip(g["ids"], g["cards"], strict=True)]  # fmt: skip
    note = (
        f"at most {ea['per_class_limit']} per class and kind, explained for that class "
        f"({', '.join(ea['method']) or '-'}); words: summed positive attribution, listings"
    )
    skipped = (
        ea.get("skipped") or {}
    )  # mmdetect.serving.error_analysis: failed explanations, counted
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none"
    note += f"; skipped: {sum(skipped.values())} ({reasons})"
    header = ["error", "class", "explained", "most attributed words"]
    return Section("Errors explained", [note], [(header, rows)] if rows else [], links=links)


# Markdown's own syntax characters; `_` only where it could open or close emphasis (an
# underscore inside a word, as in game_account, is plain text in CommonMark).
_MD_SPECIAL = re.compile(r"([\\`*\[\]|#!~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def md_escape(text: object) -> str:
    """Text from the data (ids, categories, words) as inert Markdown: HTML escaped as in
    report.html, Markdown syntax backslash-escaped, `|` kept out of table structure, line
    breaks turned to spaces (a newline would end a table row)."""
    value = html.escape(str(text), quote=False)
    value = re.sub(r"[\r\n\x0b\x0c\x85\u2028\u2029]+", " ", value)
    return _MD_SPECIAL.sub(r"\\\1", value)


def md_href(href: str) -> str:
    """A relative link target that cannot end the link early or carry markup."""
    return urllib.parse.quote(href, safe="/#:.-_~")


def to_markdown(sections: Sequence[Section], image_files: Mapping[str, str]) -> str:
    """Markdown report; figures are linked PNG files beside it. Every text is md_escape'd,
    so a hostile id or category renders as itself and each table row keeps its columns."""
    e = md_escape
    lines = ["# mmdetect evaluation report", ""]
    for sec in sections:
        lines += [f"## {e(sec.title)}", ""]
        lines += [f"{e(p)}  " for p in sec.paragraphs] + ([""] if sec.paragraphs else [])
        for header, rows in sec.tables:
            lines.append("| " + " | ".join(map(e, header)) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(map(e, row)) + " |" for row in rows]
            lines.append("")
        if sec.image:
            lines += [f"![{e(sec.title)}]({md_href(image_files[sec.image])})", ""]
        lines += [f"- [{e(text)}]({md_href(href)})" for text, href in sec.links]
        lines += [""] if sec.links else []
    return "\n".join(lines)


def to_html(sections: Sequence[Section], images: Mapping[str, bytes]) -> str:
    """A self-contained HTML report: figures are inlined as base64 PNG."""
    e = html.escape
    body = []
    for sec in sections:
        body.append(f"<h2>{e(sec.title)}</h2>")
        body += [f"<p>{e(p)}</p>" for p in sec.paragraphs]
        for header, rows in sec.tables:
            head = "".join(f"<th>{e(h)}</th>" for h in header)
            cells = ["".join(f"<td>{e(c)}</td>" for c in row) for row in rows]
            body.append(
                f"<table><tr>{head}</tr>" + "".join(f"<tr>{c}</tr>" for c in cells) + "</table>"
            )
        if sec.image:
            data = base64.b64encode(images[sec.image]).decode("ascii")
            body.append(f'<img alt="{e(sec.title)}" src="data:image/png;base64,{data}">')
        if sec.links:
            items = "".join(f'<li><a href="{e(h)}">{e(t)}</a></li>' for t, h in sec.links)
            body.append(f"<ul>{items}</ul>")
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>mmdetect evaluation</title>'
        f"<style>{style}</style></head><body><h1>mmdetect evaluation report</h1>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def report_images(
    result: Mapping[str, Any],
    records: Sequence[PredictionRecord],
    operating_point: Mapping[str, Any],
    baseline: Sequence[PredictionRecord] | None = None,
) -> dict[str, bytes]:
    """PR curves (both models on the shared listings when there is a baseline) and histograms."""
    taxonomy = result["taxonomy"]
    labeled = [r for r in records if r.labels is not None]
    y_true, y_score = records_to_arrays(labeled, taxonomy)
    comp = result.get("comparison")
    if baseline is None or comp is None:
        ap = {"model": _ap(result["metrics"])}
        pr = pr_curves_png(y_true, {"model": y_score}, taxonomy, ap)
    else:
        base, chal = join_records(baseline, labeled)[:2]
        classes = comp["classes_compared"]
        y_shared = records_to_arrays(chal, taxonomy)[0][:, [taxonomy.index(c) for c in classes]]
        scores = {"baseline": score_array(base, classes), "challenger": score_array(chal, classes)}
        ap = {side: _ap(comp[side]["metrics"]) for side in scores}
        pr = pr_curves_png(y_shared, scores, classes, ap)
    hide = {c: operating_point["classes"][c]["hide"] for c in taxonomy}
    hist = histograms_png(y_true, y_score, taxonomy, hide)
    return {"pr_curves": pr, "score_histograms": hist}


def _ap(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    return {c: m["average_precision"] for c, m in metrics["classes"].items()}


def write_report(
    out_dir: str | Path,
    result: Mapping[str, Any],
    records: Sequence[PredictionRecord],
    operating_point: Mapping[str, Any],
    baseline: Sequence[PredictionRecord] | None = None,
) -> dict[str, Path]:
    """Write metrics.json, thresholds.json, report.md, its PNGs and report.html; return paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("metrics.json", "thresholds.json")}
    # allow_nan=False: a NaN that slipped through fails here, not in a strict reader later
    for name, doc in (("metrics.json", result), ("thresholds.json", operating_point)):
        text = json.dumps(doc, ensure_ascii=False, indent=2, allow_nan=False)
        paths[name].write_text(text + "\n", encoding="utf-8")
    images = (
        {}
        if result["metrics"] is None
        else report_images(result, records, operating_point, baseline)
    )
    for key, png in images.items():
        paths[f"{key}.png"] = out / f"{key}.png"
        paths[f"{key}.png"].write_bytes(png)
    sections = build_sections(result)
    paths["report.md"] = out / "report.md"
    paths["report.md"].write_text(
        to_markdown(sections, {k: f"{k}.png" for k in images}), encoding="utf-8"
    )
    paths["report.html"] = out / "report.html"
    paths["report.html"].write_text(to_html(sections, images), encoding="utf-8")
    return paths


def format_console(result: Mapping[str, Any]) -> str:
    """A compact summary: per class AP/ECE and the served decisions, then the overall rates."""
    o, m, cal = result["operating"], result["metrics"], result["calibration"]
    width = max(len("macro"), *(len(c) for c in result["taxonomy"]))
    cols = ["pos", "AP", "ECE", "ECEcal", "hide>=", "hidden", "P@hide", "recall"]
    lines = [f"{'class':<{width}} " + " ".join(f"{c:>7}" for c in cols)]
    for name in result["taxonomy"]:
        c = o["classes"][name]
        values = ["-" if c["positives"] is None else c["positives"]]
        if m is not None:
            values += [fmt(m["classes"][name]["average_precision"]),
                       fmt(cal["raw"]["classes"][name]), fmt(cal["calibrated"]["classes"][name])]  # fmt: skip
        else:
            values += ["-", "-", "-"]
        values += [fmt(c["hide_threshold"]), c["hidden"]]
        values += [_short(c.get("hide_precision")), _short(c.get("recall_at_review"))]
        lines.append(f"{name:<{width}} " + " ".join(f"{v!s:>7}" for v in values))
    if m is not None:
        macro = ["", fmt(m["macro"]["average_precision"]), fmt(cal["raw"]["macro"]),
                 fmt(cal["calibrated"]["macro"])]  # fmt: skip
        lines.append(f"{'macro':<{width}} " + " ".join(f"{v:>7}" for v in macro))
    lines += operating_lines(result)
    lines += traffic_lines(result)
    if result.get("comparison"):
        lines.append(result["comparison"]["verdict_line"])
    return "\n".join(lines)


def _short(r: Mapping[str, Any] | None) -> str:
    return "-" if r is None or r["value"] is None else f"{r['value']:.3f}"
