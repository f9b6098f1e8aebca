"""One listings.jsonl row parsed and validated into a Listing (docs/snapshot-format.md):
ids, times, prices, labels; errors name the field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mmdetect.data.jsonl import CONTROL, RowProblem, check_text
from mmdetect.data.records import Listing, check_datetime
from mmdetect.data.sampling import SamplingError, row_fields

REQUIRED = ("id", "title", "description", "price", "category", "images", "created_at")


# Ten billion yen: far above any marketplace price, and log1p of it is an exact float (10**400
# parses as a Python int and overflows every float conversion downstream).
MAX_PRICE = 10**10


MAX_ID_CHARS = 256  # ids end up in logs, file names and reports


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
