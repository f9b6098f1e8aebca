#!/usr/bin/env bash
# The main job on data_samples. Called by `make demo`; every step is a plain `mmdetect` command.
set -euo pipefail
RUN=${1:-runs/demo}
MM=${MMDETECT:-.venv/bin/mmdetect}
mkdir -p "$RUN"

echo "== 1. validate the training snapshot"
"$MM" validate data_samples/train
