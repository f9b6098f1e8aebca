"""`mmdetect shard SNAPSHOT... --out DIR`: the command around scale/shard.py."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from mmdetect.common.cliargs import positive_int
from mmdetect.common.extras import MissingExtra
from mmdetect.common.outputs import OutputError, atomic_write_text, check_output
from mmdetect.data.reader import SnapshotError
from mmdetect.data.records import parse_date_bound
from mmdetect.data.shard_format import MANIFEST
from mmdetect.scale.plan import SPLITS, plan_sources
from mmdetect.scale.shard import ShardOptions, build_manifest, merge_parts, run_part

log = logging.getLogger(__name__)


def work_dir(out: Path) -> Path:
    """Where a run builds OUT (beside it, so the final rename stays on one file system)."""
    return out.with_name(f".{out.name}.shard-work")


def load_plan(work: Path, snapshots: Sequence[Path], opts: ShardOptions) -> dict:
    """The plan of an interrupted run with the same sources (checksums) and options, else a new
    one (the old work directory removed)."""
    from mmdetect.scale.plan import sha256_file

    plan_file = work / "plan.json"
    if plan_file.is_file():
        plan = json.loads(plan_file.read_text(encoding="utf-8"))
        same = plan.get("options") == opts.key() and [
            (s["path"], s["listings_sha256"]) for s in plan["sources"]
        ] == [(str(p), sha256_file(p / "listings.jsonl")) for p in snapshots]
        if same:
            log.info("resuming %s: %d parts planned", work, len(plan["parts"]))
            return plan
        log.warning("%s: left by a run with other sources or options: starting over", work)
    shutil.rmtree(work, ignore_errors=True)
    (work / "plan").mkdir(parents=True)
    plan = plan_sources(snapshots, work / "plan", opts.split, opts.val_from, opts.val_fraction,
                        opts.part_size)  # fmt: skip
    plan["options"] = opts.key()
    atomic_write_text(plan_file, json.dumps(plan, ensure_ascii=False))
    return plan


def shard(snapshots: Sequence[Path], out: Path, opts: ShardOptions) -> dict:
    """Plan, run the parts not done yet, merge, write the manifest, place OUT; the manifest."""
    snapshots = [Path(s) for s in snapshots]
    check_output(out, snapshots, kind="dir")
    if out.exists() and any(out.iterdir()):
        raise OutputError(f"output {out} exists and is not empty: give a new directory")
    work = work_dir(out)
    plan = load_plan(work, snapshots, opts)
    if not plan["parts"]:
        raise SnapshotError(f"no valid listing in {', '.join(map(str, snapshots))}: "
                            f"problems {plan['row_problems']['counts']}")  # fmt: skip
    summaries = []
    for n, part in enumerate(plan["parts"], 1):
        done = work / "done" / f"{part['name']}.json"
        if done.is_file():
            summaries.append(json.loads(done.read_text(encoding="utf-8")))
            log.info("part %d/%d %s: done before, kept", n, len(plan["parts"]), part["name"])
            continue
        log.info("part %d/%d %s: %d rows", n, len(plan["parts"]), part["name"], part["rows"])
        summaries.append(run_part(work, part, plan["taxonomy"], opts))
    final = work / "final"
    shutil.rmtree(final, ignore_errors=True)
    chunks = merge_parts(work, plan["parts"], final)
    manifest = build_manifest(plan, summaries, chunks, opts)
    (final / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2))
    if out.exists():
        out.rmdir()  # empty (checked above)
    os.replace(final, out)
    shutil.rmtree(work, ignore_errors=True)
    return manifest


def shard_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmdetect shard",
        description="Write LitData shards of snapshots (validated like `mmdetect check`; "
        "photos re-encoded once at the training size); resumable: rerun the same command.",
    )
    p.add_argument("snapshots", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True, help="a new directory")
    p.add_argument("--split", choices=SPLITS, default="none",
                   help="train/val subsets of the labeled rows (time: --val-from; hash)")  # fmt: skip
    p.add_argument("--val-from", help="first validation date with --split time, e.g. 2026-09-01")
    p.add_argument("--val-fraction", type=float, default=0.15, help="with --split hash")
    p.add_argument("--image-size", type=positive_int, default=64, help="the model's photo side")
    p.add_argument("--max-photos", type=positive_int, default=4, help="photos kept per listing")
    p.add_argument("--quality", type=positive_int, default=95, help="JPEG quality (re-encoded)")
    p.add_argument("--interpolation", choices=("bilinear", "bicubic"), default="bilinear")
    chunk = p.add_mutually_exclusive_group()
    chunk.add_argument("--chunk-bytes", default=None, help="chunk size in bytes, e.g. 64MB")
    chunk.add_argument("--chunk-size", type=positive_int, default=None, help="listings per chunk")
    p.add_argument("--part-size", type=positive_int, default=20_000,
                   help="validated rows per resumable part")  # fmt: skip
    p.add_argument("--workers", type=positive_int, default=min(8, os.cpu_count() or 1))
    return p


def shard_main(argv: Sequence[str] | None = None) -> int:
    args = shard_parser().parse_args(argv)
    if args.split == "time":
        if not args.val_from:
            print("error: --split time needs --val-from DATE", file=sys.stderr)
            return 2
        try:
            parse_date_bound(args.val_from, "--val-from")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if not 0 < args.val_fraction < 1:
        print(f"error: --val-fraction must be in (0, 1), got {args.val_fraction}", file=sys.stderr)
        return 2
    opts = ShardOptions(
        split=args.split, val_from=args.val_from, val_fraction=args.val_fraction,
        image_size=args.image_size, max_photos=args.max_photos, quality=min(args.quality, 100),
        interpolation=args.interpolation,
        chunk_bytes=None if args.chunk_size else (args.chunk_bytes or "64MB"),
        chunk_size=args.chunk_size, part_size=args.part_size, workers=args.workers,
    )  # fmt: skip
    try:
        manifest = shard(args.snapshots, args.out, opts)
    except (SnapshotError, OutputError, MissingExtra) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: rerun the same command to resume from {work_dir(args.out)}",
              file=sys.stderr)  # fmt: skip
        return 130
    subsets = ", ".join(f"{k} {v['listings']}" for k, v in manifest["subsets"].items())
    print(f"shards written to {args.out}: {subsets}; problems {manifest['problems'] or 'none'}")
    log.debug("options %s", asdict(opts))
    return 0
