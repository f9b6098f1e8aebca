"""Reading the round trip's files: decisions, explanations, tasks, Label Studio exports.

Each is a file a user hands us: regular files only, bounded in size, every bad row a counted
skip or a one-line error naming file and line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmdetect.data.jsonl import iter_jsonl

MAX_JSON_BYTES = 1 << 30  # a Label Studio export of a few hundred thousand tasks


class ReviewFileError(ValueError):
    """A file of the round trip that cannot be used, worded for the user."""


def regular_file(path: Path, max_bytes: int = MAX_JSON_BYTES) -> Path:
    if not path.exists():
        raise ReviewFileError(f"{path}: no such file")
    if not path.is_file():
        raise ReviewFileError(f"{path}: not a regular file")
    if path.stat().st_size > max_bytes:
        raise ReviewFileError(f"{path}: larger than {max_bytes} bytes")
    return path


def read_json_file(path: Path) -> Any:
    regular_file(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReviewFileError(f"{path}: not JSON: {exc}"[:300]) from None


def _check_decision(row: Any, taxonomy: Sequence[str] | None) -> str | None:
    if not isinstance(row, dict) or not isinstance(row.get("id"), str):
        return "not a decision row with a string id"
    if row.get("decision") not in ("hide", "review", "pass"):
        return f"decision: expected hide, review or pass, got {row.get('decision')!r}"[:160]
    for name in ("scores", "decisions"):
        value = row.get(name)
        if not isinstance(value, dict) or (
            taxonomy is not None and sorted(value) != sorted(taxonomy)
        ):
            return f"{name}: expected one entry per class of the taxonomy"
    scores = row["scores"].values()
    if not all(
        isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s <= 1 for s in scores
    ):
        return "scores: expected numbers in [0, 1]"
    if not all(t in ("hide", "review", "pass") for t in row["decisions"].values()):
        return "decisions: expected hide, review or pass per class"
    return None


def read_decisions(path: Path) -> tuple[list[dict], list[str], dict[str, int]]:
    """(rows, the taxonomy their scores name, skipped by reason); duplicate ids keep the first."""
    regular_file(path)
    rows, seen, skipped, taxonomy = [], set(), {}, None
    for _lineno, row, problem in iter_jsonl(path):
        why = problem and str(problem) or _check_decision(row, taxonomy)
        if why is None and row["id"] in seen:
            why = "duplicate id"
        if why is not None:
            reason = why.split(":")[0]
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        taxonomy = taxonomy or list(row["scores"])
        seen.add(row["id"])
        rows.append(row)
    if not rows:
        raise ReviewFileError(f"{path}: no usable decision row")
    return rows, taxonomy, skipped


def read_explanations(path: Path) -> dict[str, dict]:
    """explanations.jsonl by listing id (the first per id); bad rows are ignored: spans are a
    reviewer's aid, and a task without them is still a task."""
    regular_file(path)
    out: dict[str, dict] = {}
    for _, row, problem in iter_jsonl(path):
        if problem is None and isinstance(row, dict) and isinstance(row.get("id"), str):
            out.setdefault(row["id"], row)
    return out


def read_tasks(path: Path) -> list[dict[str, Any]]:
    """Our tasks file's `data` entries (what review export wrote), validated."""
    tasks = read_json_file(path)
    if not isinstance(tasks, list):
        raise ReviewFileError(f"{path}: expected a JSON list of tasks")
    out = []
    for i, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("listing_id"), str):
            raise ReviewFileError(
                f"{path}: task {i}: not a task written by `mmdetect review export`"
            )
        prob = data.get("inclusion_prob")
        if prob is not None and not (isinstance(prob, (int, float)) and 0 < prob <= 1):
            raise ReviewFileError(f"{path}: task {i}: inclusion_prob must be in (0, 1] or null")
        if data.get("tier") not in ("hide", "review", "pass"):
            raise ReviewFileError(f"{path}: task {i}: tier must be hide, review or pass")
        out.append(data)
    if len({d["listing_id"] for d in out}) != len(out):
        raise ReviewFileError(f"{path}: a listing appears in two tasks")
    return out


def taxonomy_of(tasks: Sequence[dict[str, Any]], path: Path) -> list[str]:
    """The taxonomy the tasks were scored with (every task names the same classes)."""
    names = {tuple(d.get("scores", {})) for d in tasks}
    if len(names) != 1 or not next(iter(names)):
        raise ReviewFileError(f"{path}: the tasks do not share one taxonomy")
    return list(next(iter(names)))
