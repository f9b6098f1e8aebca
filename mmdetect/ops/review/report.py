"""`mmdetect evaluate --audit REVIEWS --tasks TASKS --out DIR`: traffic-level precision and recall
from the reviewed audit sample, beside review-tier precision, as metrics JSON and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmdetect.common.outputs import OutputError, atomic_write_text, check_output
from mmdetect.data.jsonl import iter_jsonl
from mmdetect.ops.review.estimate import estimate
from mmdetect.ops.review.files import ReviewFileError, read_tasks, regular_file, taxonomy_of

FIGURES = (("hide_precision", "hide precision (traffic)"), ("recall", "recall (traffic)"),
           ("review_precision", "review-tier precision"))  # fmt: skip


def cell(rate: Mapping[str, Any]) -> str:
    if rate["value"] is None:
        return "– (0 listings)"
    lo, hi = rate["ci"]
    return f"{rate['value']:.3f} [{lo:.3f}, {hi:.3f}] (n={rate['of']})"


def markdown(result: Mapping[str, Any], taxonomy: Sequence[str]) -> str:
    head = "| class | " + " | ".join(name for _, name in FIGURES) + " |"
    lines = [head, "|" + "---|" * (len(FIGURES) + 1)]
    for name, per in [("**all classes**", result["overall"])] + [
        (c, result["per_class"][c]) for c in taxonomy
    ]:
        lines.append(f"| {name} | " + " | ".join(cell(per[key]) for key, _ in FIGURES) + " |")
    response = ", ".join(f"{t} {r:.0%}" for t, r in sorted(result["response_rate"].items()))
    prevalence = cell(result["overall"]["prevalence"])
    return (
        f"# Audit: precision and recall on traffic\n\n{result['listings_reviewed']} reviewed "
        f"listings of the probability sample (review tier whole, pass and hide tiers audited); "
        f"share of sampled tasks reviewed per tier: {response or 'none'}. Intervals: "
        f"{result['confidence']:.0%}, Clopper-Pearson on the effective sample size. Violation "
        f"prevalence on traffic: {prevalence}.\n\n" + "\n".join(lines) + "\n"
    )


def evaluate_audit_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="mmdetect evaluate --audit", description=__doc__)
    p.add_argument("--audit", type=Path, required=True, help="reviews.jsonl from `review import`")
    p.add_argument("--tasks", type=Path, required=True, help="the TASKS.json `review export` wrote")
    p.add_argument("--out", type=Path, required=True, help="directory for audit.json, audit.md")
    p.add_argument("--confidence", type=float, default=0.95)
    args = p.parse_args(argv)
    try:
        out = check_output(args.out, [args.audit, args.tasks], kind="dir")
        tasks = read_tasks(args.tasks)
        taxonomy = taxonomy_of(tasks, args.tasks)
        reviews = [row for _, row, problem in iter_jsonl(regular_file(args.audit))
                   if problem is None and isinstance(row, dict)
                   and isinstance(row.get("id"), str) and isinstance(row.get("labels"), list)]  # fmt: skip
        result = estimate(reviews, tasks, taxonomy, args.confidence)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "audit.json", json.dumps(result, indent=2) + "\n")
        atomic_write_text(out / "audit.md", markdown(result, taxonomy))
    except (ReviewFileError, OutputError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(markdown(result, taxonomy), end="")
    return 0
