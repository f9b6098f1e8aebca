"""Typed records of a labeled snapshot (see docs/snapshot-format.md)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path


@dataclass(frozen=True)
class Listing:
    """One marketplace listing as stored in `listings.jsonl`.

    `images` are paths relative to the snapshot directory that passed validation.
    `labels` is None for an unlabeled listing and () for one reviewed as clean.
    """

    id: str
    title: str
    description: str
    price: int | None
    category: str | None
    images: tuple[str, ...]
    created_at: datetime
    labels: tuple[str, ...] | None
    label_source: str | None = None
    reviewed_at: datetime | None = None
    subset: str | None = None  # the sampling subset it was drawn in (mmdetect/data/sampling.py)
    inclusion_prob: float | None = None  # its own inclusion probability, when known


@dataclass
class Problems:
    """Counted problems found while reading; `examples` keeps the first few per reason."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 3

    def add(self, reason: str, where: str, n: int = 1) -> None:
        self.counts[reason] += n
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.max_examples:
            shown.append(where)

    def merge(self, other: Problems) -> None:
        for reason, n in other.counts.items():
            self.counts[reason] += n
            shown = self.examples.setdefault(reason, [])
            shown.extend(other.examples.get(reason, [])[: self.max_examples - len(shown)])

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Snapshot:
    """A loaded snapshot: its directory, listings that passed, and what was skipped."""

    root: Path
    listings: list[Listing]
    taxonomy: tuple[str, ...]
    problems: Problems
    manifest: dict | None = None

    def image_path(self, rel: str) -> Path:
        return self.root / rel

    @property
    def labeled(self) -> list[Listing]:
        return [x for x in self.listings if x.labels is not None]


def check_datetime(value: datetime) -> datetime:
    """Naive times are read as UTC (docs/snapshot-format.md), so any two compare; raises
    OverflowError for a time whose UTC instant lies outside datetime's range (year 1 at +14:00)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value.astimezone(timezone.utc)
    return value


def parse_date_bound(text: str | None, flag: str) -> datetime | None:
    """A period bound given on a command line (`--created-from`), or None when not given.

    An ISO 8601 date or date-time. A bound without a UTC offset is a wall-clock time, compared
    with each listing's own local time (2026-09-01 = midnight where the listing was created); one
    with an offset is an instant. Raises ValueError naming the flag.
    """
    if text is None:
        return None
    hint = "e.g. 2026-09-01 or 2026-09-01T00:00:00+09:00"
    if not isinstance(text, str) or not text.strip() or len(text) > 64:
        raise ValueError(f"{flag}: not an ISO date: {text!r} ({hint})")
    try:
        bound = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if bound.tzinfo is not None:
            check_datetime(bound)
    except (ValueError, OverflowError):
        raise ValueError(f"{flag}: not an ISO date: {text!r} ({hint})") from None
    return bound


def in_period(created: datetime, start: datetime | str | None, end: datetime | str | None) -> bool:
    """created_at within [start, end). Strings are parsed by parse_date_bound (ValueError if bad).

    A naive bound is compared with the listing's wall-clock time, an aware one as an instant; a
    naive `created` is read as UTC. No combination raises TypeError.
    """
    created = check_datetime(created)
    for flag, bound, inside in (
        ("period start", start, lambda c, b: c >= b),
        ("period end", end, lambda c, b: c < b),
    ):
        if isinstance(bound, str):
            bound = parse_date_bound(bound, flag)
        if bound is None:
            continue
        c = created.replace(tzinfo=None) if bound.tzinfo is None else created
        if not inside(c, bound):
            return False
    return True
