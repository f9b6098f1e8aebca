"""Request bodies to validated listings: the snapshot reader's rules, photos staged per request.

A listing is validated by `parse_row` (the reader's rules, review fields dropped as `mmdetect
predict` drops them). Photos are paths under --images-root (`resolve_image_path`: no escaping
the root) or `{"b64": ...}`; each is read once, within a size limit, into the request's own
directory under the service's staging root (in memory: /dev/shm where it exists) and checked
there by `check_image` (header, size, full decode up to FULL_CHECK_PIXELS). A bad photo is
dropped and reported, the listing is still scored, as the reader and `predict` do. The model
reads the staged copy, so a file changed under --images-root after the check cannot reach it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmdetect.data.images import MAX_PHOTOS, ImageProblem, check_image, resolve_image_path
from mmdetect.data.jsonl import SURROGATE, RowProblem, check_decoded, check_text, loads
from mmdetect.data.records import Listing
from mmdetect.data.rows import parse_row
from mmdetect.serving.decision import REVIEW_FIELDS


@dataclass(frozen=True)
class Limits:
    """What one request may hold; beyond them: 413 (body, listings) or a dropped photo."""

    max_body_bytes: int = 32 << 20
    max_listings: int = 256
    max_photo_bytes: int = 8 << 20  # decoded b64 or file size; phone photos are 2-5 MB
    max_photos: int = MAX_PHOTOS
    # `images` entries a listing may list at all (counted before any file is touched): beyond,
    # the listing is refused; a list of 120,000 paths costs no file system call.
    max_photo_entries: int = 4 * MAX_PHOTOS


class BodyError(ValueError):
    """The body as a whole is unusable: HTTP `status` with a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Parsed:
    """One listing of a request: the validated listing (photos staged) or why it failed."""

    index: int
    id: str | None
    listing: Listing | None = None
    error: dict[str, str] | None = None
    photo_problems: list[dict[str, str]] = field(default_factory=list)


