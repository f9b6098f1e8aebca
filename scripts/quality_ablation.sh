#!/usr/bin/env bash
# The issue-29 ablation: each generalisation lever alone and combined, up to three seeds each,
# on validation (September), October, the independent-phrasing set, validation with each
# evasion, and real benign Japanese text; fused vs each single modality. Writes docs/quality.md.
#
#   bash scripts/quality_ablation.sh                      # SEEDS="0 1 2" EPOCHS=4 JOBS=2
#   SEEDS="0" EPOCHS=2 bash scripts/quality_ablation.sh   # a quick look
#   EPOCHS=3 ONLY_GROUPS=longer DOC=docs/quality_longer.md NOTES=docs/quality_longer_notes.md \
#     CELLS="text+normalize ..." bash scripts/quality_ablation.sh   # the follow-up (its doc)
#
# Text levers are measured on the text tower alone (configs/train/text_only.yaml: much cheaper
# than a fused fit, and the levers touch only the text); the modality rows and the evasion
# levers' fused combination are fused fits. 1 torch thread per fit, JOBS fits at a time, jobs
# in the priority order ORDER below, so a run stopped early still has the main comparisons.
# Finished runs (RUN/quality.json) are kept and skipped: rerunning resumes.
# Needs: apt-get install manpages-ja (benign text), pip install 'mmdetect[vectors]' (ja-ginza).
set -euo pipefail
cd "$(dirname "$0")/.."
MM=${MMDETECT:-.venv/bin/mmdetect}
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/quality}
SEEDS=${SEEDS:-"0 1 2"}
EPOCHS=${EPOCHS:-4}
JOBS=${JOBS:-2}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MMDETECT="$MM" PYTHON="$PY"
mkdir -p "$OUT"
# CELLS="a b" runs only those cells and DOC=FILE writes their tables (with ONLY_GROUPS) there instead.
CELLS=${CELLS:-}
DOC=${DOC:-docs/quality.md}
ONLY_GROUPS=${ONLY_GROUPS:-}
T=configs/train
# cell | group | overlays on tiny.yaml + levers_off.yaml (the baseline: tiny.yaml without the
# evasion levers it adopted from this ablation) | what it tests | epochs (default EPOCHS)
{
  printf 'fused\tmodality\t-\tthe tiny fused model (tiny.yaml + levers_off.yaml)\n'
  printf 'text\tmodality,text\t%s\ttext tower alone (the text levers baseline)\n' "$T/text_only.yaml"
  printf 'image_only\tmodality\t%s\timage tower alone\n' "$T/image_only.yaml"
  printf 'text+normalize\ttext,longer\t%s %s\tevasion normalisation (textnorm.py)\n' "$T/text_only.yaml" "$T/normalize.yaml"
  printf 'text+augment\ttext\t%s %s\tevasion augmentation of the training text (augment.py)\n' "$T/text_only.yaml" "$T/augment.yaml"
  printf 'text+normalize+augment\ttext\t%s %s %s\tboth evasion levers\n' "$T/text_only.yaml" "$T/normalize.yaml" "$T/augment.yaml"
  printf 'text+vectors\ttext\t%s %s\tja-ginza vectors in the whole-word embedding rows\n' "$T/text_only.yaml" "$T/tiny_vectors.yaml"
  printf 'text+lexicon\ttext\t%s %s\tvectors + a vocabulary with 4000 lexicon words\n' "$T/text_only.yaml" "$T/tiny_lexicon.yaml"
  printf 'text+pretrain\ttext\t%s %s\tMLM-pretrained encoder (mmdetect pretrain)\n' "$T/text_only.yaml" "$T/tiny_pretrained.yaml"
  printf 'text+wordvec\ttext\t%s %s\tbag-of-vectors tower instead of the BERT\n' "$T/text_only.yaml" "$T/tiny_wordvec.yaml"
  printf 'fused+normalize+augment\tcombined\t%s %s\tfused, with both evasion levers\n' "$T/normalize.yaml" "$T/augment.yaml"
  printf 'text+kana\ttext\t%s %s\tnormalisation with hiragana folded to katakana\n' "$T/text_only.yaml" "$T/kana.yaml"
  printf 'text+normalize+augment+vectors\ttext\t%s %s %s %s\tthe evasion levers with the vector init\n' "$T/text_only.yaml" "$T/normalize.yaml" "$T/augment.yaml" "$T/tiny_vectors.yaml"
  printf 'text+all\ttext\t%s %s %s %s\tevasion levers + vectors + lexicon vocabulary\n' "$T/text_only.yaml" "$T/normalize.yaml" "$T/augment.yaml" "$T/tiny_lexicon.yaml"
  printf 'fused@6\tdemo\t-\ttiny.yaml before this issue, at the demo 6 epochs\t6\n'
  printf 'fused+normalize+augment@6\tdemo,longer\t%s %s\tthe same with both evasion levers (6 epochs)\t6\n' "$T/normalize.yaml" "$T/augment.yaml"
  # Follow-up (group longer): the 3-epoch text cells above are undertrained; the same levers at
  # 8 epochs beside their 3-epoch selves, and the demo's fused config at 8 (CELLS=... DOC=...).
  printf 'text+normalize@8\tlonger\t%s %s\tthe text-lever baseline, 8 epochs\t8\n' "$T/text_only.yaml" "$T/normalize.yaml"
  printf 'text+wordvec+normalize\tlonger\t%s %s %s\tthe word-vector tower with normalisation\n' "$T/text_only.yaml" "$T/tiny_wordvec.yaml" "$T/normalize.yaml"
  printf 'text+wordvec+normalize@8\tlonger\t%s %s %s\tthe same, 8 epochs\t8\n' "$T/text_only.yaml" "$T/tiny_wordvec.yaml" "$T/normalize.yaml"
  printf 'fused+normalize+augment@8\tlonger\t%s %s\ttiny.yaml as adopted, 8 epochs\t8\n' "$T/normalize.yaml" "$T/augment.yaml"
} > "$OUT/plan.tsv"
# cell:seeds in priority order: the evasion levers' three seeds first (cheap text fits), then
# every other cell's first seed, then the rest. SEEDS restricts the seeds.
ORDER="fused:0 text:0 text+normalize+augment:0 text+normalize:0 text+augment:0
text:1,2 text+normalize+augment:1,2 text+normalize:1,2 text+augment:1,2
text+vectors:0 text+lexicon:0 text+pretrain:0 fused+normalize+augment:0 image_only:0
text+wordvec:0 fused:1,2 fused+normalize+augment:1,2 text+vectors:1,2 text+lexicon:1,2
text+pretrain:1,2 image_only:1,2 text+wordvec:1,2 text+kana:0,1,2
text+normalize+augment+vectors:0,1,2 text+all:0,1,2 fused@6:0 fused+normalize+augment@6:0
fused@6:1 fused+normalize+augment@6:1 fused@6:2 fused+normalize+augment@6:2
text+normalize@8:0,1,2 text+wordvec+normalize:0,1,2
text+wordvec+normalize@8:0,1,2 fused+normalize+augment@8:0,1,2"

