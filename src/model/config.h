// ModelConfig: the architecture of one model, parsed from a Hugging Face config.json.
// `layer_types` drives the forward pass and the cache; a layer's kind never comes from which
// tensors happen to exist.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace jetlm {

enum class LayerKind : uint8_t { Attn, Swa, Jet };
const char* layer_kind_name(LayerKind kind);

enum class Family : uint8_t { JetNemotron, Qwen2, Qwen3 };

// JetBlock sizes (efficient_attention_config.jet).
struct JetConfig {
  int num_heads = 0;         // H
  int head_k_dim = 0;        // dk
  int head_v_dim = 0;        // dv = dk * expand_v
  int conv_size = 0;         // K, taps of the dynamic convolution
  int generator_hidden = 0;  // value_dim / dconv_generator_reduction
  float norm_eps = 1e-5f;
  int key_dim() const { return num_heads * head_k_dim; }
  int value_dim() const { return num_heads * head_v_dim; }
};

struct ModelConfig {
  Family family = Family::Qwen2;
  std::string model_type;      // as written in config.json
  int hidden = 0;              // D
  int intermediate = 0;        // MLP width
  int n_layers = 0;
  int n_heads = 0;             // query heads of attn/swa layers
  int n_kv_heads = 0;
  int head_dim = 0;            // of attn/swa layers
  int vocab = 0;
  int max_position = 0;
  float rms_eps = 1e-6f;
  double rope_theta = 1e6;
  bool tie_embeddings = true;
  bool attn_bias = true;       // q/k/v biases (Qwen2, Jet-Nemotron)
  bool qk_norm = false;        // per-head RMSNorm on q and k before RoPE (Qwen3)
  int swa_window = 0;          // W of swa layers (0 when the model has none)
  JetConfig jet;               // meaningful when some layer is Jet
  std::vector<LayerKind> layer_types;
  int bos_token_id = -1;
  int eos_token_id = -1;

  bool has_kind(LayerKind kind) const;
};

// Parses a config.json object; `where` names the file in error messages.
ModelConfig parse_model_config(const nlohmann::json& config, const std::string& where);
// Reads DIR/config.json, or a config.json path, or a built-in preset name (see presets.h).
ModelConfig load_model_config(const std::string& dir_file_or_preset);

// Family-specific parts (one file per family).
void parse_jet_nemotron_hparams(const nlohmann::json& config, const std::string& where,
                                ModelConfig& out);
void parse_qwen2_hparams(const nlohmann::json& config, const std::string& where, ModelConfig& out);
void parse_qwen3_hparams(const nlohmann::json& config, const std::string& where, ModelConfig& out);

}  // namespace jetlm
