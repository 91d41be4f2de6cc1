#include "backend/quantize.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace jetlm {

void quantize_row_q8(const float* x, int64_t n, int8_t* q, uint16_t* scales) {
  for (int64_t b = 0; b < q8_blocks(n); ++b) {
    const int64_t begin = b * kQ8Block, end = std::min(n, begin + kQ8Block);
    float amax = 0.0f;
    for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
    // Quantize with the scale as stored (f16), so dequantization reproduces what was chosen.
    const uint16_t stored = f32_to_f16(amax / 127.0f);
    const float scale = f16_to_f32(stored);
    scales[b] = stored;
    const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (int64_t i = begin; i < end; ++i)
      q[i] = int8_t(std::clamp(std::lrint(x[i] * inv), -127L, 127L));
  }
}

void dequantize_row_q8(const int8_t* q, const uint16_t* scales, int64_t n, float* out) {
  for (int64_t b = 0; b < q8_blocks(n); ++b) {
    const int64_t begin = b * kQ8Block, end = std::min(n, begin + kQ8Block);
    const float scale = f16_to_f32(scales[b]);
    for (int64_t i = begin; i < end; ++i) out[i] = float(q[i]) * scale;
  }
}

void matrix_row_f32(const Matrix& W, int64_t r, float* out) {
  JETLM_ASSERT(r >= 0 && r < W.rows);
  const int64_t n = W.cols;
  switch (W.dtype) {
    case DType::F32: std::copy_n(static_cast<const float*>(W.data) + r * n, n, out); break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(static_cast<const uint16_t*>(W.data)[r * n + i]);
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(static_cast<const uint16_t*>(W.data)[r * n + i]);
      break;
    case DType::I8:
      JETLM_ASSERT(W.scales != nullptr, "q8 matrix without scales");
      dequantize_row_q8(static_cast<const int8_t*>(W.data) + r * n, W.scales + r * q8_blocks(n), n, out);
      break;
    default: JETLM_ASSERT(false, "matrix dtype not supported");
  }
}

Matrix quantize_matrix_q8(const Matrix& W, WeightStorage& storage, bool huge_pages) {
  if (W.dtype == DType::I8) return W;
  const int64_t blocks = q8_blocks(W.cols);
  storage.push_back(allocate_host_bytes(size_t(W.rows * W.cols), huge_pages));
  int8_t* q = reinterpret_cast<int8_t*>(storage.back().get());
  storage.push_back(allocate_host_bytes(size_t(W.rows * blocks * 2), huge_pages));
  uint16_t* scales = reinterpret_cast<uint16_t*>(storage.back().get());
#pragma omp parallel
  {
    std::vector<float> row(size_t(W.cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < W.rows; ++r) {
      matrix_row_f32(W, r, row.data());
      quantize_row_q8(row.data(), W.cols, q + r * W.cols, scales + r * blocks);
    }
  }
  return Matrix{q, DType::I8, W.rows, W.cols, scales};
}

}  // namespace jetlm