echo "== inputs: benign text now; the lexicon vocabulary and the pretrained encoder in the background"
[ -s "$OUT/benign_text/listings.jsonl" ] || "$PY" scripts/benign_text.py --out "$OUT/benign_text" --n 400
wanted() {  # is cell $1 in this run (CELLS empty: every cell)?
  [ -z "$CELLS" ] || case " $CELLS " in *" $1 "*) ;; *) return 1 ;; esac
}
prep() {  # only what the cells of this run read
  if wanted text+lexicon || wanted text+all; then
    [ -s runs/vocab_lexicon/vocab.txt ] || "$MM" vocab data_samples/train --size 1672 \
      --vectors ja_ginza --lexicon-words 4000 --out runs/vocab_lexicon
  fi
  if wanted text+pretrain; then
    [ -d runs/pretrain/tiny/encoder ] || "$MM" pretrain --config configs/pretrain/tiny.yaml \
      --trainer.enable_progress_bar=false
  fi
}
if ! { [ -s "$OUT/prep.pid" ] && kill -0 "$(cat "$OUT/prep.pid")" 2>/dev/null; }; then
  prep > "$OUT/prep.log" 2>&1 &
  echo $! > "$OUT/prep.pid"
fi

needs() {  # the input a cell's config reads, built by prep()
  case $1 in
    text+lexicon|text+all) echo runs/vocab_lexicon/vocab.txt ;;
    text+pretrain) echo runs/pretrain/tiny/encoder ;;
  esac
}

