#!/usr/bin/env bash
# One call on a lent GPU: the CUDA tests, then alternating A/B runs of kernel switches against
# the defaults, then the paper's 4K row and the batch-1 decode, with a table at the end.
# Built for short device leases: every step is bounded, and the table prints what finished.
#
#   bench/gpu_ab.sh [BIN_DIR] [SWITCH=VALUE ...]
#
# BIN_DIR holds jetlm and tests/cuda/{cuda_op_tests,cuda_engine_tests,cuda_op_bench} (default:
# build-cuda), and lib/ when unpacked from bench/pack_cuda_bins.sh. The switches to compare against
# the defaults: the arguments after BIN_DIR (see docs/performance.md's switch table). Set
# GPU_AB_ROUNDS (default 2), GPU_AB_BUDGET_S (default 540: steps that would start later are
# skipped), GPU_AB_CONTEXTS (the paper rows' contexts, default 4096) and GPU_AB_PAPER_S (their
# time limit, default 200). The paper CSV goes to $OUT (the device tool's result folder) or /tmp.
set -uo pipefail
BIN=${1:-build-cuda}
shift || true
VARIANTS=("$@")
if [ ${#VARIANTS[@]} -eq 0 ]; then
  # No opt-in switch is waiting: the last two made default (2026-12-08) are checked the other way.
  VARIANTS=("JETLM_PREP_ROWS=0" "JETLM_GDN_OUTPUT_MMA=0")
fi
ROUNDS=${GPU_AB_ROUNDS:-2}
BUDGET=${GPU_AB_BUDGET_S:-540}
JETLM="$BIN/jetlm"
# Libraries packed by bench/pack_cuda_bins.sh next to the binaries.
if [ -d "$BIN/lib" ]; then export LD_LIBRARY_PATH="$(cd "$BIN/lib" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
[ -x "$JETLM" ] || { echo "gpu_ab: no jetlm binary at $JETLM" >&2; exit 2; }
export JETLM_SOURCE_DIR=${JETLM_SOURCE_DIR:-$PWD}
TABLE=$(mktemp)
SECONDS=0
left() { [ "$SECONDS" -lt "$BUDGET" ]; }
field() { grep -o "\"$1\": *[0-9.]*" | tail -1 | grep -o '[0-9.]*$'; }

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | head -1

echo "== tests"
for t in cuda_op_tests cuda_engine_tests; do
  left || break
  if [ -x "$BIN/tests/cuda/$t" ]; then
    timeout 300 "$BIN/tests/cuda/$t" > "/tmp/gpu_ab_$t.log" 2>&1
    echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED) ' "/tmp/gpu_ab_$t.log" | tr '\n' ' ')" | tee -a "$TABLE"
    grep -E '^\[  FAILED  \]|mma.sync|gdn_chunked_tc T' "/tmp/gpu_ab_$t.log" | head -40
  fi
done

echo "== delta rule (cuda_op_bench --only gdn)"
if left && [ -x "$BIN/tests/cuda/cuda_op_bench" ]; then
  timeout 120 "$BIN/tests/cuda/cuda_op_bench" --only gdn 2>&1 | grep -E 'gdn_chunked' | tee -a "$TABLE"
fi

# Jet-Nemotron-2B prefill of 4,096 tokens in 2,048-token chunks: the defaults, then each variant,
# alternating, ROUNDS times.
prefill() {  # tok/s, or the run's last error line
  local out
  out=$(env $1 timeout 120 "$JETLM" bench --device cuda --config jet-nemotron-2b --random-weights -p 4096 -n 1 \
    --chunk 2048 --json 2>&1)
  echo "$out" | field prefill_tok_s || echo "failed: $(echo "$out" | tail -1)"
}
echo "== Jet-2B prefill 4K A/B (tok/s)"
for ((r = 1; r <= ROUNDS; ++r)); do
  for v in "defaults" "${VARIANTS[@]}"; do
    left || break 2
    settings=$([ "$v" = defaults ] && echo "" || echo "$v")
    echo "prefill4k round $r [$v]: $(prefill "$settings")" | tee -a "$TABLE"
  done
done

echo "== paper 4K row and batch-1 decode (defaults)"
if left; then
  timeout "${GPU_AB_PAPER_S:-200}" "$JETLM" bench --paper --config jet-nemotron-2b,qwen3-1.7b \
    --contexts "${GPU_AB_CONTEXTS:-4096}" -n 4 --csv "${OUT:-/tmp}/gpu_ab_paper.csv" 2>&1 | tail -14 | tee -a "$TABLE"
fi
if left; then
  echo "batch-1 decode at 4K depth (tok/s): $(timeout 120 "$JETLM" bench --device cuda --config jet-nemotron-2b \
    --random-weights --depth 4096 -p 16 -n 256 --batch 1 --json 2> /dev/null | field decode_tok_s)" | tee -a "$TABLE"
fi

echo
echo "== summary (${SECONDS}s)"
cat "$TABLE"
rm -f "$TABLE"
