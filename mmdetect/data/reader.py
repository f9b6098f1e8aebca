"""Read and validate a snapshot directory into typed records (docs/snapshot-format.md)."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from mmdetect.common.inputs_check import InputFileError, check_input_file
from mmdetect.data.images import MAX_PHOTOS, ImageProblem, check_image, resolve_image_path
from mmdetect.data.jsonl import CONTROL, RowProblem, check_text, iter_jsonl
from mmdetect.data.records import Listing, Problems, Snapshot, check_datetime
from mmdetect.data.sampling import SamplingError, parse_sampling, row_fields, undescribed
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY

log = logging.getLogger(__name__)

LISTINGS_FILE = "listings.jsonl"
MANIFEST_FILE = "snapshot.json"
REQUIRED = ("id", "title", "description", "price", "category", "images", "created_at")
# Ten billion yen: far above any marketplace price, and log1p of it is an exact float (10**400
# parses as a Python int and overflows every float conversion downstream).
MAX_PRICE = 10**10
MAX_ID_CHARS = 256  # ids end up in logs, file names and reports
MAX_MANIFEST_BYTES = 16 << 20
PHOTO_NOTES = ("duplicate_photo", "photos_over_limit")  # counted, but not errors in strict mode


class SnapshotError(ValueError):
    """A problem in strict mode, or a snapshot that cannot be read at all."""


def parse_time(value: Any, field: str, require_offset: bool = False) -> datetime:
    """An ISO 8601 string to a timezone-aware datetime (naive = UTC, or an error when
    `require_offset`); RowProblem otherwise."""
    if not isinstance(value, str):
        raise RowProblem("wrong_type", field, f"expected an ISO 8601 string, got {value!r}"[:120])
    if len(value) > 64:
        raise RowProblem("bad_date", field, f"not ISO 8601: {value[:64]!r}...")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if require_offset and parsed.tzinfo is None:
            raise RowProblem("bad_date", field, f"no UTC offset: {value!r}")
        return check_datetime(parsed)
    except ValueError as exc:
        raise RowProblem("bad_date", field, f"not ISO 8601: {value!r}") from exc
    except OverflowError as exc:
        raise RowProblem("bad_date", field, f"out of range: {value!r}") from exc


def _expect(row: dict, field: str, types: type | tuple[type, ...], nullable: bool = False) -> Any:
    value = row[field]
    if value is None and nullable:
        return None
    # bool is an int subclass in Python; a price of `true` is a type error, not 1 yen.
    if isinstance(value, bool) or not isinstance(value, types):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "..."
        raise RowProblem("wrong_type", field, f"wrong type {type(value).__name__}: {shown}")
    return value


def _price(row: dict) -> int | None:
    value = _expect(row, "price", (int, float), nullable=True)
    if value is None:
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise RowProblem("bad_price", "price", f"not a number: {value!r}")
    if value < 0:
        raise RowProblem("bad_price", "price", f"negative price: {value!r}")
    if value > MAX_PRICE:
        shown = f"{value:.3g}" if isinstance(value, float) else f"{len(str(value))}-digit number"
        raise RowProblem("bad_price", "price", f"over the {MAX_PRICE} yen limit: {shown}")
    if isinstance(value, float) and not value.is_integer():
        raise RowProblem("bad_price", "price", f"price must be whole yen: {value!r}")
    return int(value)


def _labels(row: dict, taxonomy: Sequence[str]) -> tuple[str, ...] | None:
    """Absent or null = unlabeled; [] = reviewed and clean."""
    if row.get("labels") is None:
        return None
    labels = _expect(row, "labels", list)
    if not all(isinstance(x, str) for x in labels):
        raise RowProblem("wrong_type", "labels", f"labels must be strings: {labels!r}"[:120])
    unknown = sorted(set(labels) - set(taxonomy))
    if unknown:
        raise RowProblem("unknown_label", "labels", f"not in the taxonomy: {unknown}"[:200])
    return tuple(dict.fromkeys(labels))


def parse_id(row: dict) -> str:
    """A non-empty string of at most MAX_ID_CHARS, without control characters."""
    listing_id = _expect(row, "id", str)
    if not listing_id.strip():
        raise RowProblem("empty_id", "id", "id is empty")
    if len(listing_id) > MAX_ID_CHARS or CONTROL.search(listing_id):
        shown = repr(listing_id[:40]) + ("..." if len(listing_id) > 40 else "")
        raise RowProblem(
            "bad_id", "id", f"over {MAX_ID_CHARS} characters or control characters: {shown}"
        )
    return listing_id


def parse_row(row: Any, taxonomy: Sequence[str]) -> Listing:
    """Validate one decoded JSON row; raises RowProblem naming the field."""
    if not isinstance(row, dict):
        raise RowProblem("not_an_object", "-", f"expected a JSON object, got {type(row).__name__}")
    for field in REQUIRED:
        if field not in row:
            raise RowProblem("missing_field", field, "required field is missing")
    check_text(row)
    listing_id = parse_id(row)
    title = _expect(row, "title", str)
    if not title.strip():
        raise RowProblem("empty_title", "title", "title is empty")
    images = _expect(row, "images", list)
    if not all(isinstance(x, str) for x in images):
        raise RowProblem("wrong_type", "images", f"image paths must be strings: {images!r}"[:120])
    reviewed = row.get("reviewed_at")
    source = row.get("label_source")
    if source is not None and not isinstance(source, str):
        raise RowProblem("wrong_type", "label_source", f"wrong type: {source!r}"[:120])
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


def check_taxonomy(value: Any, where: str) -> tuple[str, ...]:
    """A taxonomy must be a non-empty list of distinct, non-empty class names."""
    if not isinstance(value, list) or not value:
        raise SnapshotError(f"{where}: taxonomy: expected a non-empty list of class names, "
                            f"got {value!r}"[:200])  # fmt: skip
    for name in value:
        if not isinstance(name, str) or not name.strip() or CONTROL.search(name):
            raise SnapshotError(f"{where}: taxonomy: not a class name: {name!r}"[:200])
        check_text_or_fail(name, where)
    dupes = sorted({x for x in value if value.count(x) > 1})
    if dupes:
        raise SnapshotError(f"{where}: taxonomy: duplicate class names {dupes}")
    return tuple(value)


def check_text_or_fail(value: Any, where: str) -> None:
    try:
        check_text(value)
    except RowProblem as exc:
        raise SnapshotError(f"{where}: taxonomy: {exc}") from None


def read_manifest(root: Path) -> dict | None:
    """snapshot.json, checked: a JSON object; `taxonomy` a list of class names; `name` a string."""
    path = root / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        if os.stat(path).st_size > MAX_MANIFEST_BYTES:
            raise SnapshotError(f"{path}: over {MAX_MANIFEST_BYTES} bytes: not a manifest")
        manifest = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, RecursionError, OSError) as exc:  # JSON, UTF-8, directory, permissions
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise SnapshotError(f"{path}: expected a JSON object")
    if manifest.get("taxonomy") is not None:
        manifest["taxonomy"] = list(check_taxonomy(manifest["taxonomy"], str(path)))
    if manifest.get("name") is not None and not isinstance(manifest["name"], str):
        raise SnapshotError(f"{path}: name: expected a string, got {manifest['name']!r}"[:200])
    return manifest


def check_photos(
    root: Path, listing: Listing, where: str, problems: Problems, max_photos: int = MAX_PHOTOS
) -> Listing:
    """Keep the photos that pass check_image; count each failure; the listing always stays.

    Duplicate paths (also `a.jpg` vs `./a.jpg`) are checked once and dropped; only the first
    `max_photos` distinct paths are checked, the rest are dropped and counted.
    """
    return checked_photos(root, listing, where, problems, max_photos)[0]


def checked_photos(
    root: Path, listing: Listing, where: str, problems: Problems, max_photos: int = MAX_PHOTOS,
    check: Callable[[Path], object] | None = None,
) -> tuple[Listing, tuple[Path, ...]]:  # fmt: skip
    """check_photos with another photo check (default check_image), also returning the kept
    photos' resolved paths (the snapshot root is resolved once per listing)."""
    check = check or check_image
    kept, seen, paths = [], set(), []
    try:
        resolved_root = root.resolve()
    except (OSError, RuntimeError):  # each photo then fails with its own reason
        resolved_root = None
    for n, rel in enumerate(listing.images):
        try:
            path = resolve_image_path(root, rel, resolved_root)
            if path in seen:
                problems.add("duplicate_photo", f"{where}: images: {rel!r}")
                continue
            seen.add(path)
            if len(seen) > max_photos:
                problems.add("photos_over_limit", f"{where}: images: {len(listing.images) - n} "
                             f"paths after the first {max_photos} photos dropped")  # fmt: skip
                break
            check(path)
            kept.append(rel)
            paths.append(path)
        except ImageProblem as exc:
            problems.add(exc.reason, f"{where}: images: {exc}")
    if listing.images and not kept:
        problems.add("all_photos_failed", f"{where}: kept as a no-photo listing")
    if tuple(kept) != listing.images:
        listing = Listing(**{**listing.__dict__, "images": tuple(kept)})
    return listing, tuple(paths)


