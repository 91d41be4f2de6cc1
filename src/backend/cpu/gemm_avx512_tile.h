// The AVX-512 packed-panel GEMM loop nest, written once for the float32 (gemm_avx512.cpp) and the
// bf16-pair (gemm_avx512bf16.cpp) kernels. A policy type says what one K step is and how it is
// multiplied in:
//   using Word;     the 32-bit unit a step reads per lane: a float (1 k) or a bf16 pair (2 k)
//   using Weights;  a panel row of 16 Words in a zmm (__m512 or __m512bh)
//   using Act;      one activation Word broadcast to all lanes
//   static Weights load(const Word* row);
//   static Act broadcast(Word x);
//   static __m512 madd(__m512 acc, Act x, Weights w);   // acc += x * w, lane by lane
// Mark the three always_inline: a call inside the step loop would force the accumulators to memory.
// Only for translation units compiled with -mavx512f. Everything here is in an anonymous namespace
// and each policy lives in its .cpp's anonymous namespace, so every instantiation is local to the
// file whose -m flags it was compiled with: the linker never merges copies built for different ISAs.
#pragma once

#ifndef __AVX512F__
#error "gemm_avx512_tile.h emits AVX-512 code: include it only in files compiled with -mavx512f"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "backend/cpu/gemm_kernels.h"

namespace jetlm::cpu::kernels {
namespace {

inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

// A TT x (16 * NP) block of Y over steps [s0, s1) from NP consecutive panels: accumulators start
// from Y (or bias / zero at s0 == 0). n_valid[j] = valid columns of panel j (masked at the edge).
// The unroll pragmas matter: a rolled i or j loop puts the accumulators on the stack (3x slower);
// 16 covers the 14-row one-panel tile as well as the 12-row two-panel one.
template <class Policy, int TT, int NP>
inline void panel_tile(const typename Policy::Word* X, int64_t ldx, const typename Policy::Word* const* P,
                       int64_t s0, int64_t s1, float* Y, int64_t ldy, const int64_t* n_valid, const float* bias) {
  __m512 acc[TT][NP];
  __mmask16 mask[NP];
#pragma GCC unroll 2
  for (int j = 0; j < NP; ++j) mask[j] = first_lanes(n_valid[j]);
#pragma GCC unroll 16
  for (int i = 0; i < TT; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NP; ++j) {
      if (s0 == 0)
        acc[i][j] = bias != nullptr ? _mm512_maskz_loadu_ps(mask[j], bias + 16 * j) : _mm512_setzero_ps();
      else
        acc[i][j] = _mm512_maskz_loadu_ps(mask[j], Y + i * ldy + 16 * j);
    }
  for (int64_t s = s0; s < s1; ++s) {
    typename Policy::Weights w[NP];
#pragma GCC unroll 2
    for (int j = 0; j < NP; ++j) w[j] = Policy::load(P[j] + s * kPanel);
#pragma GCC unroll 16
    for (int i = 0; i < TT; ++i) {
      const typename Policy::Act x = Policy::broadcast(X[i * ldx + s]);
#pragma GCC unroll 2
      for (int j = 0; j < NP; ++j) acc[i][j] = Policy::madd(acc[i][j], x, w[j]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < TT; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NP; ++j) _mm512_mask_storeu_ps(Y + i * ldy + 16 * j, mask[j], acc[i][j]);
}

template <class Policy, int NP>
void token_blocks(const typename Policy::Word* X, int64_t T, int64_t ldx, const typename Policy::Word* const* P,
                  int64_t s0, int64_t s1, float* Y, int64_t ldy, const int64_t* n_valid, const float* bias) {
  // 12 x 2 panels = 24 accumulators + 2 weights + 1 broadcast of the 32 zmm registers.
  constexpr int kTT = NP == 2 ? 12 : 14;
  int64_t t = 0;
  for (; t + kTT <= T; t += kTT)
    panel_tile<Policy, kTT, NP>(X + t * ldx, ldx, P, s0, s1, Y + t * ldy, ldy, n_valid, bias);
  for (; t + 4 <= T; t += 4) panel_tile<Policy, 4, NP>(X + t * ldx, ldx, P, s0, s1, Y + t * ldy, ldy, n_valid, bias);
  for (; t < T; ++t) panel_tile<Policy, 1, NP>(X + t * ldx, ldx, P, s0, s1, Y + t * ldy, ldy, n_valid, bias);
}

// Y[t, n] (row stride ldy) = sum over steps s of X[t][s] * P[n / 16][s][n % 16] (+ bias[n]) for
// t < T, n < N, where X has S steps per row and P holds ceil(N / 16) panels of S x 16 Words.
template <class Policy>
void gemm_panels(const typename Policy::Word* X, int64_t T, int64_t S, const typename Policy::Word* P, int64_t N,
                 float* Y, int64_t ldy, const float* bias) {
  static_assert(sizeof(typename Policy::Word) == 4, "a panel row of 16 Words must fill one zmm");
  constexpr int64_t kBlockSteps = 256;  // two panel slices of 16 KB each stay in L1 across token blocks
  const int64_t panels = (N + kPanel - 1) / kPanel;
  for (int64_t s0 = 0; s0 < S; s0 += kBlockSteps) {
    const int64_t s1 = std::min(S, s0 + kBlockSteps);
    int64_t p = 0;
    for (; p + 2 <= panels; p += 2) {
      const typename Policy::Word* pp[2] = {P + p * kPanel * S, P + (p + 1) * kPanel * S};
      const int64_t n0 = p * kPanel;
      const int64_t nv[2] = {std::min(kPanel, N - n0), std::min(kPanel, N - n0 - kPanel)};
      token_blocks<Policy, 2>(X, T, S, pp, s0, s1, Y + n0, ldy, nv, bias ? bias + n0 : nullptr);
    }
    if (p < panels) {
      const typename Policy::Word* pp[1] = {P + p * kPanel * S};
      const int64_t n0 = p * kPanel;
      const int64_t nv[1] = {std::min(kPanel, N - n0)};
      token_blocks<Policy, 1>(X, T, S, pp, s0, s1, Y + n0, ldy, nv, bias ? bias + n0 : nullptr);
    }
  }
}

}  // namespace
}  // namespace jetlm::cpu::kernels
