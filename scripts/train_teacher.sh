#!/usr/bin/env bash
# Trains the PostNAS teacher (docs/postnas.md section 4) on one GPU: a 12-layer, 384-wide qwen2
# (22M parameters, GQA 6/2, tied embeddings) on the Debian-text token dataset with 30% of the batch
# rows holding synthetic task examples (kv-retrieval, passkey, arithmetic), then scores it.
#
#   scripts/train_teacher.sh JETLM TOKENS_DIR OUT_DIR
#
# Env: MINUTES (default 15): the training budget; the step count comes from a 30-step calibration
# run at the same settings (its tokens/s), unless STEPS is given. NPROC (default 1): GPUs, through
# `--nproc` (the global batch stays 64 x 1024). Rerunning resumes OUT_DIR/run/checkpoint.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 JETLM TOKENS_DIR OUT_DIR" >&2
  exit 2
fi
JETLM=$1
DATA=$2
OUT=$3
MINUTES=${MINUTES:-15}
NPROC=${NPROC:-1}
BATCH=64
SEQ=1024
mkdir -p "$OUT"

ARCH=(--config qwen2.5-1.5b --set num_hidden_layers=12 --set hidden_size=384 --set intermediate_size=1024
  --set num_attention_heads=6 --set num_key_value_heads=2 --set vocab_size=8192 --set tie_word_embeddings=true
  --set rope_theta=10000 --set max_position_embeddings=4096 --set eos_token_id=8189 --set bos_token_id=8189)
TRAIN=(--data "$DATA" --device cuda --nproc "$NPROC" --batch $BATCH --seq $SEQ --lr 1.5e-3 --min-lr 1.5e-4
  --weight-decay 0.1 --clip 1.0 --task-mix 0.3 --tasks kv-retrieval,passkey,arithmetic --seed 1)

if [ -z "${STEPS:-}" ]; then
  rm -rf "$OUT/calibration"
  "$JETLM" postnas pretrain "${ARCH[@]}" "${TRAIN[@]}" --out "$OUT/calibration" --steps 30 --warmup 10 \
    --eval-every 0 --log-every 10 --no-plot > "$OUT/calibration.log" 2>&1
  # Tokens/s of the last 10 steps (the first ones pay for cuBLAS and allocator warm-up).
  TPS=$(grep -o '[0-9]* tok/s' "$OUT/calibration.log" | tail -1 | grep -o '^[0-9]*')
  STEPS=$((MINUTES * 60 * TPS / (BATCH * SEQ)))
  echo "train_teacher: calibration ${TPS} tokens/s -> ${STEPS} steps for ${MINUTES} minutes"
  rm -rf "$OUT/calibration"
fi
WARMUP=$((STEPS / 20))
"$JETLM" postnas pretrain "${ARCH[@]}" "${TRAIN[@]}" --out "$OUT/run" --steps "$STEPS" --warmup "$WARMUP" \
  --task-eval kv-retrieval@256,kv-retrieval@512,passkey@512,arithmetic --task-eval-examples 64 \
  --eval-every $((STEPS / 10)) --eval-batches 8 --save-every $((STEPS / 10)) --log-every 25

"$JETLM" postnas eval --model "$OUT/run/final" --data "$DATA" --device cuda --examples 200 \
  --tasks kv-retrieval@128,kv-retrieval@256,kv-retrieval@512,kv-retrieval@1000,passkey@256,passkey@512,passkey@1000,cloze@256,arithmetic \
  --csv "$OUT/eval.csv"
