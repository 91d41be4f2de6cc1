#pragma once

#include <string>

namespace jetlm {

// The config.json text of a built-in preset (jet-nemotron-2b, jet-nemotron-4b, qwen3-1.7b,
// qwen2.5-1.5b), or nullptr when `name` is not one.
const char* find_preset_config(const std::string& name);
std::string preset_names();  // comma-separated, for messages

}  // namespace jetlm
