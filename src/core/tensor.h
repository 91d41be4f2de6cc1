// Views of weight matrices as the engine uses them: row-major [rows, cols], rows = output
// features (HF stores Linear weights [out, in], y = W x). The bytes are not owned: they live in
// a memory-mapped checkpoint or in a buffer owned by the Model.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace jetlm {

struct Matrix {
  const void* data = nullptr;
  DType dtype = DType::F32;  // F32, F16 or BF16
  int64_t rows = 0;
  int64_t cols = 0;
  bool empty() const { return data == nullptr; }
  int64_t bytes() const { return rows * cols * int64_t(dtype_size(dtype)); }
};

}  // namespace jetlm
