"""The first pass of `mmdetect shard`: every row validated exactly as the reader does, split, and
cut into parts (JSONL files in the work directory) that the workers then turn into shards.

Row checks are read_snapshot's (parse_row, sampling subsets, duplicate ids) plus the across-
snapshot duplicate check of the training datamodule; each failure is counted by reason, none is
dropped silently. Photos are checked later, per part, in the workers (bounded work per listing).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mmdetect.data.jsonl import RowProblem, iter_jsonl
from mmdetect.data.reader import MANIFEST_FILE, SnapshotError, open_snapshot
from mmdetect.data.records import Listing, Problems, in_period
from mmdetect.data.rows import parse_row
from mmdetect.data.sampling import undescribed

SPLITS = ("none", "time", "hash")


def sha256_file(path: Path) -> str | None:
    """Hex SHA-256 of a file, read in 1 MiB pieces; None when it does not exist."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def hash_fraction(listing_id: str) -> float:
    """The same number as datamodule.hash_fraction (kept here: no Lightning import in workers)."""
    digest = hashlib.sha1(listing_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def subset_of(listing: Listing, split: str, val_from: str | None, val_fraction: float) -> str:
    """`all` without a split; else `train`/`val` for labeled rows and `unlabeled` for the rest
    (training leaves unlabeled rows out; scoring reads every subset)."""
    if split == "none":
        return "all"
    if listing.labels is None:
        return "unlabeled"
    if split == "hash":
        return "val" if hash_fraction(listing.id) < val_fraction else "train"
    return "val" if in_period(listing.created_at, val_from, None) else "train"


def listing_row(listing: Listing) -> dict:
    """A validated listing back in the snapshot format (what the shards store per listing)."""
    return {
        "id": listing.id,
        "title": listing.title,
        "description": listing.description,
        "price": listing.price,
        "category": listing.category,
        "images": list(listing.images),
        "created_at": listing.created_at.isoformat(),
        "labels": None if listing.labels is None else list(listing.labels),
        "label_source": listing.label_source,
        "reviewed_at": None if listing.reviewed_at is None else listing.reviewed_at.isoformat(),
        "subset": listing.subset,
        "inclusion_prob": listing.inclusion_prob,
    }


@dataclass
class SubsetCounts:
    """What the manifest says of one subset."""

    listings: int = 0
    labeled: int = 0
    clean: int = 0
    labels: Counter = field(default_factory=Counter)
    months: Counter = field(default_factory=Counter)

    def add(self, x: Listing) -> None:
        self.listings += 1
        self.months[x.created_at.strftime("%Y-%m")] += 1
        if x.labels is not None:
            self.labeled += 1
            self.clean += not x.labels
            self.labels.update(x.labels)

    def to_json(self, taxonomy: Sequence[str]) -> dict:
        return {
            "listings": self.listings,
            "labeled": self.labeled,
            "clean": self.clean,
            "labels": {name: self.labels.get(name, 0) for name in taxonomy},
            "months": dict(sorted(self.months.items())),
        }


class PartWriter:
    """Validated rows of one subset into part files of at most `part_size` rows."""

    def __init__(self, root: Path, subset: str, part_size: int):
        self.root, self.subset, self.part_size = root, subset, part_size
        self.parts: list[dict] = []
        self.fh: IO | None = None

    def write(self, row: dict) -> None:
        if self.fh is None or self.parts[-1]["rows"] >= self.part_size:
            self.close()
            name = f"part-{self.subset}-{len(self.parts):05d}"
            self.parts.append({"name": name, "subset": self.subset, "rows": 0})
            self.fh = (self.root / f"{name}.jsonl").open("w", encoding="utf-8")
        self.fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.parts[-1]["rows"] += 1

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def plan_sources(
    snapshots: Sequence[Path], out: Path, split: str, val_from: str | None, val_fraction: float,
    part_size: int,
) -> dict:  # fmt: skip
    """Validate every row, write the part files into `out`, return the plan (parts, counts per
    subset, row problems, the training split's log1p prices' mean and std, source checksums)."""
    taxonomy: tuple[str, ...] | None = None
    problems, seen, sources = Problems(), set(), []
    writers: dict[str, PartWriter] = {}
    counts: dict[str, SubsetCounts] = {}
    prices: list[float] = []
    for snap in snapshots:
        listings_path, _, own, subsets = open_snapshot(snap)
        if taxonomy is not None and own != taxonomy:
            raise SnapshotError(f"{snap}: taxonomy {list(own)} differs from {list(taxonomy)}")
        taxonomy, ids_here, rows = own, set(), 0
        for lineno, row, line_problem in iter_jsonl(listings_path):
            rows += 1
            where = f"{listings_path}:{lineno}"
            if line_problem is not None:
                problems.add(line_problem.reason, f"{where}: {line_problem}")
                continue
            try:
                listing = parse_row(row, taxonomy)
            except RowProblem as exc:
                problems.add(exc.reason, f"{where}: {exc.field}: {exc}")
                continue
            if listing.subset is not None and listing.subset not in subsets:
                raise SnapshotError(undescribed(listing.subset, where, snap / MANIFEST_FILE))
            if listing.id in ids_here:
                problems.add("duplicate_id", f"{where}: id: duplicate id {listing.id!r}")
                continue
            ids_here.add(listing.id)
            if listing.id in seen:  # as datamodule.read_items: the first snapshot wins
                problems.add("duplicate_id_across_snapshots", f"{snap}: {listing.id}")
                continue
            seen.add(listing.id)
            subset = subset_of(listing, split, val_from, val_fraction)
            if subset not in writers:
                writers[subset] = PartWriter(out, subset, part_size)
                counts[subset] = SubsetCounts()
            writers[subset].write({**listing_row(listing), "_root": str(snap), "_where": where})
            counts[subset].add(listing)
            if subset in ("train", "all") and listing.price is not None:
                prices.append(math.log1p(listing.price))
        sources.append({
            "path": str(snap), "rows": rows,
            "listings_sha256": sha256_file(listings_path),
            "manifest_sha256": sha256_file(snap / MANIFEST_FILE),
        })  # fmt: skip
    for w in writers.values():
        w.close()
    assert taxonomy is not None
    return {
        "taxonomy": list(taxonomy),
        "sources": sources,
        "parts": [p for w in writers.values() for p in w.parts],
        "subsets": {name: c.to_json(taxonomy) for name, c in sorted(counts.items())},
        "row_problems": {"counts": dict(problems.counts), "examples": problems.examples},
        "price_log1p": price_moments(prices),
    }


def price_moments(values: Sequence[float]) -> dict | None:
    """Mean and population std of log1p prices (what fit_price_stats computes), or None."""
    if not values:
        return None
    import numpy as np

    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": len(values)}
