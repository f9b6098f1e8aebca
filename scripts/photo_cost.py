"""Time and peak RSS of validating and loading one listing with ten 40-Mpx PNGs (issue #12).

    python scripts/photo_cost.py make DIR          # writes DIR/listings.jsonl + 10 PNGs
    python scripts/photo_cost.py validate DIR      # read_snapshot: the photo checks
    python scripts/photo_cost.py item DIR          # ListingDataset[0]: decode max_photos=4

Run each step in a fresh process: peak RSS (resource.getrusage) is per process.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make(root: Path) -> None:
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    for k in range(10):  # 8000 x 5000 = 40 Mpx, the limit; stripes keep the files small
        arr = np.zeros((5000, 8000, 3), dtype=np.uint8)
        arr[:, :, 0] = (np.arange(8000) * (k + 1) % 256).astype(np.uint8)
        arr[::7, :, 1] = 255
        Image.fromarray(arr).save(root / f"images/p{k}.png", compress_level=1)
    row = {"id": "L1", "title": "t", "description": "d", "price": 1, "category": "x",
           "images": [f"images/p{k}.png" for k in range(10)],
           "created_at": "2026-07-01T10:00:00+09:00", "labels": []}  # fmt: skip
    (root / "listings.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")


def main(step: str, root: Path) -> None:
    if step == "make":
        return make(root)
    from mmdetect.data.reader import read_snapshot

    if step == "item":
        from mmdetect.data.dataset import Item, ListingDataset
        from mmdetect.models.image import ImagePreprocess, build_transforms

        snap = read_snapshot(root, check_images=False)
        transform = build_transforms(ImagePreprocess(64), train=False)
        item = Item(snap.listings[0], snap.root)
        ds = ListingDataset([item], [[2, 3]], ["a"], [], transform, 4, price_mean=0, price_std=1)
    before, start = peak_mb(), time.perf_counter()
    n = len(read_snapshot(root).listings[0].images) if step == "validate" else len(ds[0]["photos"])
    seconds = time.perf_counter() - start
    print(
        f"{step}: {seconds:.2f} s, peak RSS {peak_mb():.0f} MB ({before:.0f} MB before), {n} photos"
    )


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
