"""`mmdetect feedback merge`: review decisions + a snapshot → a new, labeled snapshot.

The input snapshot is never modified. Per listing id the review with the latest `reviewed_at`
wins (the file is not in time order); equal times go to the later line. Merged rows keep every
original field and get `labels`, `label_source: "review"` and `reviewed_at` from the winning
review; listings without a review are written back byte for byte. Photos are hard-linked (copied
when linking fails, e.g. across devices), never re-encoded. The new snapshot is written to a
temporary directory beside `--out` and renamed into place, so it appears complete or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mmdetect.artifacts.bundle_format import sha256_file
from mmdetect.common.inputs_check import InputFileError, check_input_file
from mmdetect.common.staging import OWNER_FILE, TMP_INFIX, clean_stale_temporaries, owner
from mmdetect.data.jsonl import RowProblem, decode_line, iter_lines
from mmdetect.data.reader import (
    LISTINGS_FILE,
    MANIFEST_FILE,
    SnapshotError,
    read_manifest,
    read_snapshot,
)
from mmdetect.data.reviews import (
    MAX_CLOCK_SKEW,
    MAX_EXAMPLES,
    FeedbackError,
    Review,
    read_reviews,
    resolve,
)
from mmdetect.data.rows import parse_time
from mmdetect.data.sampling import SamplingError, merged_sampling
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY

LABEL_SOURCE = "review"


def _link_or_copy(src: str, dst: str) -> str:
    """Hard link (same bytes, no space); a plain copy where linking fails (other device)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_paths(snapshot: Path, reviews: Path, out: Path) -> None:
    if not (snapshot / LISTINGS_FILE).exists():
        raise FeedbackError(f"{snapshot}: no {LISTINGS_FILE} (is this a snapshot directory?)")
    if not reviews.exists():
        raise FeedbackError(f"{reviews}: no such reviews file")
    try:  # a FIFO or /dev/zero would block or never end
        check_input_file(snapshot / LISTINGS_FILE)
        check_input_file(reviews, "reviews file")
    except InputFileError as exc:
        raise FeedbackError(str(exc)) from None
    if out.exists() or out.is_symlink():
        raise FeedbackError(f"{out} exists; a merge writes a new snapshot, choose another --out")
    if _is_within(out.resolve(), snapshot.resolve()):
        raise FeedbackError(
            f"{out} is inside the input snapshot {snapshot}; inputs stay as they are"
        )


def _dumps(obj: dict, indent: int | None = None) -> bytes:
    """UTF-8 JSON; lone surrogates (a row the reader skips, a path from undecodable bytes) are
    written escaped, as ASCII JSON, instead of failing the write."""
    try:
        return json.dumps(obj, ensure_ascii=False, indent=indent).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, indent=indent).encode("ascii")


def merge_rows(
    listings: Path, winners: dict[str, Review], counts: Counter, subset: str | None = None
) -> tuple[list[bytes], set[str]]:
    """Output lines of listings.jsonl, and the ids seen. Rows without a review pass verbatim
    (bad bytes and bad JSON included: the reader skips and counts them downstream), but a leading
    BOM is dropped and a line over MAX_LINE_BYTES is left out and counted (`dropped_lines`)."""
    lines, seen = [], set()
    for _, raw in iter_lines(listings):
        if raw is None:
            counts["dropped_lines"] += 1
            continue
        raw = raw.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")
        try:
            row = decode_line(raw)
        except RowProblem:
            row = None
        listing_id = row.get("id") if isinstance(row, dict) else None
        if not isinstance(listing_id, str):  # a list or dict as id must not reach a set
            listing_id = None
        review = winners.get(listing_id) if listing_id is not None else None
        if listing_id is not None:
            seen.add(listing_id)
        if review is None or _is_newer_label(row, review):
            counts["older_than_listing"] += review is not None
            lines.append(raw)
            continue
        old = row.get("labels")
        row.update(labels=list(review.labels), label_source=LABEL_SOURCE,
                   reviewed_at=review.reviewed_at)  # fmt: skip
        if old is None and subset is not None:  # it enters the labeled set by review
            row.setdefault("subset", subset)
        counts["applied"] += 1
        counts["newly_labeled"] += old is None
        counts["changed"] += old is not None and (
            not isinstance(old, list) or set(map(str, old)) != set(review.labels)
        )
        lines.append(_dumps(row))
    return lines, seen


def _is_newer_label(row: dict, review: Review) -> bool:
    """The listing already carries a label decided after this review: it stays."""
    if row.get("labels") is None or not isinstance(row.get("reviewed_at"), str):
        return False
    try:
        when = parse_time(row["reviewed_at"], "reviewed_at", require_offset=True)
    except RowProblem:
        return False
    return when > review.when


