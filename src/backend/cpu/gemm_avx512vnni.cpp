// AVX512-VNNI q8 decode GEMV: two blocks (64 weights) per zmm step with one vpdpbusd, where AVX2
// needs two of each of vpsignb, vpmaddubsw and vpmaddwd per 32 weights. Lanes 0-7 of a step are
// block b's, lanes 8-15 block b + 1's, and one zmm accumulator holds gemv_q8_rows' acc0 (low half)
// and acc1 (high half): every lane sees the same exact integer sums and the same float32
// multiply-adds in the same order, so the result is bit-equal to gemv_q8_avx2.
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni (+ AVX2, FMA, F16C); called only when
// the CPU reports all of them and the ISA limit allows AVX-512 (see ops_cpu.cpp).
// GCC 12's AVX-512 intrinsics read an "undefined" register on purpose.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "backend/cpu/gemm_kernels.h"
#include "backend/cpu/gemv_q8_rows.h"

namespace jetlm::cpu::kernels {

namespace {

struct Avx512VnniDot {
  // A lone block (an odd one at the end): the 256-bit EVEX form.
  __attribute__((always_inline)) static __m256i block(const int8_t* w, const int8_t* x) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(xv), _mm256_sign_epi8(wv, xv));
  }

  __attribute__((always_inline)) static int64_t pairs(const int8_t* w, const uint16_t* ws, const int8_t* xq,
                                                      const float* x_scales, int64_t full_blocks, __m256& acc0,
                                                      __m256& acc1) {
    __m512 acc = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    int64_t b = 0;
    // Sixteen blocks' scale products at a time (each the float product w_scale * x_scale that
    // block_scale forms), spread to a step's two halves by a lane permute.
    while (b + 2 <= full_blocks) {
      const int64_t n = std::min<int64_t>(16, full_blocks - b);
      const __mmask16 lanes = __mmask16((1u << n) - 1u);
      const __m512 scales = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes, ws + b)),
                                          _mm512_maskz_loadu_ps(lanes, x_scales + b));
      // Lanes 0-7 take scale 2j, lanes 8-15 scale 2j + 1.
      __m512i pick = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
      const __m512i two = _mm512_set1_epi32(2);
      const int64_t end = b + n / 2 * 2;
      for (; b < end; b += 2, pick = _mm512_add_epi32(pick, two)) {
        prefetch_pair(w, ws, b);
        const __m512i wv = _mm512_loadu_si512(w + b * kQ8Block);
        const __m512i xv = _mm512_loadu_si512(xq + b * kQ8Block);
        // sign(w, x) without vpsignb (not in AVX-512): negate w where x < 0; where x == 0 the
        // product is 0 either way, since |x| is.
        const __m512i w_signed = _mm512_mask_sub_epi8(wv, _mm512_movepi8_mask(xv), zero, wv);
        const __m512i dot = _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(xv), w_signed);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(pick, scales), acc);
      }
    }
    acc0 = _mm512_castps512_ps256(acc);
    acc1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
    return b;
  }
};

}  // namespace

void gemv_q8_avx512vnni(const int8_t* Wq, const uint16_t* w_scales, int64_t N, int64_t K, const int8_t* xq,
                        const float* x_scales, const float* bias, float* y) {
  gemv_q8_rows<Avx512VnniDot>(Wq, w_scales, N, K, xq, x_scales, bias, y);
}

}  // namespace jetlm::cpu::kernels
