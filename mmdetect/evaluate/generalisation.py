"""The generalisation gap: one model, one operating point, the evaluated snapshot beside
snapshots written by someone else (an independent-phrasing set, another marketplace's
listings, a later month).

A validation month drawn from the same process as the training data flatters a model; a set
phrased independently shows what it learned. `mmdetect evaluate ... --independent DIR` (any
number of times) adds this table to metrics.json (`generalisation`), writes
generalisation.md beside the report and prints it. Records in, no model (evaluate's rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmdetect.evaluate.metrics import average_precision
from mmdetect.evaluate.operating import tier_codes
from mmdetect.evaluate.predictions import PredictionRecord, records_to_arrays


def set_figures(records: Sequence[PredictionRecord], taxonomy: Sequence[str]) -> dict[str, Any]:
    """AP per class and macro (over classes with positives), and what the served operating
    point does: the share of violating listings it flags (hide or review), the share of clean
    listings it hides and sends to review. `records` carry decisions (apply_operating_point)."""
    labeled = [r for r in records if r.labels is not None]
    if not labeled:
        return {"listings": len(records), "labeled": 0, "macro_ap": None, "classes": {}}
    y, s = records_to_arrays(labeled, taxonomy)
    classes = {c: average_precision(y[:, j], s[:, j]) for j, c in enumerate(taxonomy)}
    aps = [v for v in classes.values() if v is not None]
    overall = tier_codes(labeled, taxonomy)[0]
    bad, clean = y.any(axis=1), ~y.any(axis=1)

    def share(mask: np.ndarray, cond: np.ndarray) -> float | None:
        return float(cond[mask].mean()) if mask.any() else None

    return {
        "listings": len(records),
        "labeled": len(labeled),
        "violating": int(bad.sum()),
        "macro_ap": float(np.mean(aps)) if aps else None,
        "classes": classes,
        "recall_at_operating_point": share(bad, overall > 0),
        "hidden_share_of_violating": share(bad, overall == 2),
        "clean_hidden": share(clean, overall == 2),
        "clean_to_review": share(clean, overall == 1),
    }


def generalisation(
    main: tuple[str, Sequence[PredictionRecord]],
    others: Sequence[tuple[str, Sequence[PredictionRecord]]],
    taxonomy: Sequence[str],
) -> dict[str, Any]:
    """{"taxonomy", "sets": {name: set_figures}, "gap": {name: main macro AP - its macro AP}}."""
    sets = {main[0]: set_figures(main[1], taxonomy)}
    for name, records in others:
        sets[name] = set_figures(records, taxonomy)
    base = sets[main[0]]["macro_ap"]
    gap = {
        name: (base - f["macro_ap"]) if base is not None and f["macro_ap"] is not None else None
        for name, f in sets.items()
        if name != main[0]
    }
    return {"taxonomy": list(taxonomy), "evaluated": main[0], "sets": sets, "gap": gap}


def _f(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def format_generalisation(doc: Mapping[str, Any]) -> str:
    """Markdown: one row per snapshot, then AP per class side by side."""
    names = list(doc["sets"])
    lines = [
        "## Generalisation: the evaluated snapshot beside independent ones",
        "",
        "| snapshot | listings | violating | macro AP | gap | recall at the operating point "
        "| clean hidden | clean to review |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        f = doc["sets"][name]
        gap = doc["gap"].get(name)
        lines.append(
            f"| {name} | {f['listings']} | {f.get('violating', '-')} | {_f(f['macro_ap'])} | "
            f"{'-' if gap is None else f'{gap:+.3f}'} | "
            f"{_f(f.get('recall_at_operating_point'), True)} | "
            f"{_f(f.get('clean_hidden'), True)} | {_f(f.get('clean_to_review'), True)} |"
        )
    lines += ["", "| class | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for c in doc["taxonomy"]:
        row = [_f(doc["sets"][n]["classes"].get(c)) for n in names]
        lines.append(f"| {c} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
