"""Reading listings from JSONL row by row (bad rows are counted skips) and scoring them in
chunks through a Predictor: what `mmdetect predict`, Ray scoring, benchmarks and explain share.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmdetect.data.dataset import Item
from mmdetect.data.images import check_header
from mmdetect.data.jsonl import decode_line, iter_file_lines
from mmdetect.data.reader import RowProblem, checked_photos
from mmdetect.data.records import Listing, Problems
from mmdetect.data.rows import parse_row
from mmdetect.policy import TIERS
from mmdetect.serving.decision import REVIEW_FIELDS, Decision
from mmdetect.serving.predictor import Predictor
from mmdetect.serving.prefetch import Prefetch

log = logging.getLogger(__name__)


# The GIL switch interval while scoring (None: Python's 5 ms). Each time the model returns, this
# thread waits for the prefetch thread to give the GIL back, up to one interval. Process-wide:
# set by the CLI's loop, restored after it.
SWITCH_INTERVAL_S: float | None = None


@dataclass
class RunSummary:
    """What `mmdetect predict` did: rows read, scored, resumed, skipped (by reason), decisions."""

    rows: int = 0
    scored: int = 0
    resumed: int = 0  # already in the partial output a --resume continued from
    skipped: Counter = field(default_factory=Counter)
    photos: Problems = field(default_factory=Problems)
    decisions: Counter = field(default_factory=Counter)

    def format(self) -> str:
        def counts(c: Counter) -> str:
            return ", ".join(f"{k} {n}" for k, n in sorted(c.items())) or "none"

        overall = ", ".join(f"{t} {self.decisions[t]}" for t in reversed(TIERS))
        lines = [f"rows read: {self.rows}", f"scored: {self.scored}"]
        if self.resumed:
            lines.append(f"resumed (already written by the interrupted run): {self.resumed}")
        return "\n".join(
            [
                *lines,
                f"skipped: {sum(self.skipped.values())} ({counts(self.skipped)})",
                f"photo problems (listing still scored): {counts(self.photos.counts)}",
                f"decisions: {overall}",
            ]
        )


def parse_line(raw: bytes | None, taxonomy: Sequence[str]) -> Listing:
    """One input line to a Listing; RowProblem (with a reason) for anything unusable."""
    row = decode_line(raw)  # RowProblem for bad UTF-8 or JSON; a BOM is dropped
    if isinstance(row, dict):
        row = {k: v for k, v in row.items() if k not in REVIEW_FIELDS}
    return parse_row(row, taxonomy)


def read_items(
    fh, path: Path, root: Path, taxonomy: Sequence[str], summary: RunSummary,
    done: Set[str] = frozenset(), check: Callable[[Path], object] | None = check_header,
) -> Iterator[Item]:  # fmt: skip
    """Stream valid listings from a binary file, photos resolved once and checked from their
    headers (no pixel is decoded here); count every skipped row and photo. Ids in `done`
    (written before a resume) are counted as resumed and not yielded. `check`: the photo check;
    None: paths only (bad, escaping, missing, duplicate, over the limit), the header is checked
    where the photo is opened to be decoded (Predictor.stream(checked=False))."""
    check = check or _path_only
    seen: set[str] = set()
    for lineno, raw in iter_file_lines(fh):  # None: a line over MAX_LINE_BYTES, skipped
        summary.rows += 1
        where = f"{path}:{lineno}"
        try:
            listing = parse_line(raw, taxonomy)
        except RowProblem as exc:
            summary.skipped[exc.reason] += 1
            log.debug("%s: %s: %s", where, exc.field, exc)
            continue
        if listing.id in seen:
            summary.skipped["duplicate_id"] += 1
            continue
        seen.add(listing.id)
        if listing.id in done:
            summary.resumed += 1
            continue
        listing, paths = checked_photos(root, listing, where, summary.photos, check=check)
        yield Item(listing, root, paths)


def _path_only(path: Path) -> None:
    """read_items' photo check when the header is checked later, at the photo's one open."""


def read_listings(
    fh, path: Path, root: Path, taxonomy: Sequence[str], summary: RunSummary,
    done: Set[str] = frozenset(),
) -> Iterator[Listing]:  # fmt: skip
    """read_items' listings (photo paths as written in the file)."""
    return (item.listing for item in read_items(fh, path, root, taxonomy, summary, done))


def chunked(items: Iterator[Item], size: int, first: int | None = None) -> Iterator[list[Item]]:
    """Lists of `size` items (the first of `first`, when given), the last one shorter."""
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == (first or size):
            yield chunk
            chunk, first = [], None
    if chunk:
        yield chunk


def score_chunk(
    predictor: Predictor, chunk: Sequence[Item], summary: RunSummary,
    probs: np.ndarray | Exception | None = None,
) -> list[Decision]:  # fmt: skip
    """Decisions for a chunk, from its probabilities when Predictor.stream scored it (None:
    scored here); if the batch failed, listing by listing so one bad row costs one."""
    ids = [it.listing.id for it in chunk]
    if isinstance(probs, np.ndarray):
        return predictor.decide(ids, probs, [it.listing for it in chunk])
    if probs is None:
        try:
            return predictor.predict_batch(chunk, summary.photos)
        except Exception as exc:  # noqa: BLE001 (isolate the culprit, keep the run going)
            probs = exc
    log.error("a chunk failed (%s: %s); scoring its %d listings one by one",
              type(probs).__name__, probs, len(chunk))  # fmt: skip
    out = []
    for item in chunk:
        try:
            out.extend(predictor.predict_batch([item], summary.photos))
        except Exception as exc:  # noqa: BLE001
            summary.skipped["scoring_error"] += 1
            log.error("%s: scoring failed: %s", item.listing.id, exc)
    return out


def score_stream(
    predictor: Predictor, chunks: Iterable[Sequence[Item]], summary: RunSummary,
    checked: bool = True,
) -> Prefetch:  # fmt: skip
    """The decisions of each chunk, in order: batches prepared ahead by Predictor.stream (the
    chunk iterator runs on its thread, started now), decided here, chunk by chunk. checked
    False: the chunks come from read_items(check=None) (each photo opened once, in the loader).
    close() stops the reading thread."""
    stream = predictor.stream(chunks, summary.photos, checked)

    def decided() -> Iterator[list[Decision]]:
        before = sys.getswitchinterval()
        if SWITCH_INTERVAL_S:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:
            for chunk, probs in stream:
                yield score_chunk(predictor, chunk, summary, probs)
        finally:
            sys.setswitchinterval(before)

    return Prefetch(decided(), stream.close)
