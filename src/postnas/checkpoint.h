// Model directories in and out of the trainer, through the engine's own code: config.json parsed
// by the engine's config loader (model/config.h), weights read with its safetensors reader
// (io/safetensors.h: Checkpoint) and written with its atomic safetensors writer. A directory the
// trainer writes is a directory `jetlm generate` runs (when every block is attn/swa/jet).
//
// config.json may name the search-only blocks "gdn" and "gla" in layer_types; such a directory
// loads here (their sizes come from efficient_attention_config.jet) but not in the engine.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/config.h"
#include "postnas/model.h"

namespace jetlm::postnas {

// A model's architecture: the engine's config, the block of each layer, and the config.json text
// (kept as given, so saving writes back every field the user had).
struct ModelSpec {
  ModelConfig config;
  std::vector<BlockKind> blocks;
  nlohmann::ordered_json json;
};

// Parses a config.json object (layer_types may hold gdn/gla) after applying `overrides`
// ("KEY=JSON_VALUE", a bare word is a string; "a.b=1" sets a nested field). `where` names the source.
ModelSpec parse_model_spec(nlohmann::ordered_json json, const std::vector<std::string>& overrides,
                           const std::string& where);
// A model dir, a config.json path or an engine preset name (model/presets.h).
ModelSpec load_model_spec(const std::string& dir_file_or_preset, const std::vector<std::string>& overrides = {});

// Copies every parameter of `model` from the safetensors weights in `dir` (model.safetensors or
// shards). Names and shapes must match exactly; F32/BF16/F16 are converted to the parameter's
// dtype. Missing or unexpected tensors throw jetlm::Error naming the file and tensor (a redundant
// lm_head.weight next to tied embeddings and rotary inv_freq buffers are ignored, as the engine does).
void load_weights(HybridModelImpl& model, const std::string& dir);

// Builds the model of DIR/config.json and loads its weights.
HybridModel load_model(const std::string& dir);

// Writes DIR/model.safetensors (parameters in `dtype`: F32, BF16 or F16) and DIR/config.json
// (spec.json with torch_dtype set). When every block is one the engine runs, the tensor list is
// checked against the engine's expected_tensors() first. Existing files are replaced only with
// `overwrite`. The directory is created if missing.
void save_model(HybridModelImpl& model, const ModelSpec& spec, const std::string& dir, DType dtype = DType::F32,
                bool overwrite = false);

// Writes bytes to `path` through a temporary file and a rename.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace jetlm::postnas
