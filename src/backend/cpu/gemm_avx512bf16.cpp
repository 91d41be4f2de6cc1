// AVX512-BF16 kernels: the prefill GEMM of bf16 weights with bf16-rounded activations and float32
// accumulation (vdpbf16ps: 32 multiply-adds per instruction, twice the float32 FMA rate), and its
// peak probe. Compiled with -mavx512f -mavx512bf16; called only when the CPU reports AVX512_BF16
// and the ISA limit allows it (see ops_cpu.cpp).
// GCC 12's AVX-512 reduction intrinsics read an "undefined" register on purpose.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstring>

#include "backend/cpu/gemm_avx512_tile.h"
#include "backend/cpu/gemm_kernels.h"

namespace jetlm::cpu::kernels {

namespace {

// One step = one k-pair: 16 bf16 weight pairs of a panel row times one broadcast bf16 activation
// pair; vdpbf16ps adds both products of each lane to its float32 accumulator.
struct Bf16PairDot {
  using Word = uint32_t;
  using Weights = __m512bh;
  using Act = __m512bh;
  __attribute__((always_inline)) static Weights load(const uint32_t* row) {
    const __m512i bits = _mm512_loadu_si512(row);
    __m512bh w;
    std::memcpy(&w, &bits, sizeof bits);
    return w;
  }
  __attribute__((always_inline)) static Act broadcast(uint32_t x) {
    const __m512i xi = _mm512_set1_epi32(int(x));
    __m512bh b;
    std::memcpy(&b, &xi, sizeof xi);
    return b;
  }
  __attribute__((always_inline)) static __m512 madd(__m512 acc, Act x, Weights w) {
    return _mm512_dpbf16_ps(acc, x, w);
  }
};

}  // namespace

void gemm_bf16_pairs_avx512(const uint32_t* X2, int64_t T, int64_t K2, const uint32_t* P, int64_t N, float* Y,
                            int64_t ldy, const float* bias) {
  gemm_panels<Bf16PairDot>(X2, T, K2, P, N, Y, ldy, bias);
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
