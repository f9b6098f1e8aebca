#!/usr/bin/env bash
# The worked example and cost figures of docs/explain.md. Needs `make demo` first (runs/demo/).
# Usage: bash scripts/explain_example.sh [RUN_DIR=runs/demo] [OUT=runs/explain]
set -euo pipefail
RUN=${1:-runs/demo}
OUT=${2:-runs/explain}
PY=${PY:-.venv/bin/python}
CKPT=$(ls "$RUN"/train/checkpoints/best-*.ckpt | head -1)  # make demo: RUN/train/checkpoints
ID=L0002769  # a counterfeit listing of data_samples/drift with two photos
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2 | tr ' ' '\n' | grep -E '^(avx|avx2|avx512f|avx512_bf16|amx_tile|fma|sse4_2)$' | xargs)"
echo "torch threads: $($PY -c 'import torch; print(torch.get_num_threads())')"
# 1. the example card: IG on the checkpoint (calibrated with the demo's thresholds), occlusion on
#    the bundle; words in logit units (the score is saturated: probability differences are ~0)
$PY -m mmdetect.cli.commands explain --model "$CKPT" --thresholds "$RUN/thresholds/thresholds.json" \
  --input data_samples/drift/listings.jsonl --ids $ID --units logit --out "$OUT/example_ckpt"
$PY -m mmdetect.cli.commands explain --model "$RUN/bundle" --units logit \
  --input data_samples/drift/listings.jsonl --ids $ID --out "$OUT/example_bundle"
$PY -m mmdetect.explain.figure "$OUT/example_ckpt/explanations.jsonl" --id $ID \
  --images-root data_samples/drift --png docs/img/explain_card.png
# 2. cost per listing: the first 20 drift listings, each method (seconds and passes per listing)
$PY -m mmdetect.cli.commands explain --model "$CKPT" --input data_samples/drift/listings.jsonl \
  --max-listings 20 --out "$OUT/cost_ckpt"
$PY -m mmdetect.cli.commands explain --model "$RUN/bundle" --input data_samples/drift/listings.jsonl \
  --max-listings 20 --out "$OUT/cost_bundle"
for d in cost_ckpt cost_bundle; do
  $PY - "$OUT/$d/explanations.jsonl" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(x) for x in open(sys.argv[1], encoding="utf-8")][1:]  # the first warms up
s = [r["cost"]["seconds"] for r in rows]
p = [r["cost"]["forward_passes"] for r in rows]
print(f"{sys.argv[1]}: {rows[0]['text']['method']}: {len(rows)} listings, median {statistics.median(s):.2f} s "
      f"(max {max(s):.2f}), forward passes median {statistics.median(p)} (max {max(p)})")
PYEOF
done
