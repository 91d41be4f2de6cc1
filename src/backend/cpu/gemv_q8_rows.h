// The q8 decode GEMV's row loop, written once for the AVX2 (gemm_avx2.cpp), AVX-VNNI
// (gemm_avxvnni.cpp) and AVX512-VNNI (gemm_avx512vnni.cpp) kernels so that all of them scale and add in the
// same order and give the same bits. A policy type says how the blocks' integer dot products are
// formed:
//   static __m256i block(const int8_t* w, const int8_t* x);
//       the 32 products w[i] * x[i] of one block as 8 int32 lanes, lane j = the sum of products
//       4j .. 4j + 3 (exact: |product| <= 127 * 128);
//   static int64_t pairs(const int8_t* w, const uint16_t* ws, const int8_t* xq, const float* x_scales,
//                        int64_t full_blocks, __m256& acc0, __m256& acc1);
//       blocks 0, 2, 4, ... added into acc0 and 1, 3, 5, ... into acc1, each as
//       acc = fma(float(block lanes), w_scale * x_scale, acc), for as many whole pairs as it takes;
//       returns the first block not done. Deriving from YmmPairs<Policy> gives the two-register
//       form built on block().
// Mark them always_inline. Only for translation units compiled with AVX2+FMA+F16C; the
// policies live in their .cpp's anonymous namespace, so each instantiation stays in the file (and
// target) it was compiled for and the linker never merges copies built for different ISAs.
#pragma once

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "gemv_q8_rows.h emits AVX2 code: include it only in files compiled with -mavx2 -mfma -mf16c"
#endif

#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/gemm_kernels.h"
#include "core/tensor.h"

namespace jetlm::cpu::kernels {
namespace {

__attribute__((always_inline)) inline float horizontal_sum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_hadd_ps(lo, lo);
  lo = _mm_hadd_ps(lo, lo);
  return _mm_cvtss_f32(lo);
}

// Software prefetch for a pair of blocks at b (64 weights, one line) kStreamPrefetchBytes ahead,
// and, once per 32 blocks, the line of scales the same number of blocks ahead.
__attribute__((always_inline)) inline void prefetch_pair(const int8_t* w, const uint16_t* ws, int64_t b) {
  _mm_prefetch(reinterpret_cast<const char*>(w + b * kQ8Block) + kStreamPrefetchBytes, _MM_HINT_T1);
  if (b % 32 == 0)
    _mm_prefetch(reinterpret_cast<const char*>(ws + b) + kStreamPrefetchBytes / kQ8Block * 2, _MM_HINT_T1);
}

// w_scale (f16) * x_scale of block b, the factor of its integer dot product.
__attribute__((always_inline)) inline float block_scale(const uint16_t* ws, const float* x_scales, int64_t b) {
  return _cvtsh_ss(ws[b]) * x_scales[b];
}

// Eight blocks' scale products at a time (vcvtph2ps + vmulps: each lane the float product that
// block_scale forms), each spread over a register by a lane permute. One block_scale per block
// (the f16 scale went through vpinsrw into a register it merged with, so every block's scale
// waited for the previous one's: perf put ~35% of the decode samples on that vpinsrw on the
// 2-core EPYC VM) left the q8 GEMV well under the memory bandwidth there.
template <class Dot>
__attribute__((always_inline)) inline int64_t pairs_ymm(const int8_t* w, const uint16_t* ws, const int8_t* xq,
                                                        const float* x_scales, int64_t full_blocks, __m256& acc0,
                                                        __m256& acc1) {
  const __m256i one = _mm256_set1_epi32(1);
  int64_t b = 0;
  while (b + 2 <= full_blocks) {
    const int64_t n = full_blocks - b < 8 ? full_blocks - b : 8;
    __m256 scales;
    if (n == 8) {
      scales = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ws + b))),
                             _mm256_loadu_ps(x_scales + b));
    } else {  // the row's last group: zero-padded copies (lanes >= n are never picked)
      alignas(16) uint16_t w_tail[8] = {};
      alignas(32) float x_tail[8] = {};
      for (int64_t i = 0; i < n; ++i) w_tail[i] = ws[b + i], x_tail[i] = x_scales[b + i];
      scales = _mm256_mul_ps(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(w_tail))),
                             _mm256_load_ps(x_tail));
    }
    __m256i pick = _mm256_setzero_si256();
    for (const int64_t end = b + n / 2 * 2; b < end; b += 2) {
      prefetch_pair(w, ws, b);
      const __m256 s0 = _mm256_permutevar8x32_ps(scales, pick);
      pick = _mm256_add_epi32(pick, one);
      const __m256 s1 = _mm256_permutevar8x32_ps(scales, pick);
      pick = _mm256_add_epi32(pick, one);
      acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(Dot::block(w + b * kQ8Block, xq + b * kQ8Block)), s0, acc0);
      acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(Dot::block(w + (b + 1) * kQ8Block, xq + (b + 1) * kQ8Block)), s1, acc1);
    }
  }
  return b;
}

// The `pairs` of a policy whose steps are single blocks (CRTP: Dot derives from YmmPairs<Dot>).
template <class Dot>
struct YmmPairs {
  __attribute__((always_inline)) static int64_t pairs(const int8_t* w, const uint16_t* ws, const int8_t* xq,
                                                      const float* x_scales, int64_t full_blocks, __m256& acc0,
                                                      __m256& acc1) {
    return pairs_ymm<Dot>(w, ws, xq, x_scales, full_blocks, acc0, acc1);
  }
};

// y[r] = sum over blocks of (wq . xq) * w_scale * x_scale (+ bias[r]) for r < N (the contract of
// gemv_q8_avx2 in gemm_kernels.h).
template <class Dot>
__attribute__((always_inline)) inline void gemv_q8_rows(const int8_t* Wq, const uint16_t* w_scales, int64_t N,
                                                        int64_t K, const int8_t* xq, const float* x_scales,
                                                        const float* bias, float* y) {
  const int64_t blocks = q8_blocks(K), full_blocks = K / kQ8Block;
  for (int64_t r = 0; r < N; ++r) {
    const int8_t* w = Wq + r * K;
    const uint16_t* ws = w_scales + r * blocks;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = Dot::pairs(w, ws, xq, x_scales, full_blocks, acc0, acc1);
    for (; b < full_blocks; ++b) {
      const __m256 s0 = _mm256_set1_ps(block_scale(ws, x_scales, b));
      acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(Dot::block(w + b * kQ8Block, xq + b * kQ8Block)), s0, acc0);
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

}  // namespace
}  // namespace jetlm::cpu::kernels
