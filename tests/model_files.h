// Writes small model directories for loader tests: config.json + model.safetensors with
// deterministic values for every tensor the config expects.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"

namespace jetlm::test {

inline nlohmann::json tiny_jet_config() {
  return nlohmann::json::parse(R"({
    "model_type": "jet_nemotron", "hidden_size": 32, "intermediate_size": 48,
    "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 50, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true,
    "layer_types": ["jet", "attn", "swa"],
    "efficient_attention_config": {
      "jet": {"num_heads": 2, "head_dim": 8, "expand_v": 1.5, "conv_size": 4,
              "dconv_generator_reduction": 4, "norm_eps": "1e-5"},
      "swa": {"window_size": 5}}})");
}

// A small JetBlock model for q8 tests: hidden 256 (a multiple of the 32-weight q8 blocks), two
// JetBlock layers around one attention layer, head dims the GPU kernels take.
inline ModelConfig small_q8_jet_config(int vocab) {
  nlohmann::json j = nlohmann::json::parse(R"({
    "model_type": "jet_nemotron", "hidden_size": 256, "intermediate_size": 384, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 0, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "tie_word_embeddings": true, "layer_types": ["jet", "attn", "jet"],
    "efficient_attention_config": {"jet": {"num_heads": 2, "head_dim": 32, "expand_v": 2, "conv_size": 4,
      "dconv_generator_reduction": 8, "norm_eps": "1e-5"}}})");
  j["vocab_size"] = vocab;
  return parse_model_config(j, "test config");
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// A fresh, empty directory under the system temp dir.
inline std::string fresh_dir(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("jetlm_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// Writes config.json and model.safetensors (F32 values 0.01 * (i % 7)) into `dir`.
inline void write_model_dir(const std::string& dir, const nlohmann::json& config) {
  write_text(dir + "/config.json", config.dump(2));
  const ModelConfig parsed = parse_model_config(config, "test config");
  std::vector<std::vector<float>> storage;
  std::vector<TensorToWrite> tensors;
  for (const TensorSpec& spec : expected_tensors(parsed)) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    storage.emplace_back(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) storage.back()[size_t(i)] = 0.01f * float(i % 7);
    tensors.push_back({spec.name, DType::F32, spec.shape, storage.back().data()});
  }
  write_safetensors(dir + "/model.safetensors", tensors, {}, /*overwrite=*/true);
}

// A raw safetensors file from a header text and a data region of `data_bytes` zero bytes.
inline void write_raw_safetensors(const std::string& path, const std::string& header, size_t data_bytes) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((header.size() >> (8 * i)) & 0xff);
  bytes += header;
  bytes.append(data_bytes, '\0');
  write_text(path, bytes);
}

}  // namespace jetlm::test
