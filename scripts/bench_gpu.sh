#!/usr/bin/env bash
# GPU benchmark: BERT-base + ResNet-50 (random weights), bf16-mixed training and inference,
# listings/s on one GPU. Tokenization is cached beforehand so the GPU machine needs no MeCab.
#
#   scripts/bench_gpu.sh prep          # on a CPU machine with fugashi + unidic-lite:
#                                      #   writes runs/bench_gpu/tokens.pt (data_samples/train)
#   scripts/bench_gpu.sh run [ARGS]    # on the GPU machine (torch, torchvision, transformers,
#                                      #   lightning; carry runs/bench_gpu/ and data_samples/)
#   scripts/bench_gpu.sh profile [ARGS]  # where a training step goes (forward / backward /
#                                      #   optimizer, new vs seen shapes, kernel launches)
#
# ARGS go to `python -m mmdetect.bench.gpu run` (--variants off,on --steps 30 --warmup-steps 5
# by default; batch sizes and workers per variant in mmdetect/bench/gpu_run.py, --batch-size /
# --infer-batch-size / --workers override them). scripts/gpu_check.sh is the prepared one-run
# check of issue #14. Results: stdout and $OUT/results.json when $OUT is set (the device
# runner's output folder), else runs/bench_gpu/results.json.
# mmdetect need not be installed: the repository root is put on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY="${PYTHON:-python}"
command -v "$PY" >/dev/null || PY=python3
TOKENS="${TOKENS:-runs/bench_gpu/tokens.pt}"
cmd="${1:-run}"
shift || true
case "$cmd" in
  prep)
    "$PY" -m mmdetect.bench.gpu prep --out "$TOKENS" "$@"
    ;;
  run | profile)
    if [ ! -f "$TOKENS" ]; then
      echo "error: $TOKENS missing: run 'scripts/bench_gpu.sh prep' on a CPU machine first" >&2
      exit 1
    fi
    if [ -n "${OUT:-}" ]; then dir="$OUT"; else dir=runs/bench_gpu; fi
    results="$dir/$([ "$cmd" = run ] && echo results || echo profile).json"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    "$PY" -m mmdetect.bench.gpu "$cmd" --tokens "$TOKENS" --out "$results" "$@"
    ;;
  *)
    echo "usage: $0 prep|run|profile [ARGS]" >&2
    exit 2
    ;;
esac
