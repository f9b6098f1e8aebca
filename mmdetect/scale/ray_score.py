"""Batch scoring on Ray Data: read → map_batches(ScoreActor) → decisions, as `mmdetect predict`.

Reading. JSONL inputs are cut into byte ranges, each read by a Ray task that returns raw lines
(a line belongs to the range its first byte lies in; over-long lines are skipped as iter_lines
skips them); rows are then parsed by predict's own parse_line. (`ray.data.read_json` infers one
Arrow schema per block, so one hostile row fails the block, and `read_text` splits lines on
U+2028 as well; neither gives predict's per-row reasons.) Shards (`mmdetect shard` output) are
read by index ranges through LitData's StreamingDataset.

Scoring. ScoreActor loads the bundle once per actor (a Predictor: the preprocessing of predict,
reused, not re-implemented) and scores its batch through serve.score_chunk: the same decisions
as `predict`, bad rows counted by the same reasons. A shard's stored photos are written to a
per-batch temporary directory and go through the same photo path as files.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmdetect.data.jsonl import MAX_LINE_BYTES

JPEG_MAGIC = b"\xff\xd8\xff"
RANGE_BYTES = 8 << 20  # bytes of JSONL per read task


def order(file: int, pos: int) -> int:
    """One sortable key per input row: input file, then byte offset (or shard index)."""
    return (int(file) << 44) + int(pos)


def jsonl_ranges(
    paths: list[Path], roots: list[Path], range_bytes: int = RANGE_BYTES
) -> list[dict]:
    """Byte ranges of each file: the read tasks' inputs, in input order."""
    out = []
    for n, (path, root) in enumerate(zip(paths, roots, strict=True)):
        size = path.stat().st_size
        for start in range(0, max(size, 1), range_bytes):
            out.append({"path": str(path), "root": str(root), "file": n, "start": start,
                        "end": min(start + range_bytes, size)})  # fmt: skip
    return out


def read_range(task: dict) -> Iterator[dict]:
    """The lines that start inside [start, end) of one file, with their byte offset as order."""
    start, end = int(task["start"]), int(task["end"])
    with open(task["path"], "rb") as fh:
        if start > 0:
            fh.seek(start - 1)
            if fh.read(1) != b"\n":
                fh.readline()  # the line in progress belongs to the previous range
        while (pos := fh.tell()) < end:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):
                    raw = fh.readline(1 << 20)
                raw = b""  # decode_line's line_too_long
            elif not raw.strip():
                continue
            yield {"kind": "jsonl", "raw": raw, "photos": b"", "root": task["root"],
                   "where": f"{task['path']}:byte {pos}", "order": order(task["file"], pos)}  # fmt: skip


def shard_ranges(dirs: list[Path], per_task: int = 512) -> list[dict]:
    """Index ranges of each shard dataset (a directory with index.json)."""
    out = []
    for n, d in enumerate(dirs):
        index = json.loads((d / "index.json").read_text())
        total = sum(c["chunk_size"] for c in index["chunks"])
        for start in range(0, total, per_task):
            out.append({"path": str(d), "file": n, "start": start,
                        "end": min(start + per_task, total)})  # fmt: skip
    return out


_SHARDS: dict[str, Any] = {}


def read_shard_range(task: dict) -> Iterator[dict]:
    """The stored listings [start, end) of one shard dataset (LitData random access)."""
    from litdata import StreamingDataset

    ds = _SHARDS.setdefault(task["path"], None) or StreamingDataset(task["path"])
    _SHARDS[task["path"]] = ds
    for i in range(int(task["start"]), int(task["end"])):
        sample = ds[i]
        yield {"kind": "shard", "raw": sample["listing"].encode("utf-8"),
               "photos": sample["photos"], "root": "", "where": f"{task['path']}#{i}",
               "order": order(task["file"], i)}  # fmt: skip


class ScoreActor:
    """map_batches' callable class: one Predictor per actor, decisions per row as JSON."""

    def __init__(self, bundle: str, device: str | None, batch_size: int):
        from mmdetect.serving.predictor import Predictor

        self.predictor = Predictor.from_bundle(bundle, device, batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from mmdetect.data.dataset import Item
        from mmdetect.data.images import check_header
        from mmdetect.data.reader import RowProblem, checked_photos
        from mmdetect.data.records import Listing
        from mmdetect.data.shard_photos import unpack
        from mmdetect.serving.stream import RunSummary, parse_line, score_chunk

        n = len(batch["raw"])
        ids, skips, out = [""] * n, [""] * n, [""] * n
        summary, items, rows = RunSummary(), [], []
        with tempfile.TemporaryDirectory(prefix="mmdetect-score-") as tmp:
            for i in range(n):
                raw = bytes(batch["raw"][i])
                try:
                    listing: Listing = parse_line(raw if raw else None, self.predictor.taxonomy)
                except RowProblem as exc:
                    skips[i] = exc.reason
                    continue
                root = Path(str(batch["root"][i]))
                if batch["kind"][i] == "shard":
                    listing, root = stored_photos(listing, unpack(bytes(batch["photos"][i])),
                                                  Path(tmp) / str(i))  # fmt: skip
                where = str(batch["where"][i])
                listing, paths = checked_photos(root, listing, where, summary.photos,
                                                check=check_header)  # fmt: skip
                ids[i] = listing.id
                items.append(Item(listing, root, paths))
                rows.append(i)
            decisions = {d.id: d for d in score_chunk(self.predictor, items, summary)}
        for i in rows:
            d = decisions.get(ids[i])
            if d is None:
                skips[i] = "scoring_error"
            else:
                out[i] = json.dumps(d.to_json(), ensure_ascii=False)
        photo = json.dumps(dict(summary.photos.counts))
        return {"order": np.asarray(batch["order"], dtype=np.int64), "id": np.asarray(ids, dtype=object),
                "decision": np.asarray(out, dtype=object), "skip": np.asarray(skips, dtype=object),
                "photo_problems": np.asarray([photo] + [""] * (n - 1), dtype=object)}  # fmt: skip


def stored_photos(listing, blobs: list[bytes], folder: Path):
    """A shard listing's photos as files in `folder`; the listing pointing at them."""
    from mmdetect.data.records import Listing

    folder.mkdir(parents=True)
    names = []
    for k, data in enumerate(blobs):
        name = f"p{k}.jpg" if data[:3] == JPEG_MAGIC else f"p{k}.png"
        (folder / name).write_bytes(data)
        names.append(name)
    return Listing(**{**listing.__dict__, "images": tuple(names)}), folder


def init_ray(address: str | None, num_cpus: int | None) -> Any:
    """ray.init for a cluster (`address`) or a local one of `num_cpus` CPUs, no dashboard."""
    import ray

    if ray.is_initialized():
        return ray
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address:
        ray.init(address=address, **kw)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), **kw)
    return ray
