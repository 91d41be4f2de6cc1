#!/usr/bin/env bash
# Builds the CUDA binaries that bench/gpu_ab.sh runs and packs them, with the shared libraries a
# bare GPU machine may lack, into one tarball: for a lent machine where building would spend its
# time. libtorch is left out (JETLM_TORCH=OFF: PostNAS is not needed there, and the machine's
# torch may differ from this one's); the CUDA runtime and cuBLAS are expected on the machine.
#
#   bench/pack_cuda_bins.sh [OUT.tar.xz] [BUILD_DIR]     (defaults: cuda-bins.tar.xz, build-device)
#
# On the GPU machine: mkdir bins && tar xf cuda-bins.tar.xz -C bins && bench/gpu_ab.sh bins
set -euo pipefail
OUT=${1:-cuda-bins.tar.xz}
BUILD=${2:-build-device}
cd "$(dirname "$0")/.."
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DJETLM_CUDA=ON -DJETLM_TORCH=OFF > /dev/null
cmake --build "$BUILD" -j"$(nproc)" --target jetlm cuda_op_tests cuda_engine_tests cuda_op_bench
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/tests/cuda" "$STAGE/lib"
cp "$BUILD/jetlm" "$STAGE/"
for t in cuda_op_tests cuda_engine_tests cuda_op_bench; do cp "$BUILD/tests/cuda/$t" "$STAGE/tests/cuda/"; done
strip "$STAGE/jetlm" "$STAGE"/tests/cuda/*
# Every library the binaries load, except the C/C++ runtime and the CUDA ones the machine has.
for f in "$STAGE/jetlm" "$STAGE"/tests/cuda/*; do
  ldd "$f" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|libdl.so*|librt.so*|libpthread.so*|libutil.so*|ld-linux*) ;;
    libcuda.so*|libcudart.so*|libcublas.so*|libcublasLt.so*) ;;
    *) cp -L "$lib" "$STAGE/lib/" ;;
  esac
done
tar cf - -C "$STAGE" . | xz -T"$(nproc)" -6 > "$OUT"
echo "pack_cuda_bins: $OUT ($(du -h "$OUT" | cut -f1)): $(cd "$STAGE" && find . -type f | sort | tr '\n' ' ')"
