"""`mmdetect shard`: snapshots to LitData-optimised shards, resumable part by part.

Layout of OUT (placed atomically: built in `.OUT.shard-work/` beside it, renamed at the end):
  manifest.json        taxonomy, counts per subset, months, problems by reason, source checksums,
                       image size, price statistics of the training subset, litdata version
  train/ val/ unlabeled/ (with --split) or all/   one LitData dataset each (index.json, chunks)

Resume: litdata's own checkpointing does not cover our per-listing generator of problems, so the
work is cut into parts (`--part-size` validated rows of one subset); each part is one
`litdata.optimize` call (parallel over `--workers` processes) into its own directory, marked
done by a summary file written after it completed and its row count was checked. A rerun with
the same sources and options keeps the plan and every done part, redoes only the others, and
then merges: no finished work is redone and no row is written twice.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mmdetect.common.extras import require
from mmdetect.common.outputs import atomic_write_text
from mmdetect.data.images import MAX_PHOTOS, ImageProblem
from mmdetect.data.reader import checked_photos
from mmdetect.data.records import Problems
from mmdetect.data.rows import parse_row
from mmdetect.data.shard_format import FORMAT
from mmdetect.data.shard_photos import encode_photo, pack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardOptions:
    split: str = "none"
    val_from: str | None = None
    val_fraction: float = 0.15
    image_size: int = 64
    max_photos: int = 4  # photos stored per listing (the model's max_photos may not exceed it)
    quality: int = 95  # JPEG quality of re-encoded photos
    interpolation: str = "bilinear"
    chunk_bytes: str | None = "64MB"
    chunk_size: int | None = None
    part_size: int = 20_000
    workers: int = 2

    def key(self) -> dict:
        """What a resumed run must share with the interrupted one (not workers, not chunking)."""
        keep = ("split", "val_from", "val_fraction", "image_size", "max_photos", "quality",
                "interpolation", "part_size")  # fmt: skip
        return {k: getattr(self, k) for k in keep}


class PartRows:
    """litdata.optimize's `fn`: row number in one part file -> one stored sample.

    Photos are checked as the reader checks them (check_image on at most MAX_PHOTOS distinct
    paths), the first `max_photos` kept ones encoded (photos.encode_photo); problems go to one
    JSONL file per worker process, summed when the part is done."""

    def __init__(
        self, part_file: Path, problems_dir: Path, taxonomy: list[str], opts: ShardOptions
    ):
        self.part_file, self.problems_dir = part_file, problems_dir
        self.taxonomy, self.opts = taxonomy, opts
        self._rows: list[dict] | None = None

    def rows(self) -> list[dict]:
        if self._rows is None:
            with self.part_file.open(encoding="utf-8") as fh:
                self._rows = [json.loads(line) for line in fh]
        return self._rows

    def __call__(self, i: int) -> dict:
        full = self.rows()[i]
        root, where = Path(full["_root"]), full["_where"]
        row = {k: v for k, v in full.items() if not k.startswith("_")}
        listing = parse_row(row, self.taxonomy)  # validated in the plan: cannot fail here
        problems = Problems()
        listing, paths = checked_photos(root, listing, where, problems, MAX_PHOTOS)
        blobs, kept = [], []
        for rel, path in zip(listing.images, paths, strict=True):
            if len(blobs) == self.opts.max_photos:
                break
            try:
                blobs.append(encode_photo(path, self.opts.image_size, self.opts.quality,
                                          self.opts.interpolation))  # fmt: skip
                kept.append(rel)
            except ImageProblem as exc:
                problems.add(exc.reason, f"{where}: images: {exc}")
        stored = {**row, "images": kept}
        self.note(listing.id, problems, len(kept))
        return {"id": listing.id, "listing": json.dumps(stored, ensure_ascii=False),
                "photos": pack(blobs)}  # fmt: skip

    def note(self, listing_id: str, problems: Problems, photos: int) -> None:
        line = {"id": listing_id, "photos": photos, "problems": problems.examples,
                "counts": dict(problems.counts)}  # fmt: skip
        with (self.problems_dir / f"worker-{os.getpid()}.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")


def run_part(work: Path, part: dict, taxonomy: list[str], opts: ShardOptions) -> dict:
    """One part through litdata.optimize into work/done/NAME; its summary (photo problems,
    photos per listing), written last: its presence marks the part done."""
    litdata = require("litdata", "mmdetect shard")
    name = part["name"]
    tmp, final = work / "tmp" / name, work / "done" / name
    shutil.rmtree(tmp, ignore_errors=True)  # what an interrupted attempt left
    shutil.rmtree(final, ignore_errors=True)
    (tmp / "problems").mkdir(parents=True)
    fn = PartRows(work / "plan" / f"{name}.jsonl", tmp / "problems", taxonomy, opts)
    chunking = (
        {"chunk_size": opts.chunk_size} if opts.chunk_size else {"chunk_bytes": opts.chunk_bytes}
    )
    litdata.optimize(
        fn=fn, inputs=list(range(part["rows"])), output_dir=str(tmp / "data"),
        num_workers=max(1, min(opts.workers, part["rows"])), reorder_files=False,
        verbose=False, start_method="fork" if os.name == "posix" else None, **chunking,
    )  # fmt: skip
    index = json.loads((tmp / "data" / "index.json").read_text())
    written = sum(c["chunk_size"] for c in index["chunks"])
    problems, photos, notes = Problems(), Counter(), set()
    for f in sorted((tmp / "problems").glob("worker-*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            note = json.loads(line)
            notes.add(note["id"])
            photos[note["photos"]] += 1
            for reason, n in note["counts"].items():
                problems.add(reason, (note["problems"].get(reason) or ["-"])[0], n)
    if written != part["rows"] or len(notes) != part["rows"]:
        raise RuntimeError(f"{name}: {part['rows']} rows planned, {written} written, "
                           f"{len(notes)} processed")  # fmt: skip
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp / "data", final)
    summary = {**part, "problems": {"counts": dict(problems.counts), "examples": problems.examples},
               "photos_per_listing": {str(k): v for k, v in sorted(photos.items())}}  # fmt: skip
    atomic_write_text(work / "done" / f"{name}.json", json.dumps(summary, ensure_ascii=False))
    shutil.rmtree(tmp, ignore_errors=True)
    return summary


def merge_parts(work: Path, parts: list[dict], dest: Path) -> dict[str, int]:
    """Each subset's parts into dest/SUBSET as one LitData dataset: chunk files hard-linked (the
    parts stay intact until the whole output is placed, so a kill here loses nothing), chunk
    names renumbered, one index.json. Returns the chunks per subset."""
    chunks_per: dict[str, int] = {}
    for subset in dict.fromkeys(p["subset"] for p in parts):
        out, index, chunks = dest / subset, None, []
        out.mkdir(parents=True)
        for part in (p for p in parts if p["subset"] == subset):
            src = work / "done" / part["name"]
            own = json.loads((src / "index.json").read_text())
            index = index or own
            if own["config"] != index["config"]:
                raise RuntimeError(f"{part['name']}: chunk config differs from the first part's")
            for chunk in own["chunks"]:
                new = f"chunk-0-{len(chunks)}.bin"
                try:
                    os.link(src / chunk["filename"], out / new)
                except OSError:  # another file system: copy
                    shutil.copyfile(src / chunk["filename"], out / new)
                chunks.append({**chunk, "filename": new})
        (out / "index.json").write_text(json.dumps({**index, "chunks": chunks}))
        chunks_per[subset] = len(chunks)
    return chunks_per


def build_manifest(plan: dict, summaries: list[dict], chunks: dict[str, int],
                   opts: ShardOptions) -> dict:  # fmt: skip
    """manifest.json: what training, scoring and a reader of the shards need to know."""
    litdata = require("litdata", "mmdetect shard")
    problems = Problems()
    problems.merge(
        Problems(Counter(plan["row_problems"]["counts"]), plan["row_problems"]["examples"])
    )
    photos: Counter = Counter()
    for s in summaries:
        problems.merge(Problems(Counter(s["problems"]["counts"]), s["problems"]["examples"]))
        photos.update({int(k): v for k, v in s["photos_per_listing"].items()})
    subsets = {name: {**c, "chunks": chunks.get(name, 0)} for name, c in plan["subsets"].items()}
    return {
        "format": FORMAT,
        "taxonomy": plan["taxonomy"],
        "split": {"kind": opts.split, "val_from": opts.val_from, "val_fraction": opts.val_fraction},
        "subsets": subsets,
        "rows_read": sum(s["rows"] for s in plan["sources"]),
        "photos": {
            "image_size": opts.image_size,
            "max_photos": opts.max_photos,
            "jpeg_quality": opts.quality,
            "interpolation": opts.interpolation,
            "stored_per_listing": {str(k): v for k, v in sorted(photos.items())},
        },  # fmt: skip
        "price_log1p": plan["price_log1p"],
        "problems": dict(sorted(problems.counts.items())),
        "problem_examples": problems.examples,
        "sources": plan["sources"],
        "litdata_version": litdata.__version__,
        "chunking": {"chunk_bytes": opts.chunk_bytes, "chunk_size": opts.chunk_size},
    }
