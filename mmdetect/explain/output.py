"""What `explain` and `evaluate --explain-errors` write: explanations.jsonl and
explanations.html (with photo thumbnails), atomically. Shared by explain/cli.py and
explain/errors.py, so neither imports the other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmdetect.common.outputs import atomic_write_text
from mmdetect.data.dataset import Item
from mmdetect.explain.html import render, thumbnail

JSONL, HTML = "explanations.jsonl", "explanations.html"


def photo_thumbs(item: Item, expl: dict[str, Any]) -> list[str | None]:
    """A thumbnail per explained photo, from the path the reader resolved and checked."""
    from mmdetect.data.images import ImageProblem, resolve_image_path

    paths = dict(zip(item.listing.images, item.paths or (), strict=False))
    out = []
    for p in expl["photos"]:
        path = paths.get(p["path"])
        if path is None:
            try:
                path = resolve_image_path(item.root, p["path"])
            except ImageProblem:
                path = None
        out.append(thumbnail(path))
    return out


def write_outputs(out: Path, explanations: list[dict], thumbs: list, title: str) -> None:
    """out/explanations.jsonl (one explanation a line) and out/explanations.html (the cards)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = "".join(json.dumps(e, ensure_ascii=False, allow_nan=False) + "\n" for e in explanations)
    atomic_write_text(out / JSONL, rows)
    atomic_write_text(out / HTML, render(explanations, thumbs, title))
