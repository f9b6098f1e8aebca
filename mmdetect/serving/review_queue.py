"""The review queue `mmdetect predict` writes beside its decisions: the listings sent to human
review, highest priority first, so reviewers who stop early have seen the riskiest ones.

Built from the finished decisions file (not while scoring), so it is complete, ordered across
chunks, and the same whether the run was resumed or not. Written atomically (outputs.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mmdetect.common.outputs import atomic_output


def queue_path(decisions: Path) -> Path:
    """decisions.jsonl -> decisions.review_queue.jsonl, beside it."""
    return decisions.with_name(f"{decisions.stem}.review_queue.jsonl")


def queue_rows(
    decisions: Iterable[Mapping[str, Any]], severity: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """Rows with decision "review", ordered by priority (ties by id), with rank and the class
    that set the priority (highest severity x calibrated score among the flagged ones)."""
    weight = (lambda c: severity.get(c, 1.0)) if severity else (lambda c: 1.0)
    rows = [d for d in decisions if d["decision"] == "review"]
    rows.sort(key=lambda d: (-d["priority"], d["id"]))
    out = []
    for rank, d in enumerate(rows, 1):
        flagged = [c for c, t in d["decisions"].items() if t == "review"]
        top = max(flagged, key=lambda c: weight(c) * d["scores"][c]) if flagged else None
        out.append({"rank": rank, "id": d["id"], "priority": d["priority"], "top_class": top,
                    "flagged": flagged, "scores": d["scores"],
                    "rules": d.get("rules", [])})  # fmt: skip
    return out


def write_review_queue(
    decisions: Path, severity: Mapping[str, float] | None = None, out: Path | None = None
) -> tuple[Path, int]:
    """Read a decisions JSONL, write its review queue; returns (path, listings queued)."""
    out = out or queue_path(decisions)
    with decisions.open(encoding="utf-8") as fh:
        rows = queue_rows((json.loads(line) for line in fh if line.strip()), severity)
    with atomic_output(out) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out, len(rows)
