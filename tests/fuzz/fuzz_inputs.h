// The two parsers that read untrusted files, as fuzz entry points: each must either accept the
// input or throw jetlm::Error; anything else (another exception, a crash, a hang) is a bug.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"

namespace jetlm::fuzz {

inline void safetensors_entry(const uint8_t* data, size_t size) {
  try {
    parse_safetensors(data, size, "fuzz");
  } catch (const Error&) {
  }
}

inline void config_entry(const uint8_t* data, size_t size) {
  const auto config = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return;  // load_model_config reports this itself
  try {
    const ModelConfig c = parse_model_config(config, "fuzz");
    if (int64_t(c.n_layers) * c.hidden < (1 << 24)) expected_tensors(c);
  } catch (const Error&) {
  }
}

}  // namespace jetlm::fuzz