def split_body(raw: bytes, limits: Limits) -> tuple[list[Any], bool, bool]:
    """(rows, batch form?, suspect: some row may hold a duplicated key or an over-long integer)
    from a body: one listing object or {"listings": [...]}."""
    try:
        doc, suspect = loads(raw.decode("utf-8-sig"))  # the snapshot reader's parser
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"body: not UTF-8 at byte {exc.start}") from None
    except RecursionError:
        raise BodyError(400, "body: invalid JSON: nested too deeply") from None
    except ValueError as exc:
        raise BodyError(400, f"body: invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BodyError(400, f"body: expected a JSON object, got {type(doc).__name__}")
    if "listings" in getattr(doc, "duplicates", ()):
        raise BodyError(400, "listings: key appears more than once")
    if "listings" not in doc:
        return [doc], False, suspect
    rows = doc["listings"]
    if not isinstance(rows, list) or not rows:
        raise BodyError(400, "listings: expected a non-empty list of listing objects")
    if len(rows) > limits.max_listings:
        raise BodyError(413, f"listings: {len(rows)} over the limit of {limits.max_listings}")
    return rows, True, suspect


def _row_id(row: Any) -> str | None:
    value = row.get("id") if isinstance(row, dict) else None
    usable = isinstance(value, str) and len(value) <= 256 and not SURROGATE.search(value)
    return value if usable else None  # a lone surrogate cannot be written back as UTF-8


def _is_b64(entry: Any) -> bool:
    return isinstance(entry, dict) and set(entry) == {"b64"} and isinstance(entry["b64"], str)


def _photo_bytes(entry: Any, images_root: Path | None, limits: Limits) -> bytes:
    """The bytes of one `images` entry; ImageProblem with a reader reason if unusable."""
    if isinstance(entry, dict):
        data = entry["b64"]
        if len(data) > limits.max_photo_bytes * 4 // 3 + 4:
            raise ImageProblem("image_too_large", f"b64 photo over {limits.max_photo_bytes} bytes")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageProblem("image_corrupt", f"b64: not base64: {exc}") from None
        if len(raw) > limits.max_photo_bytes:
            raise ImageProblem("image_too_large", f"b64 photo over {limits.max_photo_bytes} bytes")
        return raw
    if images_root is None:
        raise ImageProblem(
            "image_bad_path", f"{entry!r}: no --images-root on this server: send photos as b64"
        )
    path = resolve_image_path(images_root, entry)  # ImageProblem: escapes, missing, bad name
    try:
        if path.stat().st_size > limits.max_photo_bytes:
            raise ImageProblem("image_too_large", f"{entry!r}: over {limits.max_photo_bytes} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise ImageProblem("image_missing", f"{entry!r}: cannot read: {exc.strerror}") from None


class DeadlinePassed(BodyError):
    """Parsing ran past the request's deadline (--timeout-s): 504."""

    def __init__(self) -> None:
        super().__init__(504, "request not parsed within the deadline (--timeout-s)")


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlinePassed()


def stage_photos(
    entries: list[Any], images_root: Path | None, staging: Path, request_dir: str, limits: Limits,
    index: int = 0, deadline: float | None = None,
) -> tuple[tuple[str, ...], list[dict[str, str]]]:  # fmt: skip
    """Stage and check each photo as check_photos does (duplicates once, at most max_photos);
    (paths relative to `staging`, problems). Nothing is written outside staging/request_dir.

    Every distinct entry counts toward max_photos before its file is touched (a missing photo
    too), so a listing costs at most max_photos reads. Staged names are unique per listing
    `index` and entry: `<request_dir>/<index>-<n>` (one listing never reads another's photo)."""
    kept: list[str] = []
    problems: list[dict[str, str]] = []
    seen: set[str] = set()
    entries_seen: set[tuple[str, str]] = set()
    for n, entry in enumerate(entries):
        _check_deadline(deadline)
        where = f"images[{n}]"
        text = ("path", entry) if isinstance(entry, str) else ("b64", entry["b64"])
        if text in entries_seen:
            problems.append({"field": where, "reason": "duplicate_photo", "message": "repeated"})
            continue
        entries_seen.add(text)
        if len(entries_seen) > limits.max_photos:
            problems.append({"field": where, "reason": "photos_over_limit",
                             "message": f"only the first {limits.max_photos} photos are used"})  # fmt: skip
            break
        try:
            raw = _photo_bytes(entry, images_root, limits)
            key = hashlib.sha256(raw).hexdigest()  # the same photo by path, b64 or both: once
            if key in seen:
                problems.append(
                    {"field": where, "reason": "duplicate_photo", "message": "repeated"}
                )
                continue
            seen.add(key)
            rel = f"{request_dir}/{index}-{n}"
            (staging / request_dir).mkdir(exist_ok=True)
            (staging / rel).write_bytes(raw)
            check_image(staging / rel)
            kept.append(rel)
        except ImageProblem as exc:
            problems.append({"field": where, "reason": exc.reason, "message": str(exc)})
    if entries and not kept:
        problems.append({"field": "images", "reason": "all_photos_failed",
                         "message": "scored as a listing without photos"})  # fmt: skip
    return tuple(kept), problems


def parse_listing(
    index: int, row: Any, taxonomy: tuple[str, ...], images_root: Path | None,
    staging: Path, request_dir: str, limits: Limits, deadline: float | None = None,
    suspect: bool = True,
) -> Parsed:  # fmt: skip
    """One row to a Parsed: parse_row's checks with photos replaced by placeholders, then the
    photos staged. The error names the field and the reader's reason."""
    out = Parsed(index, _row_id(row))
    try:
        if not isinstance(row, dict):
            raise RowProblem(
                "not_an_object", "-", f"expected a JSON object, got {type(row).__name__}"
            )
        photos = row.get("images")
        if isinstance(photos, list) and len(photos) > limits.max_photo_entries:
            raise RowProblem("too_many_photos", "images", f"{len(photos)} entries over the "
                             f"limit of {limits.max_photo_entries}")  # fmt: skip
        if suspect:  # duplicate keys, over-long integers: the snapshot reader's rule
            check_decoded(row)
        row = {k: v for k, v in row.items() if k not in REVIEW_FIELDS}
        if isinstance(photos, list):  # b64 objects are not paths: validate placeholders
            if not all(isinstance(p, str) or _is_b64(p) for p in photos):
                raise RowProblem("wrong_type", "images",
                                 'each photo is a path string or {"b64": "<base64>"}')  # fmt: skip
            check_text({"images": photos})  # names the entry: images[3]
            row = {**row, "images": [f"p{i}" for i in range(len(photos))]}
        listing = parse_row(row, taxonomy)
    except RowProblem as exc:
        out.error = {"field": exc.field, "reason": exc.reason, "message": str(exc)}
        return out
    kept, out.photo_problems = stage_photos(
        photos, images_root, staging, request_dir, limits, index, deadline
    )
    out.listing = Listing(**{**listing.__dict__, "images": kept})
    return out


def parse_request(
    raw: bytes, taxonomy: tuple[str, ...], images_root: Path | None, staging: Path, limits: Limits,
    deadline: float | None = None,
) -> tuple[list[Parsed], bool, str]:  # fmt: skip
    """(one Parsed per row, batch form?, request directory under staging to remove after).
    DeadlinePassed (504) once time.monotonic() passes `deadline`, checked per listing and photo."""
    rows, batch, suspect = split_body(raw, limits)
    request_dir = uuid.uuid4().hex
    parsed, seen = [], set()
    try:
        for i, row in enumerate(rows):
            _check_deadline(deadline)
            p = parse_listing(i, row, taxonomy, images_root, staging, request_dir, limits,
                              deadline, suspect)  # fmt: skip
            if p.listing is not None and p.listing.id in seen:
                p.listing, p.error = None, {"field": "id", "reason": "duplicate_id",
                                            "message": f"id {p.id!r} repeated in this request"}  # fmt: skip
            elif p.listing is not None:
                seen.add(p.listing.id)
            parsed.append(p)
    except BaseException:
        remove_request_dir(staging, request_dir)
        raise
    return parsed, batch, request_dir


def remove_request_dir(staging: Path, request_dir: str) -> None:
    shutil.rmtree(staging / request_dir, ignore_errors=True)
