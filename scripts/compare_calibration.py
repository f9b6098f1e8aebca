"""Expected calibration error of each calibration method, fitted on one predictions file and
measured on another (e.g. fitted on September, measured on the drifted October):

    python scripts/compare_calibration.py --fit runs/demo/eval_val/predictions.jsonl \
        --eval runs/demo/eval_drift/predictions.jsonl

Both files are `mmdetect evaluate` outputs (their `model_scores` are the model's own
probabilities, their `labels` the truth). The figures in docs/operating-points.md come from here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mmdetect.evaluate.metrics import calibration_errors
from mmdetect.evaluate.predictions import read_predictions, records_to_arrays
from mmdetect.policy.calibration import apply_calibration, fit_calibration
from mmdetect.policy.config import CALIBRATIONS


def arrays(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    records, taxonomy = read_predictions(path)
    labeled = [r for r in records if r.labels is not None]
    y, _ = records_to_arrays(labeled, taxonomy)
    raw = np.array([[(r.model_scores or r.scores)[c] for c in taxonomy] for r in labeled])
    return list(taxonomy), y, raw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fit", type=Path, required=True)
    p.add_argument("--eval", type=Path, required=True)
    p.add_argument("--bins", type=int, default=10)
    args = p.parse_args()
    taxonomy, y_fit, s_fit = arrays(args.fit)
    _, y_ev, s_ev = arrays(args.eval)
    print(f"fit on {args.fit} ({len(y_fit)} listings), measured on {args.eval} ({len(y_ev)})")
    print(f"{'method':<12} {'ECE fit':>8} {'ECE eval':>9}  per class on eval")
    for method in CALIBRATIONS:
        cal = fit_calibration(y_fit, s_fit, taxonomy, method)
        fit = calibration_errors(y_fit, s_fit, apply_calibration(cal, s_fit, taxonomy), taxonomy,
                                 args.bins)["calibrated"]  # fmt: skip
        ev = calibration_errors(y_ev, s_ev, apply_calibration(cal, s_ev, taxonomy), taxonomy,
                                args.bins)["calibrated"]  # fmt: skip
        per = " ".join(f"{c[:6]}={v:.3f}" for c, v in ev["classes"].items())
        print(f"{method:<12} {fit['macro']:>8.3f} {ev['macro']:>9.3f}  {per}")


if __name__ == "__main__":
    main()
