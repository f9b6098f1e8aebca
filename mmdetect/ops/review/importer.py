"""Label Studio's JSON export back to reviews.jsonl rows that `feedback merge` reads.

A task is mapped to its listing through the tasks file we exported, never through what the export
claims: the listing id, tier and inclusion probability come from our own file, so a tampered
export can at most spoil its own task's answer, never change another listing's label or an
inclusion probability. Every task that yields no review is counted under its reason.

Several annotators on one task: per class, a class is labeled when more than half of the
(non-skipped) annotations chose it; a class chosen by exactly half is a tie and the task yields
no review (`annotator_tie`), so a disagreement is never resolved silently. Agreement per class is
the share of multi-annotated tasks whose annotators all agree on that class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from mmdetect.ops.review.labeling import CHOICES, NONE, NOTE

MAX_NOTE_CHARS = 2000  # a note is a reviewer's sentence; the rest is cut and counted
MAX_REVIEWER_CHARS = 200
MAX_EXAMPLES = 5
# Label Studio stamps updated_at microseconds after created_at on a fresh annotation.
CHANGED_AFTER_S = 1.0


class ImportProblem(Exception):
    """One task or annotation the importer cannot use; `reason` is what is counted."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    """One annotator's answer on one task."""

    labels: frozenset[str]
    reviewer: str
    when: datetime
    changed: bool
    note: str


@dataclass
class ImportReport:
    tasks: int = 0
    reviews: int = 0
    annotations: int = 0
    changed: int = 0
    notes_cut: int = 0
    multi_annotated: int = 0
    duplicate_tasks: int = 0  # a listing's second task: its answers join the first's
    skipped: Counter = field(default_factory=Counter)  # tasks that gave no review, by reason
    annotations_skipped: Counter = field(default_factory=Counter)  # unusable answers, by reason
    examples: list[str] = field(default_factory=list)
    agree: Counter = field(default_factory=Counter)  # class -> multi-annotated tasks agreeing

    def skip(self, reason: str, message: str) -> None:
        """A task (or listing) that yields no review."""
        self.skipped[reason] += 1
        self._example(message)

    def skip_annotation(self, reason: str, message: str) -> None:
        """One answer left out; its task may still yield a review from the others."""
        self.annotations_skipped[reason] += 1
        self._example(message)

    def _example(self, message: str) -> None:
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(message[:300])

    def to_json(self, taxonomy: Sequence[str]) -> dict[str, Any]:
        n = self.multi_annotated
        agreement = {c: (self.agree[c] / n if n else None) for c in taxonomy}
        return {"tasks": self.tasks, "reviews": self.reviews, "annotations": self.annotations,
                "changed_annotations": self.changed, "notes_cut": self.notes_cut, "duplicate_tasks": self.duplicate_tasks,
                "tasks_without_review": sum(self.skipped.values()),
                "tasks_without_review_by_reason": dict(self.skipped),
                "annotations_skipped_by_reason": dict(self.annotations_skipped),
                "examples": self.examples, "multi_annotated_tasks": n,
                "agreement_per_class": agreement}  # fmt: skip


