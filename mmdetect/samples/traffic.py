"""Random samples of marketplace traffic for `data_samples/`: realistic prevalence, small on disk.

`write_traffic(out_dir, seed, name, n_per_month, labeled)` writes one snapshot of September and
October 2026 listings drawn uniformly from traffic (a `random` sampling entry with its rate, see
mmdetect/data/sampling.py). Violations come from the same plans and templates as train/ and
drift/ (October's with the drift slang), at traffic prevalence: about 2.5 % of listings, adult
0.1 %, stolen_goods 0.2 %. Photos that show no cue come from a pool of a few hundred files per
snapshot, so five thousand listings cost a few MB; every cue photo is drawn for its listing.
"""

from __future__ import annotations

import random
import shutil
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.samples.images import render_photo
from mmdetect.samples.snapshot import (
    _flip,
    _iso,
    _listing,
    _plan_split,
    _save_jpeg,
    _write_snapshot,
)

MONTHS = ("2026-09", "2026-10")
RATE = 0.002  # share of all new listings each sample draws: 2500 of 1.25 M a month
# prevalence of each primary label in traffic, per month; October has more game_account (drift)
PREVALENCE = {
    "2026-09": {"counterfeit": .004, "stolen_goods": .002, "adult": .001, "cash_voucher": .0025,
                "game_account": .006, "keyword_stuffing": .004, "inappropriate": .0025},
    "2026-10": {"counterfeit": .004, "stolen_goods": .002, "adult": .001, "cash_voucher": .003,
                "game_account": .010, "keyword_stuffing": .004, "inappropriate": .0025},
}  # fmt: skip
LABEL_NOISE = 0.001  # reviewers auditing a random sample err far less than a busy queue (2.5 %)
POOL_PER_KIND = 16  # variants per photo kind that shows no cue


class PhotoPool:
    """Shared photos of one snapshot, written on first use: `images/pool/<kind>_<i>.jpg`."""

    def __init__(self, split_dir: Path, seed: int, name: str, image_size: int):
        self.dir, self.seed, self.name, self.size = split_dir, seed, name, image_size
        self.written: set[str] = set()
        (split_dir / "images" / "pool").mkdir(parents=True, exist_ok=True)

    def path(self, kind: str, rng: random.Random, taken: Sequence[str] = ()) -> str:
        """A pool photo of `kind`, never one of `taken` (a listing's photos are distinct)."""
        i = rng.randrange(POOL_PER_KIND)
        rel = f"images/pool/{kind}_{i:02d}.jpg"
        for step in range(1, POOL_PER_KIND):
            if rel not in taken:
                break
            rel = f"images/pool/{kind}_{(i + step) % POOL_PER_KIND:02d}.jpg"
        if rel not in self.written:  # a pool photo is a function of (seed, name, file) alone
            img = render_photo(kind, random.Random(f"{self.seed}/{self.name}/{rel}"), self.size)
            _save_jpeg(img, self.dir / rel)
            self.written.add(rel)
        return rel


def sampling_entry(name: str, n_per_month: int, labeled: bool) -> dict:
    """The `random` sampling entry of one traffic snapshot."""
    what = "labeled by reviewers auditing traffic" if labeled else "not labeled"
    return {"subset": name, "design": "random", "rate": RATE,
            "population": {"from": "2026-09-01", "to": "2026-11-01",
                           "listings": round(len(MONTHS) * n_per_month / RATE)},
            "note": f"uniform random sample of all listings created in the period, {what} "
                    "(synthetic: per-class counts fixed by quota at traffic prevalence)"}  # fmt: skip


def write_traffic(
    out_dir: Path, seed: int, name: str, n_per_month: int, labeled: bool, image_size: int = 128
) -> dict:
    """Write snapshot `out_dir/name`; return its counts, true label counts and cue modes."""
    rng = random.Random(f"{seed}/{name}")  # its own stream: the other splits are untouched
    plans = []
    for month in MONTHS:
        mix = PREVALENCE[month]
        plans += _plan_split(rng, name, n_per_month, (month,), sum(mix.values()), mix)
    prefix = "T" if labeled else "U"
    for i, p in enumerate(sorted(plans, key=lambda p: p.created)):
        p.id = f"{prefix}{i + 1:07d}"
    split_dir = out_dir / name
    shutil.rmtree(split_dir, ignore_errors=True)
    (split_dir / "images").mkdir(parents=True)
    pool = PhotoPool(split_dir, seed, name, image_size)
    rows, modes = [], Counter()
    for p in sorted(plans, key=lambda p: p.id):
        row = {**_listing(p, seed, image_size, split_dir, pool), "subset": name}
        modes.update(f"{c}:{p.modes[c]}" for c in p.labels)
        if labeled:
            noise = random.Random(f"{seed}/{p.id}/label")
            labels = _flip(noise, p.labels) if noise.random() < LABEL_NOISE else p.labels
            at = p.created + timedelta(minutes=noise.randint(30, 72 * 60))
            row.update(labels=list(labels), label_source="review", reviewed_at=_iso(at))
            modes["flipped"] += labels != p.labels
        rows.append(row)
    what = "labeled" if labeled else "unlabeled"
    description = f"Synthetic {what} random sample of 2026-09..2026-10 traffic (rate {RATE:g})."
    entry = sampling_entry(name, n_per_month, labeled)
    counts = _write_snapshot(split_dir, f"{name}-2026-09..2026-10", rows, description, [entry])
    true = {c: sum(c in p.labels for p in plans) for c in DEFAULT_TAXONOMY}
    true["any"] = sum(bool(p.labels) for p in plans)
    return {**counts, "true_labels": true, "pool_photos": len(pool.written),
            "pool_per_kind": POOL_PER_KIND,
            "cue_modes": dict(sorted(modes.items()))}  # fmt: skip
