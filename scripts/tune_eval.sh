#!/usr/bin/env bash
# Honest evaluation of `mmdetect tune` on data_samples (docs/training.md, "Tuning"):
# tune the tiny config on the September validation month, then retrain the default tiny config
# and the tuned one (best.yaml) with the same seeds and report macro AP on September (the month
# the tuning and the checkpoint selection looked at) and on October (data_samples/drift, which
# neither looked at), per seed and as mean ± sample standard deviation.
#
#   bash scripts/tune_eval.sh [RUN_DIR]          # the full run: 12 trials, seeds 0 1 2 (1-2 h, 2 cores)
#
# Knobs (environment): N_TRIALS (12), SEEDS ("0 1 2"), SPACE (configs/tune/tiny.yaml),
# FIT_ARGS (extra `mmdetect fit` arguments for every trial and retrain: a smoke test shrinks
# the runs with them), MMDETECT (the command, default .venv/bin/mmdetect). The smoke version:
#   N_TRIALS=2 SEEDS=0 FIT_ARGS="--trainer.max_epochs=1 --trainer.limit_train_batches=4" \
#     bash scripts/tune_eval.sh runs/tune_eval_smoke
# Resumable: run it again on the same RUN_DIR after a kill and it tunes only the trials still
# missing from the study (the killed trial is marked FAIL and does not count) and retrains only
# the seeds without October figures. A larger N_TRIALS on the same RUN_DIR extends the study; if
# that changes best.yaml, the tuned seeds are retrained (RUN/tuned/best.yaml is what they used).
set -euo pipefail
RUN=${1:-runs/tune_eval}
N_TRIALS=${N_TRIALS:-12}
SEEDS=${SEEDS:-0 1 2}
SPACE=${SPACE:-configs/tune/tiny.yaml}
read -r -a MM <<<"${MMDETECT:-.venv/bin/mmdetect}"
read -r -a EXTRA <<<"${FIT_ARGS:-}"
PYTHON=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1
mkdir -p "$RUN"
lscpu | grep -E '^(Model name|CPU\(s\)):' || true
grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ' && echo

fit_args=()
for a in "${EXTRA[@]}"; do fit_args+=("--fit-arg=$a"); done
# trials the study already holds (COMPLETE or PRUNED), from an earlier, killed run of this script
done_trials=$("$PYTHON" - "$RUN/study.db" <<'PY'
import sys
from pathlib import Path
import optuna
if not Path(sys.argv[1]).exists():
    print(0)
    sys.exit()
optuna.logging.set_verbosity(optuna.logging.WARNING)
try:
    study = optuna.load_study(study_name="tune_eval", storage=f"sqlite:///{sys.argv[1]}")
except KeyError:
    print(0)
else:
    print(sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials))
PY
)
todo=$((N_TRIALS - done_trials))
if [ "$todo" -gt 0 ] || [ ! -f "$RUN/tune/best.yaml" ]; then
  [ "$todo" -gt 0 ] || todo=1 # the outputs are written by a tune process: run one more trial
  start=$(date +%s)
  "${MM[@]}" tune --config configs/train/tiny.yaml --space "$SPACE" \
    --storage "sqlite:///$RUN/study.db" --study tune_eval --n-trials "$todo" \
    --out "$RUN/tune" "${fit_args[@]}" >>"$RUN/tune.log" 2>&1
  echo "tune: $todo trials in $(($(date +%s) - start)) s after $done_trials earlier ones" \
    "(trials.csv, summary.html in $RUN/tune)"
fi

for variant in default tuned; do
  overlay=()
  if [ "$variant" = tuned ]; then
    overlay=(--config "$RUN/tune/best.yaml")
    # retrained from an older best.yaml (the study has grown since): retrain from the new one
    cmp -s "$RUN/tune/best.yaml" "$RUN/tuned/best.yaml" || rm -rf "$RUN/tuned"
    mkdir -p "$RUN/tuned"
    cp "$RUN/tune/best.yaml" "$RUN/tuned/best.yaml"
  fi
  for seed in $SEEDS; do
    dir="$RUN/$variant/seed$seed"
    [ -f "$dir/eval_oct/metrics.json" ] && continue # done by an earlier run
    rm -rf "$dir"
    mkdir -p "$dir"
    start=$(date +%s)
    "${MM[@]}" fit --config configs/train/tiny.yaml "${overlay[@]}" --seed_everything "$seed" \
      --run-dir "$dir" --trainer.enable_progress_bar false "${EXTRA[@]}" >"$dir.log" 2>&1
    echo $(($(date +%s) - start)) >"$dir/fit_seconds"
    best=$(ls "$dir"/checkpoints/best-*.ckpt | head -n 1)
    # macro AP does not depend on the operating point; evaluate judges one, so fit it first
    "${MM[@]}" thresholds fit --model "$best" --snapshot data_samples/train \
      --created-from 2026-09-01 --out "$dir/thresholds" >/dev/null
    "${MM[@]}" evaluate --model "$best" --thresholds "$dir/thresholds/thresholds.json" \
      --snapshot data_samples/train --created-from 2026-09-01 --out "$dir/eval_sep" >/dev/null
    "${MM[@]}" evaluate --model "$best" --thresholds "$dir/thresholds/thresholds.json" \
      --snapshot data_samples/drift --out "$dir/eval_oct" >/dev/null
  done
done

python3 - "$RUN" $SEEDS <<'PY'
import json, statistics, sys
run, seeds = sys.argv[1], sys.argv[2:]
def ap(variant, seed, month):
    doc = json.load(open(f"{run}/{variant}/seed{seed}/eval_{month}/metrics.json"))
    return doc["metrics"]["macro"]["average_precision"]
def spread(xs):
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"
print(f"{'config':<8} {'seed':>4} {'Sep macro AP':>13} {'Oct macro AP':>13} {'fit s':>6}")
for variant in ("default", "tuned"):
    for s in seeds:
        secs = open(f"{run}/{variant}/seed{s}/fit_seconds").read().strip()
        print(f"{variant:<8} {s:>4} {ap(variant, s, 'sep'):>13.3f} {ap(variant, s, 'oct'):>13.3f} {secs:>6}")
    print(f"{variant:<8} {'all':>4} {spread([ap(variant, s, 'sep') for s in seeds]):>13} "
          f"{spread([ap(variant, s, 'oct') for s in seeds]):>13}")
PY
