"""The `evaluate --rules` table as Markdown (console and rules.md) and its files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmdetect.common.outputs import atomic_write_text
from mmdetect.evaluate.rules_table import LABELS, SYSTEMS

SYSTEM_HEAD = ("", "hidden", "reviewed", "recall (hidden or reviewed)", "precision of flagged",
               "hide precision")  # fmt: skip


def _r(x: Mapping[str, Any]) -> str:
    """`0.750 (3/4)`, or `n/a (0/0)`."""
    value = "n/a" if x["value"] is None else f"{x['value']:.3f}"
    return f"{value} ({x['count']}/{x['of']})"


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def format_rules_table(result: Mapping[str, Any]) -> str:
    b, s = result["review_budget"], result["systems"]
    lines = [
        f"rules {result['ruleset']} vs the model: {result['listings']} listings, "
        f"{result['labeled']} labeled, {result['prohibited']} prohibited (rules as of "
        f"{result['at_utc']}); same review budget: {b['budget']} reviews (rules + model: "
        f"{b['rule_reviews']} by rules, {b['model_reviews']} by the model, {b['dropped']} of the "
        "model's cut)",
        "",
        _row(SYSTEM_HEAD),
        _row(["---"] * len(SYSTEM_HEAD)),
    ]
    for k in SYSTEMS:
        f = s[k]
        lines.append(_row([LABELS[k], f["hidden"], f["reviewed"], _r(f["recall"]),
                           _r(f["precision"]), _r(f["hide_precision"])]))  # fmt: skip
    cov = result["coverage"]
    lines += ["", _row(["class", "positives", *(f"recall: {LABELS[k]}" for k in SYSTEMS),
                        "model beyond rules", "rules beyond model"]), _row(["---"] * 7)]  # fmt: skip
    for name, c in [("overall", cov["overall"]), *cov["classes"].items()]:
        recall = [s[k]["recall"] if name == "overall" else s[k]["classes"][name]["recall"]
                  for k in SYSTEMS]  # fmt: skip
        lines.append(_row([name, c["positives"], *map(_r, recall), c["model_beyond_rules"],
                           c["rules_beyond_model"]]))  # fmt: skip
    lines += ["", _row(["rule", "action", "category", "hits", "precision", "beyond model",
                        "owner", "expires"]), _row(["---"] * 8)]  # fmt: skip
    for r in result["rules"]:
        extra = r.get("beyond_model", "")
        if r["action"] == "allow":
            extra = f"lowered {r.get('lowered', 0)} hides ({r.get('lowered_clean', 0)} clean)"
        state = "" if r["active"] else " (expired)"
        lines.append(_row([r["id"] + state, r["action"], r["category"], r["hits"],
                           _r(r["precision"]), extra, r["owner"], r["expires"] or "-"]))  # fmt: skip
    lines += [f"warning: {w}" for w in result["warnings"]]
    return "\n".join(lines)


def write_rules_report(out: Path, result: Mapping[str, Any]) -> str:
    """rules.json and rules.md in `out`; returns the Markdown."""
    text = format_rules_table(result)
    atomic_write_text(out / "rules.json", json.dumps(result, ensure_ascii=False, indent=2))
    atomic_write_text(out / "rules.md", "# Rules beside the model\n\n" + text + "\n")
    return text
