"""`python scripts/bench.py [--quick] [--only tokenize,score,export,train] [--json PATH] [--aoti]`.

Prints a header describing the machine, then each benchmark's figures as it finishes. Every
ratio compares contenders measured side by side in this one run (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BENCHES = ("tokenize", "score", "train", "export")  # export last: the longest


def run_bench(name: str, quick: bool, aoti: bool = False, **export_kw) -> tuple[dict, list[str]]:
    """(figures, printable lines) of one benchmark at the full or --quick size."""
    if name == "tokenize":
        from mmdetect.bench.tokenize import bench_tokenize, format_tokenize

        r = bench_tokenize(reps=3 if quick else 7)
        return r, format_tokenize(r)
    if name == "score":
        from mmdetect.bench.scoring import bench_scoring, format_scoring

        r = bench_scoring(limit=120 if quick else None, reps=2 if quick else 3)
        return r, format_scoring(r)
    if name == "export":
        from mmdetect.bench.latency import bench_export, format_export

        # small counts: BERT-base at batch 32 takes seconds per call on 2 cores
        r = bench_export(quick=quick, tiny_reps=(20, 4), big_reps=(6, 2), aoti=aoti, **export_kw)
        return r, format_export(r)
    if name == "train":
        from mmdetect.bench.train import bench_train, format_train

        r = bench_train(steps=10 if quick else 20, reps=1 if quick else 2)
        return r, format_train(r)
    raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHES)}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes, no BERT-base model")
    p.add_argument("--only", default=",".join(BENCHES), help=f"subset of {','.join(BENCHES)}")
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    p.add_argument("--aoti", action="store_true",
                   help="export: also torch.export + AOTInductor, tiny model (minutes to compile)")  # fmt: skip
    p.add_argument("--models", help="export: tiny,big (default both; --quick: tiny)")
    p.add_argument("--variants", help="export: a subset of mmdetect.bench.latency's variants")
    args = p.parse_args(argv)
    export_kw = {}
    for key in ("models", "variants"):
        if getattr(args, key):
            export_kw[key] = tuple(x.strip() for x in getattr(args, key).split(",") if x.strip())
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHES)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from mmdetect.bench.common import format_machine, machine

    header = machine()
    command = " ".join(["python scripts/bench.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"# {command}")
    print(format_machine(header), flush=True)
    results: dict = {"command": command, "machine": header}
    for name in names:
        start = time.perf_counter()
        figures, lines = run_bench(name, args.quick, args.aoti, **export_kw)
        elapsed = time.perf_counter() - start
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        print("\n".join(lines))
        print(f"  ({name}: {elapsed:.0f} s; load average after: {load})", flush=True)
        results[name] = {**figures, "seconds": elapsed, "loadavg_after": os.getloadavg()}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return 0
