"""Listing texts for pretraining: title and description of every row of listings JSONL files.

Any JSONL with string `title` / `description` fields will do (a snapshot's listings.jsonl, the
unlabeled traffic, an export of a marketplace's listings); labels and photos are not read.
A row without text is counted and skipped; a file with no usable text is an error naming it.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from mmdetect.data.jsonl import RowProblem, decode_line, iter_lines

log = logging.getLogger(__name__)


class CorpusError(ValueError):
    """A pretraining corpus that cannot be used; one line naming the file."""


def corpus_file(path: str | Path) -> Path:
    """A JSONL file, or a snapshot directory's listings.jsonl."""
    p = Path(path)
    if p.is_dir():
        p = p / "listings.jsonl"
    if not p.is_file():
        raise CorpusError(f"{p}: no such corpus file (a listings JSONL or a snapshot directory)")
    return p


def read_texts(path: str | Path) -> list[tuple[str, str]]:
    """(title, description) of each row with some text; skipped rows are counted in the log."""
    p = corpus_file(path)
    pairs: list[tuple[str, str]] = []
    skipped: Counter[str] = Counter()
    try:
        for _, raw in iter_lines(p):
            try:
                row = decode_line(raw)
            except RowProblem as exc:
                skipped[exc.reason] += 1
                continue
            if not isinstance(row, dict):
                skipped["not_an_object"] += 1
                continue
            title, desc = row.get("title"), row.get("description")
            title = title if isinstance(title, str) else ""
            desc = desc if isinstance(desc, str) else ""
            if not (title.strip() or desc.strip()):
                skipped["no_text"] += 1
                continue
            pairs.append((title, desc))
    except OSError as exc:
        raise CorpusError(f"{p}: unreadable corpus: {exc}") from None
    if skipped:
        log.warning("%s: skipped %d rows: %s", p, sum(skipped.values()), dict(skipped))
    if not pairs:
        why = ", ".join(f"{n} {k}" for k, n in skipped.items()) or "the file is empty"
        raise CorpusError(f"{p}: no usable text (no row has a title or description: {why})")
    return pairs
