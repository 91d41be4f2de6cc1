// Views of weight matrices as the engine uses them: row-major [rows, cols], rows = output
// features (HF stores Linear weights [out, in], y = W x). The bytes are not owned: they live in
// a memory-mapped checkpoint or in a buffer owned by the Model.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace jetlm {

// 8-bit weights (dtype I8): int8 values [rows, cols] and, per row, one f16 scale for each block
// of kQ8Block consecutive columns (the last block may be shorter): w = q * scale.
inline constexpr int64_t kQ8Block = 32;
inline constexpr int64_t q8_blocks(int64_t cols) { return (cols + kQ8Block - 1) / kQ8Block; }

struct Matrix {
  const void* data = nullptr;
  DType dtype = DType::F32;  // F32, F16, BF16, or I8 (q8: with `scales`)
  int64_t rows = 0;
  int64_t cols = 0;
  const uint16_t* scales = nullptr;  // I8 only: f16 [rows, q8_blocks(cols)]
  bool empty() const { return data == nullptr; }
  int64_t bytes() const {
    return rows * cols * int64_t(dtype_size(dtype)) + (scales ? rows * q8_blocks(cols) * 2 : 0);
  }
};

}  // namespace jetlm
