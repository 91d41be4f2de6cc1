#!/usr/bin/env bash
# PostNAS step 1 on one GPU (docs/postnas.md section 7): trains the super-network of a teacher (a
# GLA path next to every attention layer, by distillation), then searches the full-attention
# placements for three objectives (retrieval, multiple-choice loss, math), then up to two SWA layers
# (window 64) next to each objective's best four full-attention layers.
#
#   scripts/train_supernet.sh JETLM TEACHER_DIR TOKENS_DIR OUT_DIR
#
# Env: MINUTES (default 7): the training budget; the step count comes from a 20-step calibration at
# the same settings unless STEPS is given. BLOCK (default gla). Rerunning resumes OUT_DIR/train.
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 JETLM TEACHER_DIR TOKENS_DIR OUT_DIR" >&2
  exit 2
fi
JETLM=$1
TEACHER=$2
DATA=$3
OUT=$4
MINUTES=${MINUTES:-7}
BLOCK=${BLOCK:-gla}
BATCH=32
SEQ=512
mkdir -p "$OUT"
ARGS=(--teacher "$TEACHER" --data "$DATA" --device cuda --block "$BLOCK" --batch $BATCH --seq $SEQ --lr 1e-3
  --min-lr 1e-4 --max-full 6 --task-mix 0.3 --seed 1)
if [ -z "${STEPS:-}" ]; then
  rm -rf "$OUT/calibration"
  "$JETLM" postnas supernet "${ARGS[@]}" --out "$OUT/calibration" --steps 20 --warmup 5 --log-every 10 \
    > "$OUT/calibration.log" 2>&1
  TPS=$(grep -o '[0-9]* tok/s' "$OUT/calibration.log" | tail -1 | grep -o '^[0-9]*')
  STEPS=$((MINUTES * 60 * TPS / (BATCH * SEQ)))
  echo "train_supernet: calibration ${TPS} tokens/s -> ${STEPS} steps for ${MINUTES} minutes"
  rm -rf "$OUT/calibration"
fi
"$JETLM" postnas supernet "${ARGS[@]}" --out "$OUT/train" --steps "$STEPS" --warmup $((STEPS / 20)) \
  --log-every 25 --save-every $((STEPS / 5))
"$JETLM" postnas search --supernet "$OUT/train/supernet" --data "$DATA" --device cuda --out "$OUT/search" \
  --objectives kv-retrieval@256,cloze@256,arithmetic --examples 128 --beam 3 --max-k 4 --swa-k 2 --swa-window 64
