// AVX-512F kernels: the packed-panel prefill GEMM (float32), the FMA peak probe and the decode
// attention pieces. Compiled with -mavx512f -mfma; called only when the CPU reports AVX-512F and
// the ISA limit allows it (see ops_cpu.cpp). Same panel format and same arithmetic (float32 FMA)
// as the AVX2 kernels; a zmm register holds exactly one 16-column panel row.
// GCC 12's AVX-512 reduction intrinsics read an "undefined" register on purpose.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "backend/cpu/gemm_avx512_tile.h"
#include "backend/cpu/gemm_kernels.h"

namespace jetlm::cpu::kernels {

namespace {

// One step = one k: 16 float weights of a panel row times one broadcast float activation.
struct F32Fma {
  using Word = float;
  using Weights = __m512;
  using Act = __m512;
  __attribute__((always_inline)) static Weights load(const float* row) { return _mm512_loadu_ps(row); }
  __attribute__((always_inline)) static Act broadcast(float x) { return _mm512_set1_ps(x); }
  __attribute__((always_inline)) static __m512 madd(__m512 acc, Act x, Weights w) {
    return _mm512_fmadd_ps(x, w, acc);
  }
};

inline float horizontal_sum(__m512 v) { return _mm512_reduce_add_ps(v); }

}  // namespace

void gemm_packed_avx512(const float* X, int64_t T, int64_t K, const float* P, int64_t N, float* Y, int64_t ldy,
                        const float* bias) {
  gemm_panels<F32Fma>(X, T, K, P, N, Y, ldy, bias);
}

double fma_peak_gflops_avx512() {
  // 16 independent accumulator chains hide the FMA latency on both 512-bit FMA pipes (where the
  // CPU has two; a CPU with one reports half, which is then its real peak).
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  constexpr int64_t kIterations = 10'000'000;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t it = 0; it < kIterations; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float sink = 0;
  for (int i = 0; i < 16; ++i) sink += horizontal_sum(acc[i]);
  volatile float keep = sink;
  (void)keep;
  return double(kIterations) * 16 * 32 / seconds / 1e9;
}

void qk_scores_avx512(const float* q, const float* k0, int64_t stride, int64_t n, int64_t hd, float scale,
                      float* out) {
  int64_t s = 0;
  for (; s + 4 <= n; s += 4) {  // four keys: four independent FMA chains
    const float* k = k0 + s * stride;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < hd; i += 16) {
      const __mmask16 m = first_lanes(hd - i);
      const __m512 qv = _mm512_maskz_loadu_ps(m, q + i);
      a0 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k + i), a0);
      a1 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k + stride + i), a1);
      a2 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k + 2 * stride + i), a2);
      a3 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, k + 3 * stride + i), a3);
    }
    out[s] = horizontal_sum(a0) * scale;
    out[s + 1] = horizontal_sum(a1) * scale;
    out[s + 2] = horizontal_sum(a2) * scale;
    out[s + 3] = horizontal_sum(a3) * scale;
  }
  for (; s < n; ++s) {
    const float* k = k0 + s * stride;
    __m512 a = _mm512_setzero_ps();
    for (int64_t i = 0; i < hd; i += 16) {
      const __mmask16 m = first_lanes(hd - i);
      a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), _mm512_maskz_loadu_ps(m, k + i), a);
    }
    out[s] = horizontal_sum(a) * scale;
  }
}

void pv_accumulate_avx512(const float* p, const float* v0, int64_t stride, int64_t n, int64_t hd, float* out) {
  // Up to 128 output columns (8 zmm) stay in registers over all n values.
  for (int64_t c0 = 0; c0 < hd; c0 += 128) {
    const int64_t cols = std::min<int64_t>(128, hd - c0);
    const int64_t vecs = (cols + 15) / 16;
    __m512 acc[8];
    __mmask16 mask[8];
    for (int64_t j = 0; j < 8; ++j) {
      acc[j] = _mm512_setzero_ps();
      mask[j] = j < vecs ? first_lanes(cols - 16 * j) : __mmask16(0);
    }
    for (int64_t s = 0; s < n; ++s) {
      const __m512 ps = _mm512_set1_ps(p[s]);
      const float* v = v0 + s * stride + c0;
#pragma GCC unroll 8
      for (int64_t j = 0; j < 8; ++j)
        if (j < vecs) acc[j] = _mm512_fmadd_ps(ps, _mm512_maskz_loadu_ps(mask[j], v + 16 * j), acc[j]);
    }
    for (int64_t j = 0; j < vecs; ++j) _mm512_mask_storeu_ps(out + c0 + 16 * j, mask[j], acc[j]);
  }
}

}  // namespace jetlm::cpu::kernels