run_one() {  # cell seed
  local cell=$1 seed=$2 run="$OUT/$1/s$2" args=(--config configs/train/tiny.yaml --config configs/train/levers_off.yaml) need t0 t1 epochs
  [ -s "$run/quality.json" ] && return 0
  epochs=$(awk -F'\t' -v c="$cell" '$1 == c {print $5}' "$OUT/plan.tsv")
  for o in $(awk -F'\t' -v c="$cell" '$1 == c {print $3}' "$OUT/plan.tsv"); do
    [ "$o" = - ] || args+=(--config "$o")
  done
  need=$(needs "$cell")
  while [ -n "$need" ] && [ ! -e "$need" ]; do
    kill -0 "$(cat "$OUT/prep.pid")" 2>/dev/null || { echo "$cell: $need missing"; return 1; }
    sleep 15
  done
  rm -rf "$run" && mkdir -p "$run"
  t0=$(date +%s)
  "$MMDETECT" fit "${args[@]}" --seed_everything "$seed" --trainer.max_epochs "${epochs:-$EPOCHS}" \
    --data.num_workers 0 --trainer.enable_progress_bar=false --run-dir "$run" > "$run/fit.log" 2>&1
  t1=$(date +%s)
  "$PYTHON" scripts/quality_eval.py "$run" --benign "$OUT/benign_text" > "$run/eval.log" 2>&1
  printf '{"fit_seconds": %d, "eval_seconds": %d}\n' $((t1 - t0)) $(($(date +%s) - t1)) > "$run/timing.json"
  echo "$(date -u +%H:%M) $cell s$seed: fit $((t1 - t0)) s; $(tail -1 "$run/eval.log")"
}
export -f run_one needs
export OUT EPOCHS

echo "== fits: seeds [$SEEDS], $EPOCHS epochs, $JOBS at a time"
START=$(date +%s)
for item in $ORDER; do
  for seed in $(echo "${item#*:}" | tr , ' '); do
    wanted "${item%%:*}" || continue
    case " $SEEDS " in *" $seed "*) echo "${item%%:*} $seed" ;; esac
  done
done | xargs -P "$JOBS" -L 1 bash -c 'run_one "$0" "$1" || echo "FAILED: $0 $1 (its fit.log / eval.log)"'
WALL=$(($(date +%s) - START))
echo "wall: $WALL s"

echo "== $DOC"
if [ -n "$ONLY_GROUPS" ]; then
  "$PY" scripts/quality_summary.py --runs "$OUT" --epochs "$EPOCHS" --seeds "$SEEDS" --wall "$WALL" \
    --groups "$ONLY_GROUPS" --title "${TITLE:-Quality, follow-up}" --notes "${NOTES:-/dev/null}" --out "$DOC" \
    --command "EPOCHS=$EPOCHS ONLY_GROUPS=$ONLY_GROUPS DOC=$DOC NOTES=${NOTES:-} CELLS=\"$CELLS\" bash scripts/quality_ablation.sh"
else
  "$PY" scripts/quality_summary.py --runs "$OUT" --epochs "$EPOCHS" --seeds "$SEEDS" --wall "$WALL" \
    --notes docs/quality_notes.md --out "$DOC"
fi
