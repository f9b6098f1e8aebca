#!/usr/bin/env bash
# The GPU check of issue #14: BERT-base + ResNet-50 (random weights), bf16-mixed, one GPU.
# Training listings/s end to end (goal >= 1,000 on an H200) and inference end to end vs model
# only (goals >= 5,000 listings/s and >= 80 %), each with the speed levers off and on
# (mmdetect/bench/gpu_run.py VARIANTS; configs/train/gpu_fast.yaml), in one run.
#
#   scripts/gpu_check.sh            # on the GPU machine; bounded: no variant starts after 240 s,
#                                   # the whole script is killed at 390 s (results kept)
#   scripts/gpu_check.sh --smoke    # on CPU: tiny model, a few steps (~30 s of CPU): it works
#
# With the project's device runner (runs/ is git-ignored, so the tokens are carried):
#   scripts/bench_gpu.sh prep       # here first (needs MeCab): runs/bench_gpu/tokens.pt
#   run(command="scripts/gpu_check.sh", carry=["runs/bench_gpu"], timeout_s=420)
# Results: $OUT/gpu_check.json (written after each variant) and $OUT/gpu_check.log, or
# runs/gpu_check/ when $OUT is not set. Extra ARGS go to `python -m mmdetect.bench.gpu run`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY="${PYTHON:-python}"
command -v "$PY" >/dev/null || PY=python3
dir="${OUT:-runs/gpu_check}"
mkdir -p "$dir"
smoke=0
if [ "${1:-}" = "--smoke" ]; then smoke=1; shift; fi

if [ "$smoke" = 1 ]; then
  tokens="$dir/tokens_smoke.pt"
  "$PY" -m mmdetect.bench.gpu prep --snapshot data_samples/drift --max-length 48 --limit 12 \
    --out "$tokens" >/dev/null
  args=(--model tiny --device cpu --precision 32-true --variants off,on --steps 1
        --warmup-steps 1 --batch-size 4 --infer-batch-size 8 --workers 0 --limit 12
        --model-only-batches 1 --infer-passes 1)
  limit=300
  export OMP_NUM_THREADS=1  # a shared CPU: one thread is as fast for a tiny model
else
  tokens="${TOKENS:-runs/bench_gpu/tokens.pt}"
  if [ ! -f "$tokens" ]; then
    echo "error: $tokens missing: run 'scripts/bench_gpu.sh prep' on a CPU machine first" >&2
    exit 1
  fi
  args=(--variants off,on,on_compile --steps 30 --warmup-steps 8 --infer-passes 3
        --budget-s 240)
  limit=390
fi

{
  echo "# scripts/gpu_check.sh $([ "$smoke" = 1 ] && echo --smoke) $*"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
  fi
  timeout -k 10 "$limit" "$PY" -m mmdetect.bench.gpu run --tokens "$tokens" \
    --out "$dir/gpu_check.json" "${args[@]}" "$@"
} 2>&1 | tee "$dir/gpu_check.log"
exit "${PIPESTATUS[0]}"
