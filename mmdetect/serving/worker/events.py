"""Listing events to validated listings: the HTTP service's parsing (serving/inputs.py), reused.

A message has a field `event`: a JSON object {"event_id": str, "version": str | int (or
"updated_at": ISO time), "listing": a listing in the snapshot's format}, photos as paths under
--images-root or {"b64": ...}; and optionally `published_at` (Unix seconds, for the latency).
The listing goes through `parse_listing` (the snapshot reader's rules, photos staged into a
directory of its own and checked by a full decode). Anything unusable is an EventProblem with
the field and the reader's reason: the worker dead-letters it. By default a photo that fails
its check makes the event a dead letter too (the marketplace re-publishes it with a good photo)
rather than a listing scored without the photo, as `predict` does (--photo-problems score).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mmdetect.data.records import Listing
from mmdetect.serving.inputs import Limits, parse_listing, remove_request_dir
from mmdetect.serving.worker.broker import Message

EVENT_FIELD = "event"
# Photo problems that only drop a repeat or an extra photo: the listing is whole without them.
HARMLESS_PHOTO_PROBLEMS = ("duplicate_photo", "photos_over_limit")
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


class EventProblem(ValueError):
    """Why an event cannot be scored: `reason` (the reader's vocabulary) and `field`."""

    def __init__(self, reason: str, field: str, message: str):
        super().__init__(message)
        self.reason, self.field = reason, field


@dataclass
class Event:
    """A valid listing event: the listing with its photos staged under staging/request_dir."""

    message: Message
    event_id: str
    version: str
    listing: Listing
    request_dir: str
    published_at: float | None = None
    photo_problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The idempotency key of its outputs without the bundle: one decision per version."""
        return f"{self.listing.id}:{self.version}"


def request_dir_of(message: Message) -> str:
    """The staging directory of one delivery (a message claimed again gets another one)."""
    return f"{_SAFE.sub('_', message.id)}-{message.deliveries}-{uuid.uuid4().hex[:8]}"


def _text(fields: dict, name: str) -> str | None:
    raw = fields.get(name.encode(), fields.get(name))
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _version(doc: dict) -> str:
    version = doc.get("version", doc.get("updated_at"))
    if isinstance(version, bool) or not isinstance(version, (str, int)) or version == "":
        raise EventProblem("missing_field", "version",
                           "event: `version` (string or integer) or `updated_at` is required")  # fmt: skip
    version = str(version)
    if len(version) > 128:
        raise EventProblem("wrong_type", "version", "event: version longer than 128 characters")
    return version


def decode_event(message: Message, limits: Limits) -> tuple[dict, str, str, float | None]:
    """(listing row, event id, version, published_at) of a message; EventProblem if unusable."""
    raw = message.fields.get(EVENT_FIELD.encode(), message.fields.get(EVENT_FIELD))
    if raw is None:
        raise EventProblem("missing_field", EVENT_FIELD, f"message has no `{EVENT_FIELD}` field")
    if len(raw) > limits.max_body_bytes:
        raise EventProblem("event_too_large", EVENT_FIELD,
                           f"event: {len(raw)} bytes over the limit of {limits.max_body_bytes}")  # fmt: skip
    try:
        doc = json.loads(raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as exc:
        raise EventProblem(
            "bad_utf8", EVENT_FIELD, f"event: not UTF-8 at byte {exc.start}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise EventProblem("bad_json", EVENT_FIELD, f"event: invalid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("listing"), dict):
        raise EventProblem(
            "not_an_object", "listing", "event: expected an object with a `listing` object"
        )
    event_id = doc.get("event_id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 256:
        raise EventProblem("missing_field", "event_id", "event: `event_id` (string) is required")
    published = _text(message.fields, "published_at")
    try:
        published_at = float(published) if published is not None else None
    except ValueError:
        published_at = None  # only the latency metric reads it
    return doc["listing"], event_id, _version(doc), published_at


def parse_event(
    message: Message, taxonomy: tuple[str, ...], images_root: Path | None, staging: Path,
    limits: Limits, score_photo_problems: bool = False,
) -> Event:  # fmt: skip
    """A valid Event (photos staged: remove staging/event.request_dir after) or EventProblem."""
    row, event_id, version, published_at = decode_event(message, limits)
    request_dir = request_dir_of(message)
    parsed = parse_listing(0, row, taxonomy, images_root, staging, request_dir, limits)
    if parsed.error is not None:
        e = parsed.error
        raise EventProblem(e["reason"], f"listing.{e['field']}", e["message"])
    bad = [p for p in parsed.photo_problems if p["reason"] not in HARMLESS_PHOTO_PROBLEMS]
    if bad and not score_photo_problems:
        remove_request_dir(staging, request_dir)  # the good photos staged before the bad one
        first = next(p for p in bad if p["field"] != "images") if len(bad) > 1 else bad[0]
        raise EventProblem(first["reason"], f"listing.{first['field']}", first["message"])
    return Event(message, event_id, version, parsed.listing, request_dir, published_at,
                 parsed.photo_problems)  # fmt: skip
