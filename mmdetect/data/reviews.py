"""Reviewers' decisions (reviews.jsonl): one row per decision, validated like snapshot rows,
and the winning decision per listing (latest `reviewed_at`; equal times go to the later line).

`mmdetect feedback merge` (mmdetect/ops/feedback.py) folds the winners into a snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mmdetect.data.jsonl import RowProblem, check_text, iter_jsonl
from mmdetect.data.records import Problems
from mmdetect.data.rows import parse_id, parse_time

MAX_EXAMPLES = 5
# A review decided "in the future" would win every later merge of its listing (9999-12-31 beats
# every genuine review): refused beyond this much clock difference between the reviewers'
# machines and this one (`feedback merge --max-clock-skew-min`).
MAX_CLOCK_SKEW = timedelta(minutes=10)


def future_problem(when: datetime, value: str, now: datetime, skew: timedelta) -> str | None:
    """Why a review time is refused as being in the future (None: it is not)."""
    if when <= now + skew:
        return None
    limit = int(skew.total_seconds() // 60)
    return (f"{value!r} is in the future (now {now.isoformat(timespec='seconds')}, "
            f"{limit} min of clock skew allowed)")  # fmt: skip


class FeedbackError(ValueError):
    """Inputs a merge cannot use (or, with strict, a bad review row), worded for the user."""


@dataclass(frozen=True)
class Review:
    id: str
    labels: tuple[str, ...]
    reviewed_at: str  # as written: the merged row carries it unchanged
    when: datetime  # parsed, timezone-aware
    line: int


def parse_review(
    row: Any, taxonomy: Sequence[str], line: int, now: datetime | None = None,
    skew: timedelta = MAX_CLOCK_SKEW,
) -> Review:  # fmt: skip
    """Validate one decoded reviews.jsonl row; raises RowProblem naming the field (a
    `reviewed_at` later than `now` + `skew` is `future_time`; `now` None: the clock)."""
    if not isinstance(row, dict):
        raise RowProblem("not_an_object", "-", f"expected a JSON object, got {type(row).__name__}")
    for name in ("id", "labels", "reviewed_at"):
        if name not in row:
            raise RowProblem("missing_field", name, "required field is missing")
    check_text(row)
    listing_id = parse_id(row)
    labels = row["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise RowProblem(
            "wrong_type", "labels", f"expected a list of strings, got {labels!r}"[:120]
        )
    unknown = sorted(set(labels) - set(taxonomy))
    if unknown:
        raise RowProblem("unknown_label", "labels", f"not in the taxonomy: {unknown}"[:200])
    when = parse_time(row["reviewed_at"], "reviewed_at", require_offset=True)
    why = future_problem(when, row["reviewed_at"], now or datetime.now(timezone.utc), skew)
    if why is not None:
        raise RowProblem("future_time", "reviewed_at", why)
    reviewer = row.get("reviewer")
    if reviewer is not None and not isinstance(reviewer, str):
        raise RowProblem("wrong_type", "reviewer", f"expected a string, got {reviewer!r}"[:120])
    return Review(listing_id, tuple(dict.fromkeys(labels)), row["reviewed_at"], when, line)


def read_reviews(
    path: Path, taxonomy: Sequence[str], strict: bool = False, skew: timedelta = MAX_CLOCK_SKEW
) -> tuple[list[Review], Problems]:
    """Valid reviews in file order, and the skipped rows counted per reason (file:line);
    review times later than now + `skew` are skipped as `future_time`."""
    reviews, problems = [], Problems(max_examples=MAX_EXAMPLES)
    now = datetime.now(timezone.utc)
    try:
        for lineno, row, line_problem in iter_jsonl(path):
            where = f"{path}:{lineno}"
            try:
                if line_problem is not None:
                    raise line_problem
                reviews.append(parse_review(row, taxonomy, lineno, now, skew))
            except RowProblem as exc:
                if strict:
                    raise FeedbackError(f"{where}: {exc.field}: {exc}") from exc
                problems.add(exc.reason, f"{where}: {exc.field}: {exc}")
    except OSError as exc:
        raise FeedbackError(f"{path}: cannot read reviews: {exc}") from exc
    return reviews, problems


@dataclass
class Resolution:
    """The winning review per id, and the ids whose reviews disagree."""

    winners: dict[str, Review] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)  # examples, one line each
    n_conflicts: int = 0  # ids with >1 review whose label sets differ
    n_ties: int = 0  # ...of which the latest time is shared: decided by line order


def resolve(reviews: Sequence[Review]) -> Resolution:
    by_id: dict[str, list[Review]] = {}
    for r in reviews:
        by_id.setdefault(r.id, []).append(r)
    out = Resolution()
    for listing_id, group in by_id.items():
        group = sorted(group, key=lambda r: (r.when, r.line))
        winner = out.winners[listing_id] = group[-1]
        if len({frozenset(r.labels) for r in group}) < 2:
            continue
        out.n_conflicts += 1
        tied = [r for r in group if r.when == winner.when]
        out.n_ties += len({frozenset(r.labels) for r in tied}) > 1
        if len(out.conflicts) < MAX_EXAMPLES:
            seen = ", ".join(f"{list(r.labels)} at {r.reviewed_at} (line {r.line})" for r in group)
            out.conflicts.append(f"{listing_id}: {seen} -> {list(winner.labels)}")
    return out
