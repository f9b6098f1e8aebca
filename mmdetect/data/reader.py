"""Read and validate a snapshot directory into typed records (docs/snapshot-format.md)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmdetect.common.inputs_check import InputFileError, check_input_file
from mmdetect.data.images import MAX_PHOTOS, ImageProblem, check_image, resolve_image_path
from mmdetect.data.jsonl import CONTROL, RowProblem, check_text, iter_jsonl
from mmdetect.data.records import Listing, Problems, Snapshot
from mmdetect.data.rows import parse_row
from mmdetect.data.sampling import SamplingError, parse_sampling, undescribed
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY

log = logging.getLogger(__name__)

LISTINGS_FILE = "listings.jsonl"
MANIFEST_FILE = "snapshot.json"
MAX_MANIFEST_BYTES = 16 << 20
PHOTO_NOTES = ("duplicate_photo", "photos_over_limit")  # counted, but not errors in strict mode


class SnapshotError(ValueError):
    """A problem in strict mode, or a snapshot that cannot be read at all."""


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
