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

#include "backend/cpu/gemm_kernels.h"

namespace jetlm::cpu::kernels {

namespace {

inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

// A TT x (16 * NP) block of Y over k in [k0, k1) from NP consecutive panels: accumulators start
// from Y (or bias / zero at k0 == 0). n_valid[j] = valid columns of panel j (masked at the edge).
template <int TT, int NP>
inline void panel_tile(const float* X, int64_t ldx, const float* const* P, int64_t k0, int64_t k1, float* Y,
                       int64_t ldy, const int64_t* n_valid, const float* bias) {
  __m512 acc[TT][NP];
  __mmask16 mask[NP];
#pragma GCC unroll 2
  for (int j = 0; j < NP; ++j) mask[j] = first_lanes(n_valid[j]);
#pragma GCC unroll 12
  for (int i = 0; i < TT; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NP; ++j) {
      if (k0 == 0)
        acc[i][j] = bias != nullptr ? _mm512_maskz_loadu_ps(mask[j], bias + 16 * j) : _mm512_setzero_ps();
      else
        acc[i][j] = _mm512_maskz_loadu_ps(mask[j], Y + i * ldy + 16 * j);
    }
  for (int64_t k = k0; k < k1; ++k) {
    __m512 w[NP];
#pragma GCC unroll 2
    for (int j = 0; j < NP; ++j) w[j] = _mm512_loadu_ps(P[j] + k * kPanel);
#pragma GCC unroll 12
    for (int i = 0; i < TT; ++i) {
      const __m512 x = _mm512_set1_ps(X[i * ldx + k]);
#pragma GCC unroll 2
      for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_fmadd_ps(x, w[j], acc[i][j]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < TT; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NP; ++j) _mm512_mask_storeu_ps(Y + i * ldy + 16 * j, mask[j], acc[i][j]);
}

template <int NP>
void token_blocks(const float* X, int64_t T, int64_t K, const float* const* P, int64_t k0, int64_t k1, float* Y,
                  int64_t ldy, const int64_t* n_valid, const float* bias) {
  // 12 x 2 panels = 24 accumulators + 2 weights + 1 broadcast of the 32 zmm registers.
  constexpr int kTT = NP == 2 ? 12 : 14;
  int64_t t = 0;
  for (; t + kTT <= T; t += kTT) panel_tile<kTT, NP>(X + t * K, K, P, k0, k1, Y + t * ldy, ldy, n_valid, bias);
  for (; t + 4 <= T; t += 4) panel_tile<4, NP>(X + t * K, K, P, k0, k1, Y + t * ldy, ldy, n_valid, bias);
  for (; t < T; ++t) panel_tile<1, NP>(X + t * K, K, P, k0, k1, Y + t * ldy, ldy, n_valid, bias);
}

inline float horizontal_sum(__m512 v) { return _mm512_reduce_add_ps(v); }

}  // namespace

void gemm_packed_avx512(const float* X, int64_t T, int64_t K, const float* P, int64_t N, float* Y, int64_t ldy,
                        const float* bias) {
  constexpr int64_t kBlockK = 256;  // two panel slices of 16 KB each stay in L1 across token blocks
  const int64_t panels = (N + kPanel - 1) / kPanel;
  for (int64_t k0 = 0; k0 < K; k0 += kBlockK) {
    const int64_t k1 = std::min(K, k0 + kBlockK);
    int64_t p = 0;
    for (; p + 2 <= panels; p += 2) {
      const float* pp[2] = {P + p * kPanel * K, P + (p + 1) * kPanel * K};
      const int64_t n0 = p * kPanel;
      const int64_t nv[2] = {std::min(kPanel, N - n0), std::min(kPanel, N - n0 - kPanel)};
      token_blocks<2>(X, T, K, pp, k0, k1, Y + n0, ldy, nv, bias ? bias + n0 : nullptr);
    }
    if (p < panels) {
      const float* pp[1] = {P + p * kPanel * K};
      const int64_t n0 = p * kPanel;
      const int64_t nv[1] = {std::min(kPanel, N - n0)};
      token_blocks<1>(X, T, K, pp, k0, k1, Y + n0, ldy, nv, bias ? bias + n0 : nullptr);
    }
  }
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
