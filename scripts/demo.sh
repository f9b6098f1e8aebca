#!/usr/bin/env bash
# The main job on data_samples: check -> train -> fit the operating point -> export ->
# evaluate the bundle on September and the drifted October -> predict. Called by `make demo`;
# every step is a plain `mmdetect` command.
set -euo pipefail
RUN=${1:-runs/demo}
MM=${MMDETECT:-.venv/bin/mmdetect}
export HF_HUB_OFFLINE=1
rm -rf "$RUN" && mkdir -p "$RUN"

echo "== 1. check the training snapshot"
"$MM" check data_samples/train

echo "== 2. train the tiny model (train June-August, validate September)"
"$MM" fit --config configs/train/tiny.yaml --run-dir "$RUN/train"
BEST=$(ls "$RUN"/train/checkpoints/best-*.ckpt | head -n 1)
echo "best checkpoint: $BEST"

echo "== 3. fit the operating point on the validation month (configs/policy/default.yaml):"
echo "   calibration, certified auto-hide, and the review threshold sized to the review budget"
"$MM" thresholds fit --model "$BEST" --snapshot data_samples/train --created-from 2026-09-01 \
  --policy configs/policy/default.yaml --out "$RUN/thresholds"

echo "== 4. export a TorchScript bundle carrying that operating point"
"$MM" export --ckpt "$BEST" --thresholds "$RUN/thresholds/thresholds.json" \
  --parity-snapshot data_samples/drift --out "$RUN/bundle"

echo "== 5. evaluate the bundle (the served artifact and its thresholds) on September and on the"
echo "   drifted October: realised review rate vs budget, auto-hide precision with its interval;"
echo "   beside September, the independent-phrasing set (data_samples/independent, written by"
echo "   another generator): the generalisation gap a validation month alone would hide"
"$MM" evaluate --model "$RUN/bundle" --snapshot data_samples/train --created-from 2026-09-01 \
  --independent data_samples/independent --out "$RUN/eval_val"
"$MM" evaluate --model "$RUN/bundle" --snapshot data_samples/drift --out "$RUN/eval_drift"

echo "== 5b. the same bundle under a weaker auto-hide claim (configs/policy/lenient.yaml): what"
echo "   September's 14-23 positives per class can certify, and whether it holds on October"
"$MM" thresholds fit --model "$RUN/bundle" --snapshot data_samples/train --created-from 2026-09-01 \
  --policy configs/policy/lenient.yaml --out "$RUN/thresholds_lenient"
"$MM" evaluate --model "$RUN/bundle" --thresholds "$RUN/thresholds_lenient/thresholds.json" \
  --snapshot data_samples/drift --out "$RUN/eval_drift_lenient"

echo "== 6. predict on incoming (unlabeled) listings; the review queue is written beside"
"$MM" predict --bundle "$RUN/bundle" --input data_samples/incoming/listings.jsonl \
  --out "$RUN/decisions.jsonl"

echo "== 7. traffic view: the review budget fitted on unlabeled September traffic (a random 0.2 %"
echo "   sample), the bundle judged on the labeled random sample of October traffic (2.5 % prohibited)"
"$MM" thresholds fit --model "$BEST" --snapshot data_samples/train --created-from 2026-09-01 \
  --policy configs/policy/default.yaml --traffic data_samples/traffic_unlabeled \
  --traffic-created-from 2026-09-01 --traffic-created-to 2026-10-01 --out "$RUN/thresholds_traffic"
"$MM" evaluate --model "$RUN/bundle" --thresholds "$RUN/thresholds_traffic/thresholds.json" \
  --snapshot data_samples/traffic --created-from 2026-10-01 --out "$RUN/eval_traffic"
# its "expected on traffic" lines: the review share at the default budget, the recall of
# prohibited listings, and the auto-hide precision with its interval

echo "== 8. customer-support rules beside the model (configs/rules/example.yaml, docs/rules.md):"
echo "   rules alone, model alone, and both at the same review budget on October; coverage each way"
"$MM" evaluate --model "$RUN/bundle" --snapshot data_samples/drift \
  --rules configs/rules/example.yaml --out "$RUN/eval_rules"
"$MM" rules test configs/rules/example.yaml --snapshot data_samples/drift --model "$RUN/bundle" \
  --limit 5 --out "$RUN/rules_test"

echo
echo "reports: $RUN/eval_val/report.html  $RUN/eval_drift/report.html"
echo "generalisation (validation vs independent AP): $RUN/eval_val/generalisation.md"
echo "bundle:  $RUN/bundle    decisions: $RUN/decisions.jsonl"
echo "review queue (highest priority first): $RUN/decisions.review_queue.jsonl"
