// AVX-VNNI (VEX-encoded, 256-bit) q8 decode GEMV: vpdpbusd forms a block's 8 int32 lanes in one
// instruction where AVX2 needs vpmaddubsw + vpmaddwd. The lanes hold the same exact integer sums,
// and the scaling and accumulation are gemv_q8_rows', so the result is bit-equal to gemv_q8_avx2.
// Compiled with -mavx2 -mfma -mf16c -mavxvnni; called only when the CPU reports AVX-VNNI (Alder
// Lake and later Intel cores, Zen 5) and the ISA limit allows AVX2 (see ops_cpu.cpp).
#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/gemm_kernels.h"
#include "backend/cpu/gemv_q8_rows.h"

namespace jetlm::cpu::kernels {

namespace {

struct AvxVnniDot : YmmPairs<AvxVnniDot> {
  __attribute__((always_inline)) static __m256i block(const int8_t* w, const int8_t* x) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
    // unsigned |x| times sign(w, x): the operand form vpdpbusd takes (x is never -128).
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(xv, xv), _mm256_sign_epi8(wv, xv));
  }
};

}  // namespace

void gemv_q8_avxvnni(const int8_t* Wq, const uint16_t* w_scales, int64_t N, int64_t K, const int8_t* xq,
                     const float* x_scales, const float* bias, float* y) {
  gemv_q8_rows<AvxVnniDot>(Wq, w_scales, N, K, xq, x_scales, bias, y);
}

}  // namespace jetlm::cpu::kernels
