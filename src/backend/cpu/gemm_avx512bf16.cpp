// AVX512-BF16 kernels: the prefill GEMM of bf16 weights with bf16-rounded activations and float32
// accumulation (vdpbf16ps: 32 multiply-adds per instruction, twice the float32 FMA rate), and its
// peak probe. Compiled with -mavx512f -mavx512bf16; called only when the CPU reports AVX512_BF16
// and the ISA limit allows it (see ops_cpu.cpp).
// GCC 12's AVX-512 reduction intrinsics read an "undefined" register on purpose.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>

#include "backend/cpu/gemm_kernels.h"

namespace jetlm::cpu::kernels {

namespace {

inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

// A TT x (16 * NP) block of Y over k-pairs [q0, q1). X2[t][q] holds the bf16 pair (x[2q], x[2q+1])
// as one 32-bit word; P[j][q][c] the pair (w[c][2q], w[c][2q+1]) of column c of panel j.
template <int TT, int NP>
inline void pair_tile(const uint32_t* X2, int64_t ldx, const uint32_t* const* P, int64_t q0, int64_t q1, float* Y,
                      int64_t ldy, const int64_t* n_valid, const float* bias) {
  __m512 acc[TT][NP];
  __mmask16 mask[NP];
#pragma GCC unroll 2
  for (int j = 0; j < NP; ++j) mask[j] = first_lanes(n_valid[j]);
#pragma GCC unroll 12
  for (int i = 0; i < TT; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NP; ++j) {
      if (q0 == 0)
        acc[i][j] = bias != nullptr ? _mm512_maskz_loadu_ps(mask[j], bias + 16 * j) : _mm512_setzero_ps();
      else
        acc[i][j] = _mm512_maskz_loadu_ps(mask[j], Y + i * ldy + 16 * j);
    }
  for (int64_t q = q0; q < q1; ++q) {
    __m512bh w[NP];
#pragma GCC unroll 2
    for (int j = 0; j < NP; ++j) {
      const __m512i bits = _mm512_loadu_si512(P[j] + q * kPanel);
      std::memcpy(&w[j], &bits, sizeof bits);
    }
#pragma GCC unroll 12
    for (int i = 0; i < TT; ++i) {
      const __m512i xi = _mm512_set1_epi32(int(X2[i * ldx + q]));
      __m512bh x;
      std::memcpy(&x, &xi, sizeof xi);
#pragma GCC unroll 2
      for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], x, w[j]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < TT; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NP; ++j) _mm512_mask_storeu_ps(Y + i * ldy + 16 * j, mask[j], acc[i][j]);
}

template <int NP>
void token_blocks(const uint32_t* X2, int64_t T, int64_t K2, const uint32_t* const* P, int64_t q0, int64_t q1,
                  float* Y, int64_t ldy, const int64_t* n_valid, const float* bias) {
  constexpr int kTT = NP == 2 ? 12 : 14;
  int64_t t = 0;
  for (; t + kTT <= T; t += kTT) pair_tile<kTT, NP>(X2 + t * K2, K2, P, q0, q1, Y + t * ldy, ldy, n_valid, bias);
  for (; t + 4 <= T; t += 4) pair_tile<4, NP>(X2 + t * K2, K2, P, q0, q1, Y + t * ldy, ldy, n_valid, bias);
  for (; t < T; ++t) pair_tile<1, NP>(X2 + t * K2, K2, P, q0, q1, Y + t * ldy, ldy, n_valid, bias);
}

}  // namespace

void gemm_bf16_pairs_avx512(const uint32_t* X2, int64_t T, int64_t K2, const uint32_t* P, int64_t N, float* Y,
                            int64_t ldy, const float* bias) {
  constexpr int64_t kBlockPairs = 256;  // two panel slices of 16 KB each stay in L1
  const int64_t panels = (N + kPanel - 1) / kPanel;
  for (int64_t q0 = 0; q0 < K2; q0 += kBlockPairs) {
    const int64_t q1 = std::min(K2, q0 + kBlockPairs);
    int64_t p = 0;
    for (; p + 2 <= panels; p += 2) {
      const uint32_t* pp[2] = {P + p * kPanel * K2, P + (p + 1) * kPanel * K2};
      const int64_t n0 = p * kPanel;
      const int64_t nv[2] = {std::min(kPanel, N - n0), std::min(kPanel, N - n0 - kPanel)};
      token_blocks<2>(X2, T, K2, pp, q0, q1, Y + n0, ldy, nv, bias ? bias + n0 : nullptr);
    }
    if (p < panels) {
      const uint32_t* pp[1] = {P + p * kPanel * K2};
      const int64_t n0 = p * kPanel;
      const int64_t nv[1] = {std::min(kPanel, N - n0)};
      token_blocks<1>(X2, T, K2, pp, q0, q1, Y + n0, ldy, nv, bias ? bias + n0 : nullptr);
    }
  }
}

double bf16_dot_peak_gflops_avx512() {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
  const __m512i ones = _mm512_set1_epi32(0x3F803F80);  // bf16 pair (1.0, 1.0)
  __m512bh a;
  std::memcpy(&a, &ones, sizeof ones);
  const __m512i tiny = _mm512_set1_epi32(0x33D633D6);  // bf16 pair (~1e-7, ~1e-7)
  __m512bh b;
  std::memcpy(&b, &tiny, sizeof tiny);
  constexpr int64_t kIterations = 10'000'000;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t it = 0; it < kIterations; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float sink = 0;
  for (int i = 0; i < 16; ++i) sink += _mm512_reduce_add_ps(acc[i]);
  volatile float keep = sink;
  (void)keep;
  return double(kIterations) * 16 * 64 / seconds / 1e9;  // 32 multiply-adds = 64 FLOPs each
}

}  // namespace jetlm::cpu::kernels
