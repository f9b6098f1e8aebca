#!/usr/bin/env bash
# Train variants of the tiny config side by side (same seed, same data) and print macro AP on
# the validation month (September of data_samples/train) and the drifted month (October), with
# each fit's wall time.
#
#   bash scripts/ablation.sh [RUN_DIR] [NAME='OVERLAY ARGS' ...]
#
# Without variants: fused vs text-only vs image-only. The fusion comparison of docs/training.md:
#   bash scripts/ablation.sh runs/fusion concat= gated='--model.fusion gated' \
#     cross_attention='--config configs/train/cross_attention.yaml'
set -euo pipefail
RUN=${1:-runs/ablation}
shift || true
MM=${MMDETECT:-.venv/bin/mmdetect}
export HF_HUB_OFFLINE=1
mkdir -p "$RUN"
if [ $# -eq 0 ]; then
  set -- fused= text_only='--config configs/train/text_only.yaml' \
    image_only='--config configs/train/image_only.yaml'
fi
names=()
for variant in "$@"; do
  name=${variant%%=*}
  overlay=${variant#*=}
  names+=("$name")
  dir="$RUN/$name"
  rm -rf "$dir"
  mkdir -p "$dir"
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$MM" fit --config configs/train/tiny.yaml $overlay \
    --trainer.default_root_dir "$dir" --trainer.logger.init_args.save_dir "$dir" \
    --trainer.enable_progress_bar false \
    --checkpoint.dirpath "$dir/ckpt" --last_checkpoint.dirpath "$dir/ckpt" >"$dir.log" 2>&1
  echo $(($(date +%s) - start)) >"$dir/fit_seconds"
  best=$(ls "$dir"/ckpt/best-*.ckpt | head -n 1)
  # macro AP does not depend on the operating point; evaluate judges one, so fit it first
  "$MM" thresholds fit --model "$best" --snapshot data_samples/train --created-from 2026-09-01 \
    --out "$dir/thresholds" >/dev/null
  for eval in "eval_val data_samples/train --created-from 2026-09-01" "eval_drift data_samples/drift"; do
    # shellcheck disable=SC2086
    set -- $eval
    out=$1
    shift
    "$MM" evaluate --model "$best" --thresholds "$dir/thresholds/thresholds.json" \
      --snapshot "$@" --out "$dir/$out" >/dev/null
  done
done
python3 - "$RUN" "${names[@]}" <<'PY'
import json, sys
run, names = sys.argv[1], sys.argv[2:]
print(f"{'model':<16} {'val macro AP':>13} {'drift macro AP':>15} {'fit s':>7}")
for name in names:
    ap = [json.load(open(f"{run}/{name}/{s}/metrics.json"))["metrics"]["macro"]["average_precision"]
          for s in ("eval_val", "eval_drift")]
    secs = open(f"{run}/{name}/fit_seconds").read().strip()
    print(f"{name:<16} {ap[0]:>13.3f} {ap[1]:>15.3f} {secs:>7}")
PY