def parse_when(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise ImportProblem(
            "wrong_type", f"{name}: expected an ISO 8601 string, got {value!r}"[:160]
        )
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ImportProblem("bad_time", f"{name}: not an ISO 8601 time: {value!r}"[:160]) from None
    if when.tzinfo is None:
        raise ImportProblem("bad_time", f"{name}: no UTC offset: {value!r}"[:160])
    return when


def reviewer_of(value: Any) -> str:
    """Label Studio writes `completed_by` as a user id or, with details, an object with email."""
    if isinstance(value, bool):
        raise ImportProblem("wrong_type", f"completed_by: unexpected {value!r}")
    if isinstance(value, int):
        return f"labelstudio:{value}"
    if isinstance(value, dict) and isinstance(value.get("email"), str):
        return value["email"][:MAX_REVIEWER_CHARS]
    if isinstance(value, dict) and isinstance(value.get("id"), int):
        return f"labelstudio:{value['id']}"
    raise ImportProblem("wrong_type", f"completed_by: unexpected {value!r}"[:160])


def parse_answer(ann: Any, taxonomy: Sequence[str], report: ImportReport) -> Answer | None:
    """One annotation; None for a skipped (cancelled) one; ImportProblem for a bad one."""
    if not isinstance(ann, dict):
        raise ImportProblem(
            "wrong_type", f"annotation: expected an object, got {type(ann).__name__}"
        )
    if ann.get("was_cancelled") is True:
        return None
    result = ann.get("result")
    if not isinstance(result, list):
        raise ImportProblem("wrong_type", "annotation.result: expected a list")
    chosen: set[str] | None = None
    note = ""
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise ImportProblem("wrong_type", "annotation.result: an item is not an object")
        if item.get("from_name") == CHOICES:
            values = item["value"].get("choices")
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ImportProblem("wrong_type", "choices: expected a list of strings")
            chosen = (chosen or set()) | set(values)
        elif item.get("from_name") == NOTE:
            texts = item["value"].get("text")
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise ImportProblem("wrong_type", "note: expected a list of strings")
            note = "\n".join(texts)
    if chosen is None:
        raise ImportProblem("no_choice", "the annotation chose no category (not even 'none')")
    unknown = sorted(chosen - set(taxonomy) - {NONE})
    if unknown:
        raise ImportProblem("unknown_label", f"not in the taxonomy: {unknown}"[:200])
    if NONE in chosen and len(chosen) > 1:
        raise ImportProblem(
            "none_with_class", f"'none' chosen together with {sorted(chosen - {NONE})}"
        )
    created = parse_when(ann.get("created_at"), "created_at")
    updated = parse_when(ann.get("updated_at", ann.get("created_at")), "updated_at")
    if len(note) > MAX_NOTE_CHARS:
        note = note[:MAX_NOTE_CHARS]
        report.notes_cut += 1
    return Answer(frozenset(chosen - {NONE}), reviewer_of(ann.get("completed_by")),
                  max(created, updated), (updated - created).total_seconds() > CHANGED_AFTER_S, note)  # fmt: skip


def resolve(answers: Sequence[Answer], taxonomy: Sequence[str], report: ImportReport) -> frozenset:
    """The majority rule of the module docstring; ImportProblem on a tie."""
    if len(answers) == 1:
        return answers[0].labels
    report.multi_annotated += 1
    votes = Counter(c for a in answers for c in a.labels)
    for c in taxonomy:
        report.agree[c] += votes[c] in (0, len(answers))
    tied = sorted(c for c, v in votes.items() if 2 * v == len(answers))
    if tied:
        raise ImportProblem("annotator_tie", f"{len(answers)} annotators split evenly on {tied}")
    return frozenset(c for c, v in votes.items() if 2 * v > len(answers))


def future(when: datetime, now: datetime, skew_s: float = 600.0) -> bool:
    return (when - now).total_seconds() > skew_s


def task_reviews(
    export: Any, ours: Mapping[str, Mapping[str, Any]], taxonomy: Sequence[str],
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], ImportReport]:  # fmt: skip
    """reviews.jsonl rows (one per listing) from a Label Studio JSON export and our tasks file's
    entries by listing id; the report counts every task that gave none, by reason."""
    now = now or datetime.now(timezone.utc)
    report = ImportReport()
    if not isinstance(export, list):
        raise ImportProblem(
            "wrong_type", f"expected a JSON list of tasks, got {type(export).__name__}"
        )
    answers: dict[str, list[Answer]] = {}
    cancelled: set[str] = set()
    for i, task in enumerate(export):
        report.tasks += 1
        where = f"task {i}"
        try:
            if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
                raise ImportProblem("wrong_type", "a task is not an object with `data`")
            where = f"task {task.get('id', i)!r}"[:80]
            listing_id = task["data"].get("listing_id")
            if not isinstance(listing_id, str) or listing_id not in ours:
                raise ImportProblem(
                    "unknown_task", f"listing_id {listing_id!r} is not in the tasks file"[:160]
                )
            if listing_id in answers:
                report.duplicate_tasks += 1
                report._example(f"{where}: {listing_id}: a second task of this listing; pooled")
            anns = task.get("annotations", [])
            if not isinstance(anns, list):
                raise ImportProblem("wrong_type", "annotations: expected a list")
            bucket = answers.setdefault(listing_id, [])
            for ann in anns:
                report.annotations += 1
                try:
                    answer = parse_answer(ann, taxonomy, report)
                except ImportProblem as exc:
                    report.skip_annotation(exc.reason, f"{where}: {exc}")
                    continue
                if answer is None:
                    cancelled.add(listing_id)
                    report.skip_annotation("cancelled", f"{where}: the reviewer skipped it")
                elif future(answer.when, now):
                    report.skip_annotation(
                        "future_time",
                        f"{where}: reviewed at {answer.when.isoformat()}, in the future",
                    )
                else:
                    report.changed += answer.changed
                    bucket.append(answer)
        except ImportProblem as exc:
            report.skip(exc.reason, f"{where}: {exc}")
    rows = []
    for listing_id, group in answers.items():
        if not group:
            reason = "skipped_by_reviewer" if listing_id in cancelled else "no_annotation"
            report.skip(reason, f"{listing_id}: no usable annotation")
            continue
        try:
            labels = resolve(group, taxonomy, report)
        except ImportProblem as exc:
            report.skip(exc.reason, f"{listing_id}: {exc}")
            continue
        rows.append(review_row(listing_id, labels, group, ours[listing_id], taxonomy))
    report.reviews = len(rows)
    return rows, report


def review_row(
    listing_id: str, labels: frozenset, group: Sequence[Answer], ours: Mapping[str, Any],
    taxonomy: Sequence[str],
) -> dict[str, Any]:  # fmt: skip
    """One reviews.jsonl row: labels in taxonomy order, the latest answer's time, every reviewer."""
    last = max(group, key=lambda a: a.when)
    notes = [a.note for a in group if a.note]
    return {"id": listing_id, "labels": [c for c in taxonomy if c in labels],
            "reviewed_at": last.when.isoformat(), "reviewer": ",".join(sorted({a.reviewer for a in group}))[:MAX_REVIEWER_CHARS],
            "note": "\n".join(notes)[:MAX_NOTE_CHARS], "annotators": len(group),
            "source": ours.get("source"), "tier": ours.get("tier"),
            "inclusion_prob": ours.get("inclusion_prob"), "model_version": ours.get("model_version"),
            "decisions": ours.get("decisions")}  # fmt: skip
