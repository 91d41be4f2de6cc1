// 8-bit block quantization of weights (see Matrix in core/tensor.h): per block of kQ8Block
// values, scale = max|w| / 127 rounded to f16, q = round(w / scale) clamped to [-127, 127].
// The rounding error of each weight is at most scale / 2.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/host_memory.h"
#include "core/tensor.h"

namespace jetlm {

// q[n], scales[q8_blocks(n)] from x[n].
void quantize_row_q8(const float* x, int64_t n, int8_t* q, uint16_t* scales);
// out[n] = q * scale.
void dequantize_row_q8(const int8_t* q, const uint16_t* scales, int64_t n, float* out);
// A q8 copy of W (any dtype; W itself when already q8); its bytes are appended to `storage`, which
// must outlive it, on 2 MiB pages with huge_pages (see allocate_host_bytes).
Matrix quantize_matrix_q8(const Matrix& W, WeightStorage& storage, bool huge_pages = false);
// Row r of W (any dtype, q8 included) as float32: out[W.cols].
void matrix_row_f32(const Matrix& W, int64_t r, float* out);

}  // namespace jetlm
