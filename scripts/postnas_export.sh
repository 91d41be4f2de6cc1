#!/usr/bin/env bash
# PostNAS export on one GPU (docs/postnas.md section 8): turns the searched placement of a
# super-network search into a Jet-Nemotron model dir (stage-1 distillation of its JetBlocks), does
# the same for the uniform placement with as many full-attention layers, and scores both next to the
# teacher on the synthetic tasks.
#
#   scripts/postnas_export.sh JETLM TEACHER_DIR TOKENS_DIR SEARCH_DIR OUT_DIR
#
# Env: K (default 4): full-attention layers; OBJECTIVE (default kv-retrieval@256): whose beam picks
# them (the searched_layers of SEARCH_DIR/comparison.csv at K); FULL overrides the placement
# ("0,1,3,5"). HEADS (default 3), DK/DV (default: the teacher's head_dim): JetBlock sizes (3 heads
# keep a 12x384 teacher's hybrid under 25 MB in q8). STEPS (default 400) of BATCH x SEQ (16 x 512).
# UNIFORM=0 skips the uniform export.
set -euo pipefail
if [ $# -ne 5 ]; then
  echo "usage: $0 JETLM TEACHER_DIR TOKENS_DIR SEARCH_DIR OUT_DIR" >&2
  exit 2
fi
JETLM=$1
TEACHER=$2
DATA=$3
SEARCH=$4
OUT=$5
K=${K:-4}
OBJECTIVE=${OBJECTIVE:-kv-retrieval@256}
HEADS=${HEADS:-3}
STEPS=${STEPS:-400}
BATCH=${BATCH:-16}
SEQ=${SEQ:-512}
TASKS=kv-retrieval@128,kv-retrieval@256,kv-retrieval@512,kv-retrieval@1000,passkey@256,passkey@512,passkey@1000,cloze@256,arithmetic
mkdir -p "$OUT"

if [ -z "${FULL:-}" ]; then
  FULL=$(python3 - "$SEARCH/comparison.csv" "$OBJECTIVE" "$K" << 'EOF'
import csv, sys
for row in csv.DictReader(open(sys.argv[1])):
    if row["task"] == sys.argv[2] and row["k"] == sys.argv[3]:
        print(row["searched_layers"]); break
else:
    sys.exit(f"no {sys.argv[2]} row with k={sys.argv[3]} in {sys.argv[1]}")
EOF
  )
fi
UNIFORM_FULL=$(python3 -c "import sys; n, k = int(sys.argv[1]), int(sys.argv[2]); print(','.join(str(int((j + 0.5) * n / k)) for j in range(k)))" \
  "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['num_hidden_layers'])" "$TEACHER/config.json")" "$K")
SIZES=(--heads "$HEADS")
if [ -n "${DK:-}" ]; then SIZES+=(--dk "$DK"); fi
if [ -n "${DV:-}" ]; then SIZES+=(--dv "$DV"); fi
COMMON=(--teacher "$TEACHER" --data "$DATA" --device cuda "${SIZES[@]}" --steps "$STEPS" --batch "$BATCH" --seq "$SEQ"
  --lr 1e-3 --min-lr 1e-4 --warmup 20 --log-every 50 --seed 1)

echo "postnas_export: searched placement {$FULL} (${OBJECTIVE}, k=$K), uniform {$UNIFORM_FULL}"
"$JETLM" postnas eval --model "$TEACHER" --data "$DATA" --device cuda --examples 200 --tasks "$TASKS" \
  --csv "$OUT/teacher_eval.csv"
"$JETLM" postnas export "${COMMON[@]}" --full "$FULL" --out "$OUT/searched"
"$JETLM" postnas eval --model "$OUT/searched" --data "$DATA" --device cuda --examples 200 --tasks "$TASKS" \
  --csv "$OUT/searched_eval.csv"
if [ "${UNIFORM:-1}" != 0 ]; then
  "$JETLM" postnas export "${COMMON[@]}" --full "$UNIFORM_FULL" --out "$OUT/uniform"
  "$JETLM" postnas eval --model "$OUT/uniform" --data "$DATA" --device cuda --examples 200 --tasks "$TASKS" \
    --csv "$OUT/uniform_eval.csv"
fi
echo "postnas_export: done ($OUT)"
