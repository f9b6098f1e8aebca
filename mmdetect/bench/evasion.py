"""Perturbation benchmark: macro AP of each model on a snapshot as written and with each evasion
sellers type applied to every listing (mmdetect/data/evasions.py, the module augmentation uses).

`python scripts/bench_evasion.py --model A.ckpt --model B.ckpt --snapshot data_samples/train
--created-from 2026-09-01`: every model is scored on the same perturbed texts (seeded by
listing id and evasion) in one run, so the columns compare side by side. A model trained with
`data.normalize` normalises through its checkpoint or bundle as it would when served.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mmdetect.data.evasions import EVASIONS, evade
from mmdetect.data.reader import Snapshot, read_snapshot
from mmdetect.data.records import Listing, in_period
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.evaluate.metrics import average_precision


def perturb(listings: Sequence[Listing], kind: str, seed: int = 0, rate: float = 0.5) -> list:
    """Every listing with `kind` applied to its title and description (seeded per listing)."""
    out = []
    for x in listings:
        rng = random.Random(f"bench/{seed}/{kind}/{x.id}")
        out.append(replace(x, title=evade(x.title, kind, rng, rate),
                           description=evade(x.description, kind, rng, rate)))  # fmt: skip
    return out


def macro_ap(probs: np.ndarray, listings: Sequence[Listing], taxonomy: Sequence[str]) -> dict:
    """{"macro": mean AP over classes with a positive, "classes": {name: AP or None}}."""
    y = np.array([[c in (x.labels or ()) for c in taxonomy] for x in listings], dtype=bool)
    classes = {c: average_precision(y[:, j], probs[:, j]) for j, c in enumerate(taxonomy)}
    aps = [v for v in classes.values() if v is not None]
    return {"macro": float(np.mean(aps)) if aps else None, "classes": classes}


def score(model: str | Path, snapshot: Snapshot, batch_size: int = 64) -> tuple[np.ndarray, tuple]:
    """Raw probabilities [N, C] of a checkpoint or a bundle (mmdetect.serving.scoring)."""
    from mmdetect.serving.scoring import bundle_proba, checkpoint_proba, is_bundle

    fn = bundle_proba if is_bundle(model) else checkpoint_proba
    probs, taxonomy, _ = fn(model, snapshot, batch_size, 0)
    return probs, taxonomy


def read_labeled(path: str | Path, created_from: str | None, created_to: str | None) -> Snapshot:
    snap = read_snapshot(path)
    snap.listings = [x for x in snap.listings if x.labels is not None
                     and in_period(x.created_at, created_from, created_to)]  # fmt: skip
    return snap


def bench_evasion(
    models: Sequence[str | Path], snapshot: str | Path, created_from: str | None = None,
    created_to: str | None = None, kinds: Sequence[str] = tuple(EVASIONS), seed: int = 0,
    rate: float = 0.5,
) -> dict[str, Any]:  # fmt: skip
    """{"snapshot", "listings", "kinds", "models": {model: {"clean": ap, kind: ap, ...}}}."""
    snap = read_labeled(snapshot, created_from, created_to)
    variants = {"clean": snap.listings} | {k: perturb(snap.listings, k, seed, rate) for k in kinds}
    out: dict[str, Any] = {"snapshot": str(snapshot), "listings": len(snap.listings),
                           "created_from": created_from, "created_to": created_to,
                           "seed": seed, "rate": rate, "kinds": list(kinds), "models": {}}  # fmt: skip
    for model in models:
        row = {}
        for name, listings in variants.items():
            probs, taxonomy = score(model, replace(snap, listings=listings))
            row[name] = macro_ap(probs, listings, taxonomy or DEFAULT_TAXONOMY)
        out["models"][str(model)] = row
    return out


def format_evasion(r: dict[str, Any]) -> list[str]:
    """Markdown: a row per model, clean AP then each evasion's AP and its drop."""
    cols = ["clean", *r["kinds"]]
    lines = [f"snapshot {r['snapshot']} ({r['listings']} labeled listings), evasion rate "
             f"{r['rate']}, seed {r['seed']}", "",
             "| model | " + " | ".join(cols) + " | mean perturbed | drop |",
             "|---" * (len(cols) + 3) + "|"]  # fmt: skip
    for model, row in r["models"].items():
        clean = row["clean"]["macro"]
        perturbed = [row[k]["macro"] for k in r["kinds"]]
        mean = float(np.mean(perturbed))
        cells = [f"{row[c]['macro']:.3f}" for c in cols]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {mean:.3f} | {clean - mean:+.3f} |")
    return lines
