"""Read and validate a snapshot directory into typed records (docs/snapshot-format.md)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from mmdetect.data.images import ImageProblem, load_image, resolve_image_path
from mmdetect.data.records import Listing, Problems, Snapshot
from mmdetect.data.sampling import SamplingError, parse_sampling, row_fields, undescribed
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY

log = logging.getLogger(__name__)

LISTINGS_FILE = "listings.jsonl"
MANIFEST_FILE = "snapshot.json"
REQUIRED = ("id", "title", "description", "price", "category", "images", "created_at")


class SnapshotError(ValueError):
    """A problem in strict mode, or a snapshot that cannot be read at all."""


class RowProblem(Exception):
    def __init__(self, reason: str, field: str, message: str):
        super().__init__(message)
        self.reason, self.field = reason, field


def parse_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise RowProblem("wrong_type", field, f"expected an ISO 8601 string, got {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RowProblem("bad_date", field, f"not ISO 8601: {value!r}") from exc


def _expect(row: dict, field: str, types: type | tuple[type, ...], nullable: bool = False) -> Any:
    value = row[field]
    if value is None and nullable:
        return None
    # bool is an int subclass in Python; a price of `true` is a type error, not 1 yen.
    if isinstance(value, bool) or not isinstance(value, types):
        raise RowProblem("wrong_type", field, f"wrong type {type(value).__name__}: {value!r}")
    return value


def _price(row: dict) -> int | None:
    value = _expect(row, "price", (int, float), nullable=True)
    if value is None:
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise RowProblem("bad_price", "price", f"not a number: {value!r}")
    if value < 0:
        raise RowProblem("bad_price", "price", f"negative price: {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise RowProblem("bad_price", "price", f"price must be whole yen: {value!r}")
    return int(value)


def _labels(row: dict, taxonomy: Sequence[str]) -> tuple[str, ...] | None:
    if "labels" not in row:
        return None
    labels = _expect(row, "labels", list)
    if not all(isinstance(x, str) for x in labels):
        raise RowProblem("wrong_type", "labels", f"labels must be strings: {labels!r}")
    unknown = sorted(set(labels) - set(taxonomy))
    if unknown:
        raise RowProblem("unknown_label", "labels", f"not in the taxonomy: {unknown}")
    return tuple(dict.fromkeys(labels))


def parse_row(row: Any, taxonomy: Sequence[str]) -> Listing:
    """Validate one decoded JSON row; raises RowProblem naming the field."""
    if not isinstance(row, dict):
        raise RowProblem("not_an_object", "-", f"expected a JSON object, got {type(row).__name__}")
    for field in REQUIRED:
        if field not in row:
            raise RowProblem("missing_field", field, "required field is missing")
    listing_id = _expect(row, "id", str)
    if not listing_id.strip():
        raise RowProblem("empty_id", "id", "id is empty")
    title = _expect(row, "title", str)
    if not title.strip():
        raise RowProblem("empty_title", "title", "title is empty")
    images = _expect(row, "images", list)
    if not all(isinstance(x, str) for x in images):
        raise RowProblem("wrong_type", "images", f"image paths must be strings: {images!r}")
    reviewed = row.get("reviewed_at")
    source = row.get("label_source")
    if source is not None and not isinstance(source, str):
        raise RowProblem("wrong_type", "label_source", f"wrong type: {source!r}")
    try:
        subset, inclusion_prob = row_fields(row)
    except SamplingError as exc:
        raise RowProblem("bad_sampling", exc.field, str(exc)) from exc
    return Listing(
        id=listing_id,
        title=title,
        description=_expect(row, "description", str),
        price=_price(row),
        category=_expect(row, "category", str, nullable=True),
        images=tuple(images),
        created_at=parse_time(row["created_at"], "created_at"),
        labels=_labels(row, taxonomy),
        label_source=source,
        reviewed_at=None if reviewed is None else parse_time(reviewed, "reviewed_at"),
        subset=subset,
        inclusion_prob=inclusion_prob,
    )


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any | None, str | None]]:
    """Yield (line number, decoded object or None, JSON error or None); blank lines are skipped."""
    with path.open(encoding="utf-8", errors="strict") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield lineno, None, str(exc)


def read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise SnapshotError(f"{path}: expected a JSON object")
    return manifest


def check_photos(root: Path, listing: Listing, where: str, problems: Problems) -> Listing:
    """Keep the photos that decode; count each failure; the listing itself always stays."""
    kept = []
    for rel in listing.images:
        try:
            load_image(resolve_image_path(root, rel))
            kept.append(rel)
        except ImageProblem as exc:
            problems.add(exc.reason, f"{where}: images: {exc}")
    if listing.images and not kept:
        problems.add("all_photos_failed", f"{where}: kept as a no-photo listing")
    if len(kept) == len(listing.images):
        return listing
    return Listing(**{**listing.__dict__, "images": tuple(kept)})


def read_snapshot(
    path: str | Path,
    strict: bool = False,
    taxonomy: Sequence[str] | None = None,
    check_images: bool = True,
) -> Snapshot:
    """Load a snapshot directory. Strict: raise on the first problem. Lenient: skip and count."""
    root = Path(path)
    listings_path = root / LISTINGS_FILE
    if not listings_path.is_file():
        raise SnapshotError(f"{root}: no {LISTINGS_FILE} (is this a snapshot directory?)")
    manifest = read_manifest(root)
    try:
        subsets = parse_sampling(manifest, root / MANIFEST_FILE)
    except SamplingError as exc:
        raise SnapshotError(str(exc)) from exc
    if taxonomy is None:
        taxonomy = tuple((manifest or {}).get("taxonomy") or DEFAULT_TAXONOMY)
    problems, listings, seen = Problems(), [], set()

    def fail(reason: str, where: str, message: str) -> None:
        if strict:
            raise SnapshotError(f"{where}: {message}")
        problems.add(reason, f"{where}: {message}")

    for lineno, row, json_error in iter_jsonl(listings_path):
        where = f"{listings_path}:{lineno}"
        if json_error is not None:
            fail("invalid_json", where, f"invalid JSON: {json_error}")
            continue
        try:
            listing = parse_row(row, taxonomy)
        except RowProblem as exc:
            fail(exc.reason, where, f"{exc.field}: {exc}")
            continue
        if listing.subset is not None and listing.subset not in subsets:
            raise SnapshotError(undescribed(listing.subset, where, root / MANIFEST_FILE))
        if listing.id in seen:
            fail("duplicate_id", where, f"id: duplicate id {listing.id!r}")
            continue
        seen.add(listing.id)
        if check_images:
            photo_problems = Problems()
            listing = check_photos(root, listing, where, photo_problems)
            if strict and photo_problems.total:
                raise SnapshotError(next(iter(photo_problems.examples.values()))[0])
            problems.merge(photo_problems)
        listings.append(listing)
    if problems.total:
        log.warning("%s: %d problems: %s", root, problems.total, dict(problems.counts))
    return Snapshot(root, listings, tuple(taxonomy), problems, manifest)
