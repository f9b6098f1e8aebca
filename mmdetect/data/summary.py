"""What `mmdetect validate` prints: rows, labels, months, photos, problems."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

from mmdetect.data.records import Snapshot
from mmdetect.data.reviews import MAX_CLOCK_SKEW, future_problem
from mmdetect.data.sampling import format_lines, inclusion_weights
from mmdetect.data.sampling import summarize as sampling_summary


def summarize(snapshot: Snapshot) -> dict:
    """Counts over the listings that passed validation, plus the problems by reason."""
    listings = snapshot.listings
    labeled = snapshot.labeled
    per_label = Counter(label for x in labeled for label in x.labels or ())
    return {
        "snapshot": str(snapshot.root),
        "rows": len(listings),
        "labeled": len(labeled),
        "unlabeled": len(listings) - len(labeled),
        "clean": sum(1 for x in labeled if not x.labels),
        "multi_label": sum(1 for x in labeled if x.labels and len(x.labels) > 1),
        "labels": {name: per_label.get(name, 0) for name in snapshot.taxonomy},
        "months": dict(sorted(Counter(x.created_at.strftime("%Y-%m") for x in listings).items())),
        "photos_per_listing": dict(sorted(Counter(len(x.images) for x in listings).items())),
        "sampling": sampling_summary(snapshot),
        "traffic_weights": inclusion_weights(snapshot) is not None,
        "problems": dict(sorted(snapshot.problems.counts.items())),
        "problem_examples": snapshot.problems.examples,
        "future_reviews": future_reviews(snapshot),
    }


def future_reviews(
    snapshot: Snapshot, now: datetime | None = None, skew: timedelta = MAX_CLOCK_SKEW
) -> dict:
    """Listings whose `reviewed_at` lies in the future: such a label wins every later merge
    of its listing (`feedback merge` refuses these reviews; one already stored shows here)."""
    now = now or datetime.now(timezone.utc)
    ids = [x.id for x in snapshot.listings
           if x.reviewed_at is not None
           and future_problem(x.reviewed_at, "", now, skew) is not None]  # fmt: skip
    return {"count": len(ids), "examples": ids[:5]}


def _table(title: str, counts: dict, total: int) -> list[str]:
    lines = [title]
    for key, n in counts.items():
        share = f"{100 * n / total:5.1f}%" if total else "    -"
        lines.append(f"  {key!s:<20} {n:>7}  {share}")
    return lines


def format_summary(s: dict) -> str:
    rows = s["rows"]
    lines = [
        f"snapshot   {s['snapshot']}",
        f"rows       {rows}  (labeled {s['labeled']}, unlabeled {s['unlabeled']}, "
        f"clean {s['clean']}, multi-label {s['multi_label']})",
    ]
    lines += _table("labels (listings with each label)", s["labels"], s["labeled"])
    lines += _table("months (created_at)", s["months"], rows)
    lines += _table("photos per listing", s["photos_per_listing"], rows)
    lines += format_lines(s["sampling"], s["traffic_weights"])
    if s["problems"]:
        lines.append(f"problems   {sum(s['problems'].values())}")
        for reason, n in s["problems"].items():
            lines.append(f"  {reason:<20} {n:>7}")
            lines += [f"      e.g. {ex}" for ex in s["problem_examples"].get(reason, [])]
    else:
        lines.append("problems   none")
    future = s.get("future_reviews") or {"count": 0}
    if future["count"]:
        lines.append(f"warning    {future['count']} listings reviewed in the future (reviewed_at "
                     f"after now): their labels would outlive every later review; e.g. "
                     f"{', '.join(map(repr, future['examples']))}")  # fmt: skip
    return "\n".join(lines)
