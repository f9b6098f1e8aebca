"""The objectives a trial's fit does not log itself, measured on its best checkpoint.

`python -m mmdetect.tune.measure --run-dir DIR --out FILE operating_recall latency_ms` (run by
`mmdetect tune` as its own process after the fit, for the same isolation as the fit):

* operating_recall: the validation listings of the run (read and split by the datamodule's own
  functions, so exactly the fit's validation set) are scored,
  the operating point of the policy is fitted on them with mmdetect.policy (calibration,
  certified auto-hide, review threshold at the budget) and the share of prohibited listings it
  hides or sends to review is the figure. It is in-sample for the operating point, as the
  validation macro AP is for checkpoint selection; both are selection figures, not estimates.
* latency_ms: the best checkpoint exported as a TorchScript bundle (configs/export/cpu.yaml
  defaults; parity checked on the run's first snapshot) and scored one listing at a time
  through Predictor, photo decoding included: the median ms per listing of a second pass over
  the same listings (the first pays for TorchScript's profiling runs of each input shape). A
  selection figure on the machine the study runs on; docs/BENCHMARKS.md is the reference.

It imports export, serve and scoring, later stages than fit: tune sits at the CLI level and runs
this module as its own subprocess entry point (see mmdetect/tune/__init__.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mmdetect.common.outputs import atomic_write_text


def run_config(rdir: Path) -> dict[str, Any]:
    """The config LightningCLI saved for the run (the newest logs/version_*/config.yaml)."""
    files = sorted(rdir.glob("logs/version_*/config.yaml"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"{rdir}: no logs/version_*/config.yaml saved by the fit")
    return yaml.safe_load(files[-1].read_text(encoding="utf-8"))


def best_checkpoint(rdir: Path) -> Path:
    found = sorted((rdir / "checkpoints").glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"{rdir}/checkpoints: no best-*.ckpt")
    return found[-1]


def validation_items(data: dict[str, Any]) -> list[Any]:
    """The fit's validation split, read as DetectorDataModule.setup reads it (read_items: the
    run's taxonomy and strictness, photos checked, ids unique across snapshots; labeled rows
    only; is_validation), from the `data` section of the run's saved config."""
    from mmdetect.training.datamodule import is_validation, read_items

    items, _ = read_items(data["snapshots"], data["taxonomy"], data["strict"])
    return [
        it for it in items
        if it.listing.labels is not None
        and is_validation(it, data["split"], data.get("val_from"), data["val_fraction"])
    ]  # fmt: skip


def operating_recall(ckpt: Path, data: dict, policy_path: str | None) -> dict[str, Any]:
    """Recall (hidden or reviewed) of the operating point fitted on the validation listings."""
    from mmdetect.data.records import Problems, Snapshot
    from mmdetect.policy import decide, fit_operating_point, load_policy
    from mmdetect.serving.scoring import checkpoint_proba

    policy = load_policy(policy_path)
    rows, ys, taxonomy = [], [], None
    val = validation_items(data)
    for root in dict.fromkeys(it.root for it in val):  # scored per snapshot (photo paths)
        listings = [it.listing for it in val if it.root == root]
        snap = Snapshot(root, listings, tuple(data["taxonomy"]), Problems())
        probs, taxonomy, _ = checkpoint_proba(ckpt, snap, 64, 0)
        rows.append(probs)
        ys.append([[c in x.labels for c in taxonomy] for x in listings])
    if not rows:
        raise ValueError("no labeled validation listings: recall is undefined")
    probs, y = np.concatenate(rows), np.array([r for part in ys for r in part], dtype=np.int64)
    doc = fit_operating_point(y, probs, taxonomy, policy)
    overall = decide(doc, probs, taxonomy).overall
    prohibited = y.any(axis=1)
    if not prohibited.any():
        raise ValueError("no prohibited listings in the validation split: recall is undefined")
    return {
        "operating_recall": float((overall[prohibited] > 0).mean()),
        "operating_review_rate": float((overall == 1).mean()),
        "operating_hide_rate": float((overall == 2).mean()),
        "operating_listings": len(y),
    }


def latency(ckpt: Path, rdir: Path, data: dict, n: int) -> dict[str, Any]:
    """Median ms per listing, one at a time, through the exported TorchScript bundle."""
    import torch

    from mmdetect.ops.export import export_bundle
    from mmdetect.serving.predictor import Predictor

    bundle = rdir / "bundle"
    export_bundle(ckpt, bundle, parity_snapshot=data["snapshots"][0], force=True)
    predictor = Predictor.from_bundle(bundle, device="cpu", batch_size=1)
    val = validation_items(data)[:n]
    times = []
    for timed in (False, True):  # the first pass pays for TorchScript's profiling of each shape
        for it in val:
            start = time.perf_counter()
            predictor.predict_proba([it.listing], it.root)
            if timed:
                times.append(1000 * (time.perf_counter() - start))
    if not times:
        raise ValueError("too few validation listings to time")
    return {"latency_ms": statistics.median(times), "latency_listings": len(times),
            "torch_threads": torch.get_num_threads()}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmdetect.tune.measure", description=__doc__)
    p.add_argument("objectives", nargs="+", choices=["operating_recall", "latency_ms"])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--policy", help="configs/policy/*.yaml (default: built-in)")
    p.add_argument("--listings", type=int, default=32, help="listings timed for latency_ms")
    args = p.parse_args(argv)
    cfg = run_config(args.run_dir)
    ckpt = best_checkpoint(args.run_dir)
    result: dict[str, Any] = {"checkpoint": str(ckpt)}
    if "operating_recall" in args.objectives:
        result.update(operating_recall(ckpt, cfg["data"], args.policy))
    if "latency_ms" in args.objectives:
        result.update(latency(ckpt, args.run_dir, cfg["data"], args.listings))
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