def open_snapshot(root: Path) -> tuple[Path, dict | None, tuple[str, ...], dict]:
    """(listings.jsonl, the manifest, its taxonomy or the default, its sampling subsets) of a
    snapshot directory; SnapshotError when it is not one or its manifest is bad."""
    listings_path = root / LISTINGS_FILE
    if root.exists() and not root.is_dir():
        raise SnapshotError(f"{root}: not a directory (a snapshot is a directory)")
    if not listings_path.exists():
        raise SnapshotError(f"{root}: no {LISTINGS_FILE} (is this a snapshot directory?)")
    try:  # a FIFO blocks and /dev/zero never ends: only a regular file is read
        check_input_file(listings_path)
    except InputFileError as exc:
        raise SnapshotError(str(exc)) from None
    manifest = read_manifest(root)
    try:
        subsets = parse_sampling(manifest, root / MANIFEST_FILE)
    except SamplingError as exc:
        raise SnapshotError(str(exc)) from exc
    taxonomy = tuple((manifest or {}).get("taxonomy") or DEFAULT_TAXONOMY)
    return listings_path, manifest, taxonomy, subsets


def read_snapshot(
    path: str | Path,
    strict: bool = False,
    taxonomy: Sequence[str] | None = None,
    check_images: bool = True,
    max_photos: int = MAX_PHOTOS,
) -> Snapshot:
    """Load a snapshot directory. Strict: raise on the first problem. Lenient: skip and count.

    Photos are checked (check_photos, at most `max_photos` per listing) unless `check_images`
    is False; strict mode does not stop at duplicate or surplus photo paths, it counts them.
    """
    root = Path(path)
    listings_path, manifest, own_taxonomy, subsets = open_snapshot(root)
    taxonomy = own_taxonomy if taxonomy is None else taxonomy
    problems, listings, seen = Problems(), [], set()

    def fail(reason: str, where: str, message: str) -> None:
        if strict:
            raise SnapshotError(f"{where}: {message}")
        problems.add(reason, f"{where}: {message}")

    try:
        for lineno, row, line_problem in iter_jsonl(listings_path):
            where = f"{listings_path}:{lineno}"
            if line_problem is not None:
                fail(line_problem.reason, where, str(line_problem))
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
                listing = check_photos(root, listing, where, photo_problems, max_photos)
                failed = [r for r in photo_problems.counts if r not in PHOTO_NOTES]
                if strict and failed:
                    raise SnapshotError(photo_problems.examples[failed[0]][0])
                problems.merge(photo_problems)
            listings.append(listing)
    except OSError as exc:  # permissions, an I/O error mid-read
        raise SnapshotError(f"{listings_path}: cannot read: {exc}") from exc
    if problems.total:
        log.warning("%s: %d problems: %s", root, problems.total, dict(problems.counts))
    return Snapshot(root, listings, tuple(taxonomy), problems, manifest)
