// ISA-specific GEMM microkernels, each in its own translation unit compiled for its ISA.
#pragma once

#include <cstdint>

namespace jetlm::cpu::kernels {

// Y[t, n] = dot(X[t, 0:K], W[n, 0:K]) + bias[n]; X [T, K], W [N, K] (float32, K-contiguous),
// Y rows `ldy` apart. bias may be null.
void gemm_dot_avx2(const float* X, int64_t T, const float* W, int64_t N, int64_t K, float* Y,
                   int64_t ldy, const float* bias);

// q8 decode: y[r] = sum over blocks of (wq . xq) * w_scale * x_scale for r in [0, N), with the
// activation quantized to int8 per kKBlock block (xq[K], x_scales[q8_blocks(K)]). Integer dot
// products (vpmaddubsw) do 32 weights per few instructions, so the loop is bound by memory.
void gemv_q8_avx2(const int8_t* Wq, const uint16_t* w_scales, int64_t N, int64_t K, const int8_t* xq,
                  const float* x_scales, const float* bias, float* y);
// out[rows, K] = q8 rows dequantized to float32 (for the prefill GEMM's weight tiles).
void dequantize_q8_avx2(const int8_t* Wq, const uint16_t* scales, int64_t rows, int64_t K, float* out);
// Quantizes x[K] for gemv_q8_avx2: xq[K] and float scales[q8_blocks(K)].
void quantize_activation_q8_avx2(const float* x, int64_t K, int8_t* xq, float* scales);

}  // namespace jetlm::cpu::kernels
