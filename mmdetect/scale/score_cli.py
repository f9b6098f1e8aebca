"""`mmdetect score --bundle B --input JSONL_OR_SHARDS... --engine ray --out DIR`.

The driver checks the bundle and the outputs, builds the Ray Data pipeline of scale/ray_score.py,
and writes what comes back in input order (Ray keeps it: preserve_order) into DIR, which appears
only when the run finished: decisions.jsonl (predict's rows; first occurrence of an id wins, as
in predict) or decisions.parquet, the review queue beside a JSONL, and summary.json (rows,
scored, skipped by reason, photo problems, decisions).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from mmdetect.common.cliargs import positive_int
from mmdetect.common.extras import MissingExtra, require
from mmdetect.common.outputs import OutputError, check_output


def score_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmdetect score",
        description="Score listings (JSONL files or `mmdetect shard` outputs) with a bundle on "
        "Ray Data: the decisions `mmdetect predict` gives, from many actors.",
    )
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--input", type=Path, nargs="+", required=True,
                   help="listings .jsonl files and/or shard directories")  # fmt: skip
    p.add_argument("--engine", choices=("ray",), required=True)
    p.add_argument("--address", help="a Ray cluster (ray://HOST:10001 or auto); default: local")
    p.add_argument("--num-cpus", type=positive_int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--num-gpus-per-actor", type=float, default=0.0)
    p.add_argument("--actors", type=positive_int, help="scoring actors (default: CPUs or 1/GPU)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--images-root", type=Path,
                   help="photo paths of a JSONL are relative to this (default: its directory)")  # fmt: skip
    p.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl")
    p.add_argument("--out", type=Path, required=True, help="a new directory")
    return p


def split_inputs(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(JSONL files, shard datasets); a shard output directory gives each of its subsets."""
    files, shards = [], []
    for p in paths:
        if p.is_file():
            files.append(p)
        elif (p / "index.json").is_file():
            shards.append(p)
        elif (p / "manifest.json").is_file():
            manifest = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
            shards.extend(p / name for name in manifest.get("subsets", {}))
        else:
            raise OutputError(f"input {p}: not a file, nor a shard directory (manifest.json)")
    return files, shards


def run(args: argparse.Namespace) -> dict:
    """Score and write; returns the summary."""
    ray = require("ray", "mmdetect score --engine ray")
    require("ray.data", "mmdetect score --engine ray")
    from mmdetect.artifacts.bundle import load_bundle
    from mmdetect.scale.ray_score import (
        ScoreActor,
        init_ray,
        jsonl_ranges,
        read_range,
        read_shard_range,
        shard_ranges,
    )  # fmt: skip
    from mmdetect.serving.review_queue import write_review_queue

    files, shards = split_inputs(args.input)
    check_output(args.out, [*args.input, args.bundle], kind="dir")
    if args.out.exists() and any(args.out.iterdir()):
        raise OutputError(f"output {args.out} exists and is not empty: give a new directory")
    bundle = load_bundle(args.bundle, "cpu")  # verified once here, before any actor starts
    severity = bundle.thresholds["severity"]
    started = not ray.is_initialized()
    init_ray(args.address, args.num_cpus)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        parts = []
        if files:
            roots = [args.images_root or f.parent for f in files]
            parts.append(ray.data.from_items(jsonl_ranges(files, roots)).flat_map(read_range))
        if shards:
            parts.append(ray.data.from_items(shard_ranges(shards)).flat_map(read_shard_range))
        ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        gpus = args.num_gpus_per_actor
        actors = args.actors or max(1, int(ray.available_resources().get("CPU", 1)) - 1)
        scored = ds.map_batches(
            ScoreActor, fn_constructor_kwargs={"bundle": str(args.bundle),
            "device": "cuda" if gpus else "cpu", "batch_size": args.batch_size},
            batch_size=args.batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=0 if gpus else 1, num_gpus=gpus or None,
        )  # fmt: skip
        tmp = args.out.with_name(f".{args.out.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        summary = write_decisions(scored, tmp, args.format)
    finally:
        if started:
            ray.shutdown()
    if args.format == "jsonl":
        _, summary["review_queue"] = write_review_queue(tmp / "decisions.jsonl", severity)
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.out.exists():
        args.out.rmdir()
    os.replace(tmp, args.out)
    return summary


def write_decisions(scored, out: Path, fmt: str) -> dict:
    """Stream the scored rows (input order) into out/decisions.*; count what happened."""
    seen: set[str] = set()
    skipped, photos, decisions = Counter(), Counter(), Counter()
    rows = scored_n = 0
    writer, fh = None, None
    if fmt == "jsonl":
        fh = (out / "decisions.jsonl").open("w", encoding="utf-8")
    try:
        for batch in scored.iter_batches(batch_format="numpy", batch_size=None):
            keep = []
            for i in range(len(batch["id"])):
                rows += 1
                if batch["photo_problems"][i]:
                    photos.update(json.loads(batch["photo_problems"][i]))
                if batch["skip"][i]:
                    skipped[batch["skip"][i]] += 1
                elif batch["id"][i] in seen:
                    skipped["duplicate_id"] += 1
                else:
                    seen.add(batch["id"][i])
                    keep.append(batch["decision"][i])
            scored_n += len(keep)
            parsed = [json.loads(x) for x in keep]
            decisions.update(d["decision"] for d in parsed)
            if fh is not None:
                fh.writelines(x + "\n" for x in keep)
            elif parsed:
                writer = write_parquet(writer, parsed, out / "decisions.parquet")
    finally:
        if fh is not None:
            fh.close()
        if writer is not None:
            writer.close()
    return {"rows": rows, "scored": scored_n, "skipped": dict(skipped),
            "photo_problems": dict(photos), "decisions": dict(decisions)}  # fmt: skip


def write_parquet(writer, rows: list[dict], path: Path):
    """Append rows to one Parquet file (nested dicts become struct columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    if writer is None:
        writer = pq.ParquetWriter(path, table.schema)
    writer.write_table(table.cast(writer.schema))
    return writer


def score_main(argv: Sequence[str] | None = None) -> int:
    args = score_parser().parse_args(argv)
    from mmdetect.artifacts.bundle_format import BundleError

    try:
        summary = run(args)
    except (MissingExtra, OutputError, BundleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    print(f"decisions written to {args.out}")
    return 1 if summary["rows"] and not summary["scored"] else 0
