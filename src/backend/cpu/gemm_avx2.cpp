// AVX2+FMA register-tiled GEMM over K-contiguous operands: Y[t, n] = X[t, :] . Wf[n, :] (+ bias).
// Both operands keep K innermost (activations [T, K], weights [N, K] as HF stores them), so the
// microkernel is a 4x4 block of dot products: 16 vector accumulators, 8 loads per 16 FMAs.
// Compiled with -mavx2 -mfma; called only when the CPU reports both (see ops_cpu.cpp).
#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/gemm_kernels.h"

namespace jetlm::cpu::kernels {

namespace {

inline float horizontal_sum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_hadd_ps(lo, lo);
  lo = _mm_hadd_ps(lo, lo);
  return _mm_cvtss_f32(lo);
}

// A TT x NN block of outputs; TT, NN <= 4 fixed at compile time so the accumulators stay in
// registers.
template <int TT, int NN>
inline void micro_tile(const float* X, int64_t ldx, const float* W, int64_t ldw, int64_t K,
                       float* Y, int64_t ldy, const float* bias) {
  __m256 acc[TT][NN];
  for (int i = 0; i < TT; ++i)
    for (int j = 0; j < NN; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 w[NN];
    for (int j = 0; j < NN; ++j) w[j] = _mm256_loadu_ps(W + j * ldw + k);
    for (int i = 0; i < TT; ++i) {
      const __m256 x = _mm256_loadu_ps(X + i * ldx + k);
      for (int j = 0; j < NN; ++j) acc[i][j] = _mm256_fmadd_ps(x, w[j], acc[i][j]);
    }
  }
  for (int i = 0; i < TT; ++i)
    for (int j = 0; j < NN; ++j) {
      float s = horizontal_sum(acc[i][j]);
      for (int64_t kk = k; kk < K; ++kk) s += X[i * ldx + kk] * W[j * ldw + kk];
      Y[i * ldy + j] = s + (bias ? bias[j] : 0.0f);
    }
}

template <int TT>
inline void row_of_tiles(const float* X, int64_t ldx, const float* W, int64_t N, int64_t K,
                         float* Y, int64_t ldy, const float* bias) {
  int64_t n = 0;
  for (; n + 4 <= N; n += 4)
    micro_tile<TT, 4>(X, ldx, W + n * K, K, K, Y + n, ldy, bias ? bias + n : nullptr);
  switch (N - n) {
    case 3: micro_tile<TT, 3>(X, ldx, W + n * K, K, K, Y + n, ldy, bias ? bias + n : nullptr); break;
    case 2: micro_tile<TT, 2>(X, ldx, W + n * K, K, K, Y + n, ldy, bias ? bias + n : nullptr); break;
    case 1: micro_tile<TT, 1>(X, ldx, W + n * K, K, K, Y + n, ldy, bias ? bias + n : nullptr); break;
    default: break;
  }
}

}  // namespace

void gemm_dot_avx2(const float* X, int64_t T, const float* W, int64_t N, int64_t K, float* Y,
                   int64_t ldy, const float* bias) {
  int64_t t = 0;
  for (; t + 4 <= T; t += 4) row_of_tiles<4>(X + t * K, K, W, N, K, Y + t * ldy, ldy, bias);
  switch (T - t) {
    case 3: row_of_tiles<3>(X + t * K, K, W, N, K, Y + t * ldy, ldy, bias); break;
    case 2: row_of_tiles<2>(X + t * K, K, W, N, K, Y + t * ldy, ldy, bias); break;
    case 1: row_of_tiles<1>(X + t * K, K, W, N, K, Y + t * ldy, ldy, bias); break;
    default: break;
  }
}

}  // namespace jetlm::cpu::kernels
