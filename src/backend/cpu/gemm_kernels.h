// ISA-specific GEMM microkernels, each in its own translation unit compiled for its ISA.
#pragma once

#include <cstdint>

namespace jetlm::cpu::kernels {

// Y[t, n] = dot(X[t, 0:K], W[n, 0:K]) + bias[n]; X [T, K], W [N, K] (float32, K-contiguous),
// Y rows `ldy` apart. bias may be null.
void gemm_dot_avx2(const float* X, int64_t T, const float* W, int64_t N, int64_t K, float* Y,
                   int64_t ldy, const float* bias);

}  // namespace jetlm::cpu::kernels
