#include "model/config.h"

#include <filesystem>

#include "core/error.h"
#include "io/json_fields.h"
#include "io/mapped_file.h"
#include "model/presets.h"

namespace jetlm {

using json = nlohmann::json;
using namespace json_fields;

const char* layer_kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::Attn: return "attn";
    case LayerKind::Swa: return "swa";
    case LayerKind::Jet: return "jet";
  }
  return "?";
}

bool ModelConfig::has_kind(LayerKind kind) const {
  for (LayerKind k : layer_types)
    if (k == kind) return true;
  return false;
}

ModelConfig parse_model_config(const json& config, const std::string& where) {
  if (!config.is_object()) throw_error(where, "expected a JSON object");
  ModelConfig c;
  c.model_type = require_string(config, "model_type", where);
  c.hidden = int(require_int(config, "hidden_size", where));
  c.intermediate = int(require_int(config, "intermediate_size", where));
  c.n_layers = int(require_int(config, "num_hidden_layers", where, 1, 4096));
  c.n_heads = int(require_int(config, "num_attention_heads", where, 1, 4096));
  c.n_kv_heads = int(optional_int(config, "num_key_value_heads", where, c.n_heads, 1, 4096));
  c.vocab = int(require_int(config, "vocab_size", where));
  c.max_position = int(optional_int(config, "max_position_embeddings", where, 32768, 1));
  c.rms_eps = float(optional_number(config, "rms_norm_eps", where, 1e-6));
  c.rope_theta = optional_number(config, "rope_theta", where, 10000.0);
  c.tie_embeddings = optional_bool(config, "tie_word_embeddings", where, false);
  c.bos_token_id = int(optional_int(config, "bos_token_id", where, -1, 0));
  // eos_token_id may be a list (several stop tokens); the first is the primary one.
  if (config.contains("eos_token_id") && config["eos_token_id"].is_array()) {
    const json& list = config["eos_token_id"];
    const json first = {{"eos_token_id", list.empty() ? json() : list[0]}};
    c.eos_token_id = int(optional_int(first, "eos_token_id", where, -1, 0));
  } else {
    c.eos_token_id = int(optional_int(config, "eos_token_id", where, -1, 0));
  }
  if (config.contains("rope_scaling") && !config["rope_scaling"].is_null())
    throw_error(where, "field 'rope_scaling' = " + brief(config["rope_scaling"]) +
                           " is not supported yet (expected null)");
  if (config.contains("hidden_act") && config["hidden_act"] != "silu")
    throw_error(where, "field 'hidden_act': expected \"silu\", got " + brief(config["hidden_act"]));
  if (c.n_heads % c.n_kv_heads != 0)
    throw_error(where, "num_attention_heads (" + std::to_string(c.n_heads) +
                           ") must be a multiple of num_key_value_heads (" +
                           std::to_string(c.n_kv_heads) + ")");

  if (c.model_type == "jet_nemotron") {
    c.family = Family::JetNemotron;
    parse_jet_nemotron_hparams(config, where, c);
  } else if (c.model_type == "qwen2") {
    c.family = Family::Qwen2;
    parse_qwen2_hparams(config, where, c);
  } else if (c.model_type == "qwen3") {
    c.family = Family::Qwen3;
    parse_qwen3_hparams(config, where, c);
  } else {
    throw_error(where, "field 'model_type': unknown model type \"" + c.model_type +
                           "\", expected one of jet_nemotron, qwen2, qwen3");
  }
  if (c.head_dim % 2 != 0)
    throw_error(where, "attention head_dim " + std::to_string(c.head_dim) + " must be even (RoPE)");
  if (int(c.layer_types.size()) != c.n_layers)
    throw_error(where, "layer_types has " + std::to_string(c.layer_types.size()) +
                           " entries, expected num_hidden_layers = " + std::to_string(c.n_layers));
  return c;
}

ModelConfig load_model_config(const std::string& source) {
  namespace fs = std::filesystem;
  std::string path = source;
  if (fs::is_directory(source)) {
    path = (fs::path(source) / "config.json").string();
  } else if (!fs::exists(source)) {
    if (const char* preset = find_preset_config(source)) {
      return parse_model_config(json::parse(preset), "preset " + source);
    }
    throw_error(source, "no such file, directory or built-in preset (presets: " +
                            preset_names() + ")");
  }
  const json config = json::parse(read_text_file(path), nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) throw_error(path, "not valid JSON");
  return parse_model_config(config, path);
}

}  // namespace jetlm