def snapshot_counts(root: Path, taxonomy: Sequence[str]) -> dict[str, Any]:
    snap = read_snapshot(root, taxonomy=taxonomy, check_images=False)
    labeled = snap.labeled
    per_label = Counter(label for x in labeled for label in x.labels)
    return {
        "listings": len(snap.listings),
        "labeled": len(labeled),
        "unlabeled": len(snap.listings) - len(labeled),
        "clean": sum(1 for x in labeled if not x.labels),
        "labels": {name: per_label[name] for name in taxonomy},
        "months": dict(
            sorted(Counter(x.created_at.strftime("%Y-%m") for x in snap.listings).items())
        ),
        "skipped_rows": dict(snap.problems.counts),
    }


def merge_reviews(
    snapshot: str | Path,
    reviews: str | Path,
    out: str | Path,
    strict: bool = False,
    name: str | None = None,
    review_rate: float | None = None,
    max_clock_skew: timedelta = MAX_CLOCK_SKEW,
) -> dict[str, Any]:
    """Write the merged snapshot at `out`; returns its manifest plus `examples` of problems.
    Reviews dated after now + `max_clock_skew` are skipped and counted (`future_time`)."""
    snapshot, reviews, out = Path(snapshot), Path(reviews), Path(out)
    check_paths(snapshot, reviews, out)
    try:
        parent = read_manifest(snapshot) or {}
        sampling, subset = merged_sampling(
            parent, snapshot / MANIFEST_FILE, reviews.name, review_rate
        )
    except (SnapshotError, SamplingError) as exc:
        raise FeedbackError(str(exc)) from exc
    taxonomy = tuple(parent.get("taxonomy") or DEFAULT_TAXONOMY)
    valid, skipped = read_reviews(reviews, taxonomy, strict, max_clock_skew)
    resolution = resolve(valid)
    counts: Counter = Counter()
    lines, seen = merge_rows(snapshot / LISTINGS_FILE, resolution.winners, counts, subset)
    unknown = sorted(
        (r for i, r in resolution.winners.items() if i not in seen), key=lambda r: r.line
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stale = clean_stale_temporaries(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_INFIX}", dir=out.parent))
    except OSError as exc:
        raise FeedbackError(f"{out}: cannot create the output: {exc}") from exc
    try:
        (tmp / OWNER_FILE).write_text(json.dumps(owner()), encoding="utf-8")
        top = {LISTINGS_FILE, MANIFEST_FILE}
        ignore = lambda d, names: [n for n in names if Path(d) == snapshot and n in top]  # noqa: E731
        shutil.copytree(snapshot, tmp, symlinks=True, ignore=ignore,
                        copy_function=_link_or_copy, dirs_exist_ok=True)  # fmt: skip
        (tmp / LISTINGS_FILE).write_bytes(b"".join(x + b"\n" for x in lines))
        # the subsets the rows name must be described before snapshot_counts reads them back
        (tmp / MANIFEST_FILE).write_text(
            json.dumps({"taxonomy": list(taxonomy), "sampling": sampling}), encoding="utf-8"
        )
        parent_name = parent.get("name") or snapshot.resolve().name
        review_counts = {
            "rows": len(valid) + skipped.total,
            "valid": len(valid),
            "ids": len(resolution.winners),
            "applied": counts["applied"],
            "changed": counts["changed"],
            "newly_labeled": counts["newly_labeled"],
            "conflicts": resolution.n_conflicts,
            "ties": resolution.n_ties,
            "unknown_ids": len(unknown),
            "older_than_listing": counts["older_than_listing"],
            "skipped": skipped.total,
            "skipped_by_reason": dict(skipped.counts),
        }
        manifest = {
            "name": name or parent_name.removesuffix("+reviews") + "+reviews",
            "taxonomy": list(taxonomy),
            "parents": [
                {
                    "kind": "snapshot",
                    "name": parent_name,
                    "path": str(snapshot),
                    "listings_sha256": sha256_file(snapshot / LISTINGS_FILE),
                },
                {"kind": "reviews", "path": str(reviews), "sha256": sha256_file(reviews)},
            ],
            "sampling": sampling,
            "counts": {
                **snapshot_counts(tmp, taxonomy),
                "dropped_input_lines": counts["dropped_lines"],
                "reviews": review_counts,
            },
            "description": f"{parent_name} with the review decisions of {reviews.name} merged "
            "by `mmdetect feedback merge` (latest reviewed_at wins per id).",
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / MANIFEST_FILE).write_bytes(_dumps(manifest, indent=2) + b"\n")
        if out.exists():
            raise FeedbackError(f"{out} appeared while merging; nothing written")
        (tmp / OWNER_FILE).unlink()
        tmp.rename(out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # unreadable photo, full disk: a one-line error
            raise FeedbackError(f"{out}: cannot write the merged snapshot: {exc}") from exc
        raise
    examples = {
        "stale_temporaries": stale,
        "conflicts": resolution.conflicts,
        "unknown_ids": [f"{reviews}:{r.line}: {r.id}" for r in unknown[:MAX_EXAMPLES]],
        "skipped": skipped.examples,
    }
    return {**manifest, "examples": examples}
