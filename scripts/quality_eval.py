"""One ablation run's figures (scripts/quality_ablation.sh): RUN/quality.json.

    python scripts/quality_eval.py RUN_DIR [--benign runs/quality/benign_text]

The served operating point is fitted on September validation (configs/policy/default.yaml, as
the demo does); then, with the best checkpoint: validation (September), October
(data_samples/drift), the independent-phrasing set, validation with each evasion applied, and
real benign Japanese text (scripts/benign_text.py): macro AP and per-class AP, the share of
violating listings flagged (hide or review) and of clean ones hidden or sent to review.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mmdetect.bench.evasion import perturb, read_labeled  # noqa: E402
from mmdetect.cli import main as mmdetect  # noqa: E402
from mmdetect.data.evasions import EVASIONS  # noqa: E402
from mmdetect.evaluate.generalisation import set_figures  # noqa: E402
from mmdetect.evaluate.operating import apply_operating_point  # noqa: E402
from mmdetect.evaluate.predictions import prediction_from_listing  # noqa: E402
from mmdetect.policy.io import read_operating_point  # noqa: E402
from mmdetect.serving.scoring import checkpoint_proba  # noqa: E402

SETS = {  # name -> (snapshot, created_from)
    "validation": ("data_samples/train", "2026-09-01"),
    "october": ("data_samples/drift", None),
    "independent": ("data_samples/independent", None),
}


def figures(ckpt: Path, snap, doc) -> dict:
    """set_figures of a snapshot's listings scored by the checkpoint, under `doc`."""
    probs, taxonomy, _ = checkpoint_proba(ckpt, snap, 64, 0)
    records = [prediction_from_listing(x, dict(zip(taxonomy, row.tolist(), strict=True)))
               for x, row in zip(snap.listings, probs, strict=True)]  # fmt: skip
    return set_figures(apply_operating_point(records, doc, taxonomy), taxonomy)


def evaluate_run(run: Path, benign: Path | None) -> dict:
    ckpt = sorted((run / "checkpoints").glob("best-*.ckpt"))[0]
    start = time.time()
    code = mmdetect(["thresholds", "fit", "--model", str(ckpt), "--snapshot", SETS["validation"][0],
                     "--created-from", SETS["validation"][1], "--policy",
                     "configs/policy/default.yaml", "--out", str(run / "thresholds"),
                     "--num-workers", "0"])  # fmt: skip
    if code != 0:
        raise SystemExit(f"{run}: thresholds fit failed")
    path = run / "thresholds" / "thresholds.json"
    doc = read_operating_point(path, json.loads(path.read_text())["taxonomy"])
    out: dict = {"run": str(run), "checkpoint": ckpt.name, "sets": {}}
    for name, (snapshot, since) in SETS.items():
        out["sets"][name] = figures(ckpt, read_labeled(snapshot, since, None), doc)
    val = read_labeled(*SETS["validation"], None)
    out["perturbed"] = {
        kind: figures(ckpt, replace(val, listings=perturb(val.listings, kind)), doc)["macro_ap"]
        for kind in EVASIONS
    }
    if benign is not None:
        out["sets"]["benign_text"] = figures(ckpt, read_labeled(benign, None, None), doc)
    out["eval_seconds"] = round(time.time() - start, 1)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--benign", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    result = evaluate_run(args.run, args.benign)
    (args.run / "quality.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.run}: validation {result['sets']['validation']['macro_ap']:.3f} "
          f"independent {result['sets']['independent']['macro_ap']:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
