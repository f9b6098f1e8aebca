"""Regenerate the committed sample data: python scripts/make_samples.py --out data_samples --seed 0"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mmdetect.common.outputs import OutputError
from mmdetect.samples.generator import generate_samples
from mmdetect.samples.target import check_samples_out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("data_samples"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=1800)
    p.add_argument("--n-drift", type=int, default=500)
    p.add_argument("--n-incoming", type=int, default=600)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument(
        "--n-traffic", type=int, default=2500, help="traffic/ listings a month (0: none)"
    )
    p.add_argument(
        "--n-traffic-unlabeled", type=int, default=2500, help="traffic_unlabeled/ a month"
    )
    a = p.parse_args()
    try:  # the checks of `mmdetect samples --out`: never a bundle or a snapshot, own splits only
        check_samples_out(a.out)
    except OutputError as exc:
        raise SystemExit(f"error: {exc}") from None
    start = time.perf_counter()
    summary = generate_samples(
        a.out, a.seed, a.n_train, a.n_drift, a.n_incoming, a.image_size,
        a.n_traffic, a.n_traffic_unlabeled,
    )  # fmt: skip
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    print(f"wrote {a.out} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
