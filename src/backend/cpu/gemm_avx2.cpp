// AVX2+FMA register-tiled GEMM over K-contiguous operands: Y[t, n] = X[t, :] . Wf[n, :] (+ bias).
// Both operands keep K innermost (activations [T, K], weights [N, K] as HF stores them), so the
// microkernel is a 4x4 block of dot products: 16 vector accumulators, 8 loads per 16 FMAs.
// Compiled with -mavx2 -mfma; called only when the CPU reports both (see ops_cpu.cpp).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cpu/gemm_kernels.h"
#include "core/tensor.h"

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

void dequantize_q8_avx2(const int8_t* Wq, const uint16_t* scales, int64_t rows, int64_t K, float* out) {
  const int64_t blocks = q8_blocks(K);
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* w = Wq + r * K;
    float* o = out + r * K;
    for (int64_t b = 0; b < blocks; ++b) {
      const float scale = _cvtsh_ss(scales[r * blocks + b]);
      const int64_t begin = b * kQ8Block, end = std::min(K, begin + kQ8Block);
      int64_t i = begin;
      const __m256 s = _mm256_set1_ps(scale);
      for (; i + 8 <= end; i += 8) {
        const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + i));
        _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), s));
      }
      for (; i < end; ++i) o[i] = float(w[i]) * scale;
    }
  }
}

void quantize_activation_q8_avx2(const float* x, int64_t K, int8_t* xq, float* scales) {
  for (int64_t b = 0; b < q8_blocks(K); ++b) {
    const int64_t begin = b * kQ8Block, end = std::min(K, begin + kQ8Block);
    float amax = 0.0f;
    for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float scale = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    scales[b] = scale;
    for (int64_t i = begin; i < end; ++i) xq[i] = int8_t(std::lrint(x[i] * inv));
  }
}

namespace {

// Sum of the 32 int8 products of one block as 8 int32 lanes: |x| * sign(w, x) keeps the
// unsigned-by-signed form vpmaddubsw needs (x is never -128).
inline __m256i block_dot(const int8_t* w, const int8_t* x) {
  const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  const __m256i products16 = _mm256_maddubs_epi16(_mm256_sign_epi8(xv, xv), _mm256_sign_epi8(wv, xv));
  return _mm256_madd_epi16(products16, _mm256_set1_epi16(1));
}

}  // namespace

void gemv_q8_avx2(const int8_t* Wq, const uint16_t* w_scales, int64_t N, int64_t K, const int8_t* xq,
                  const float* x_scales, const float* bias, float* y) {
  const int64_t blocks = q8_blocks(K), full_blocks = K / kQ8Block;
  for (int64_t r = 0; r < N; ++r) {
    const int8_t* w = Wq + r * K;
    const uint16_t* ws = w_scales + r * blocks;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= full_blocks; b += 2) {
      const __m256 s0 = _mm256_set1_ps(_cvtsh_ss(ws[b]) * x_scales[b]);
      const __m256 s1 = _mm256_set1_ps(_cvtsh_ss(ws[b + 1]) * x_scales[b + 1]);
      acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(w + b * kQ8Block, xq + b * kQ8Block)), s0, acc0);
      acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(w + (b + 1) * kQ8Block, xq + (b + 1) * kQ8Block)), s1, acc1);
    }
    for (; b < full_blocks; ++b) {
      const __m256 s0 = _mm256_set1_ps(_cvtsh_ss(ws[b]) * x_scales[b]);
      acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(w + b * kQ8Block, xq + b * kQ8Block)), s0, acc0);
    }
    float sum = horizontal_sum(_mm256_add_ps(acc0, acc1));
    if (b < blocks) {  // a last, shorter block
      int32_t partial = 0;
      for (int64_t i = b * kQ8Block; i < K; ++i) partial += int32_t(w[i]) * int32_t(xq[i]);
      sum += float(partial) * _cvtsh_ss(ws[b]) * x_scales[b];
    }
    y[r] = sum + (bias ? bias[r] : 0.0f);
  }
}

}  // namespace jetlm::cpu::kernels
