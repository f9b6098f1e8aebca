"""Perturbation benchmark (mmdetect/bench/evasion.py): validation macro AP of each model with each
evasion applied, side by side in one run.

    python scripts/bench_evasion.py --model runs/a/best.ckpt --model runs/b/best.ckpt \
        --snapshot data_samples/train --created-from 2026-09-01 --json runs/bench_evasion.json

Evasions (mmdetect/data/evasions.py): katakana_separators, zero_width, hiragana, homoglyphs,
fullwidth_spaced, halfwidth; each touches `--rate` of the eligible words of every listing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mmdetect.bench.common import format_machine, machine  # noqa: E402
from mmdetect.bench.evasion import bench_evasion, format_evasion  # noqa: E402
from mmdetect.data.evasions import EVASIONS  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="a .ckpt or a bundle (repeat)")
    p.add_argument("--snapshot", default="data_samples/train")
    p.add_argument("--created-from", default="2026-09-01")
    p.add_argument("--created-to")
    p.add_argument("--kinds", default=",".join(EVASIONS))
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(format_machine(machine()))
    r = bench_evasion(args.model, args.snapshot, args.created_from, args.created_to,
                      args.kinds.split(","), args.seed, args.rate)  # fmt: skip
    print("\n".join(format_evasion(r)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), **r}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
