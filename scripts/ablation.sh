#!/usr/bin/env bash
# Fused vs text-only vs image-only on data_samples (the quality bar of the tiny config).
# Usage: bash scripts/ablation.sh [RUN_DIR]; prints macro AP on the validation month and drift.
set -euo pipefail
RUN=${1:-runs/ablation}
MM=${MMDETECT:-.venv/bin/mmdetect}
export HF_HUB_OFFLINE=1
mkdir -p "$RUN"
declare -A OVERLAY=([fused]="" [text_only]="--config configs/train/text_only.yaml"
                    [image_only]="--config configs/train/image_only.yaml")
for name in fused text_only image_only; do
  dir="$RUN/$name"
  rm -rf "$dir"
  # shellcheck disable=SC2086
  "$MM" fit --config configs/train/tiny.yaml ${OVERLAY[$name]} \
    --trainer.default_root_dir "$dir" --trainer.logger.init_args.save_dir "$dir" \
    --trainer.enable_progress_bar false \
    --checkpoint.dirpath "$dir/ckpt" --last_checkpoint.dirpath "$dir/ckpt" >"$dir.log" 2>&1
  best=$(ls "$dir"/ckpt/best-*.ckpt | head -n 1)
  "$MM" evaluate --model "$best" --snapshot data_samples/train --created-from 2026-09-01 \
    --out "$dir/eval_val" >/dev/null
  "$MM" evaluate --model "$best" --snapshot data_samples/drift --out "$dir/eval_drift" >/dev/null
done
python3 - "$RUN" <<'PY'
import json, sys
run = sys.argv[1]
print(f"{'model':<12} {'val macro AP':>13} {'drift macro AP':>15}")
for name in ("fused", "text_only", "image_only"):
    ap = [json.load(open(f"{run}/{name}/{s}/metrics.json"))["metrics"]["macro"]["average_precision"]
          for s in ("eval_val", "eval_drift")]
    print(f"{name:<12} {ap[0]:>13.3f} {ap[1]:>15.3f}")
PY
