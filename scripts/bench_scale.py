"""Scale extra measurements (mmdetect/scale/bench.py): peak memory and throughput at several sizes.

    python scripts/bench_scale.py --bundle runs/demo/bundle --sizes 2000,10000 --json runs/bench_scale.json
    python scripts/bench_scale.py --bundle runs/demo/bundle --sizes 10000,200000   # issue #16's pair
    python scripts/bench_scale.py --sizes 10000 --photo-size 640 --no-score  # training, large photos

`--source traffic` (default): the sample generator's traffic snapshot (September and October at
marketplace prevalence; photos without a cue come from a shared pool, so disk stays bounded and
200k listings generate in minutes); validation from 2026-10-01. `--source train`: the labeled
train/ snapshot (every photo drawn for its listing: minutes per 10k), validation from 2026-09-01.
Each size's synthetic data (listings + photos) is deleted after it is measured (--keep keeps it).
`--phase train --data DIR --steps N` is the child process that times training steps.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmdetect.bench.common import format_machine, machine  # noqa: E402
from mmdetect.scale.bench import kill_resume, measured, train_phase  # noqa: E402

PY = sys.executable
SOURCES = {"traffic": "2026-10-01", "train": "2026-09-01"}  # snapshot -> first validation day


def one_size(n: int, work: Path, bundle: Path, steps: int, resume: bool, repeats: int = 1,
             score: bool = True, photo_size: int = 128, big: bool = False,
             source: str = "traffic") -> dict:  # fmt: skip
    """Measure one size; `big`: only what the memory goal needs (shard, one training run from
    each source, Ray scoring), since `predict` and the resume test do not depend on the size."""
    from mmdetect.samples.generator import generate_samples

    t = time.perf_counter()
    sizes = {"n_traffic": (n + 1) // 2, "n_train": 10} if source == "traffic" else {"n_train": n}
    generate_samples(work / "samples", seed=0, n_drift=10, n_incoming=10, image_size=photo_size,
                     **sizes)  # fmt: skip
    snap = work / "samples" / source
    listings = snap / "listings.jsonl"
    n = sum(1 for _ in listings.open(encoding="utf-8"))
    val_from = SOURCES[source]
    out: dict = {"listings": n, "source": source, "photo_px": photo_size, "big": big, "generate_s": time.perf_counter() - t,
                 "snapshot_mib": sum(f.stat().st_size for f in snap.rglob("*") if f.is_file()) / 2**20}  # fmt: skip
    shards = work / "shards"
    out["shard"] = measured([PY, "-m", "mmdetect.cli.commands", "shard", str(snap), "--out", str(shards),
                             "--split", "time", "--val-from", val_from, "--image-size", "64",
                             "--workers", "2"])  # fmt: skip
    out["shards_mib"] = sum(f.stat().st_size for f in shards.rglob("*") if f.is_file()) / 2**20
    pair = [("train_jsonl", snap), ("train_shards", shards)]
    for rep in range(1 if big else repeats):  # alternating order: a load swing hits both sides
        for name, data in pair if rep % 2 == 0 else pair[::-1]:
            r = measured([PY, __file__, "--phase", "train", "--data", str(data), "--steps",
                          str(steps), "--val-from", val_from])  # fmt: skip
            out.setdefault(name, []).append({**r, **json.loads(r.pop("last_line"))})
    if not score:
        return out
    if not big:
        out["predict"] = measured([PY, "-m", "mmdetect.cli.commands", "predict", "--bundle", str(bundle),
                                   "--input", str(listings), "--out", str(work / "pred.jsonl")])  # fmt: skip
    out["score_ray"] = measured([PY, "-m", "mmdetect.cli.commands", "score", "--engine", "ray",
                                 "--num-cpus", "2", "--bundle", str(bundle), "--input",
                                 str(listings), "--out", str(work / "ray")])  # fmt: skip
    for k in ("predict", "score_ray"):
        if k in out:
            out[k]["listings_per_s"] = n / out[k]["wall_s"]
    if resume:
        (work / "resume").mkdir()
        out["kill_resume"] = kill_resume(shards, work / "resume")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="2000,10000")
    p.add_argument("--bundle", type=Path, default=Path("runs/demo/bundle"))
    p.add_argument("--steps", type=int, default=30, help="training steps timed (3 warm-up)")
    p.add_argument("--work", type=Path, default=Path("runs/bench_scale"))
    p.add_argument("--keep", action="store_true")
    p.add_argument("--train-repeats", type=int, default=1, help="JSONL/shards runs, alternated")
    p.add_argument("--no-score", action="store_true", help="skip predict, score and resume")
    p.add_argument(
        "--source",
        choices=sorted(SOURCES),
        default="traffic",
        help="which sample snapshot to generate (see above)",
    )
    p.add_argument("--photo-size", type=int, default=128, help="side of the generated photos")
    p.add_argument(
        "--big-from",
        type=int,
        default=100_000,
        help="sizes from this on: shard, one training run per source, Ray scoring only",
    )
    p.add_argument("--json", type=Path)
    p.add_argument("--phase", choices=("train",), help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--val-from", default="2026-09-01", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase == "train":
        print(json.dumps(train_phase(args.data, args.steps, args.val_from)))
        return 0
    info = machine()
    print(format_machine(info))
    results = {"machine": info, "sizes": []}
    for i, n in enumerate(int(x) for x in args.sizes.split(",")):
        work = args.work / f"n{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        r = one_size(n, work, args.bundle, args.steps, resume=i == 0 and not args.no_score,
                     repeats=args.train_repeats, score=not args.no_score,
                     photo_size=args.photo_size, big=n >= args.big_from,
                     source=args.source)  # fmt: skip
        results["sizes"].append(r)
        print(json.dumps(r, indent=1), flush=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
