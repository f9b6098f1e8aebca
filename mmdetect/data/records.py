"""Typed records of a labeled snapshot (see docs/snapshot-format.md)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
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


def in_period(created: datetime, start: str | None, end: str | None) -> bool:
    """created_at within [start, end); naive bounds are read in the listing's own local time."""
    for bound, inside in ((start, lambda c, b: c >= b), (end, lambda c, b: c < b)):
        if bound is None:
            continue
        b = datetime.fromisoformat(bound)
        c = created.replace(tzinfo=None) if b.tzinfo is None else created
        if not inside(c, b):
            return False
    return True
