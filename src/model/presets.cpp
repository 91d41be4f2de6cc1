// Built-in architecture presets: the released configs (architecture fields only), so that
// `jetlm bench --config jet-nemotron-2b` needs no download and no file outside the project.
#include "model/presets.h"

#include <cstring>

namespace jetlm {

namespace {

struct Preset {
  const char* name;
  const char* config_json;
};

const Preset kPresets[] = {
    {"jet-nemotron-2b", R"json({"model_type":"jet_nemotron","hidden_size":1536,"intermediate_size":8960,"num_hidden_layers":28,"num_attention_heads":12,"num_key_value_heads":2,"max_position_embeddings":131072,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"rope_scaling":null,"tie_word_embeddings":true,"vocab_size":151936,"bos_token_id":151643,"eos_token_id":151643,"hidden_act":"silu","torch_dtype":"bfloat16","layer_types":["jet","jet","jet","jet","jet","jet","jet","jet","jet","jet","jet","jet","jet","jet","attn","jet","jet","jet","jet","attn","swa","swa","jet","jet","jet","jet","jet","jet"],"efficient_attention_config":{"jet":{"conv_size":4,"dconv_generator_reduction":8,"expand_v":2.6666666667,"head_dim":96,"mode":"chunk","norm_eps":"1e-5","num_heads":12},"swa":{"window_size":1152}}})json"},
    {"jet-nemotron-4b", R"json({"model_type":"jet_nemotron","hidden_size":2048,"intermediate_size":11008,"num_hidden_layers":36,"num_attention_heads":16,"num_key_value_heads":2,"max_position_embeddings":32768,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"rope_scaling":null,"tie_word_embeddings":true,"vocab_size":151936,"bos_token_id":151643,"eos_token_id":151643,"hidden_act":"silu","torch_dtype":"bfloat16","layer_types":["jet","jet","jet","jet","jet","swa","jet","jet","jet","jet","jet","jet","jet","jet","jet","jet","swa","attn","jet","swa","attn","swa","swa","jet","jet","swa","jet","swa","jet","jet","jet","jet","attn","jet","jet","jet"],"efficient_attention_config":{"jet":{"conv_size":4,"dconv_generator_reduction":8,"expand_v":2,"head_dim":128,"mode":"chunk","norm_eps":"1e-5","num_heads":16},"swa":{"window_size":2048}}})json"},
    {"qwen3-1.7b", R"json({"model_type":"qwen3","hidden_size":2048,"intermediate_size":6144,"num_hidden_layers":28,"num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"attention_bias":false,"max_position_embeddings":40960,"rms_norm_eps":1e-06,"rope_theta":1000000,"rope_scaling":null,"tie_word_embeddings":true,"vocab_size":151936,"bos_token_id":151643,"eos_token_id":151643,"hidden_act":"silu","torch_dtype":"bfloat16"})json"},
    {"qwen2.5-1.5b", R"json({"model_type":"qwen2","hidden_size":1536,"intermediate_size":8960,"num_hidden_layers":28,"num_attention_heads":12,"num_key_value_heads":2,"max_position_embeddings":131072,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"rope_scaling":null,"tie_word_embeddings":true,"vocab_size":151936,"bos_token_id":151643,"eos_token_id":151643,"hidden_act":"silu","torch_dtype":"bfloat16"})json"},
};

}  // namespace

const char* find_preset_config(const std::string& name) {
  for (const Preset& p : kPresets)
    if (name == p.name) return p.config_json;
  return nullptr;
}

std::string preset_names() {
  std::string names;
  for (const Preset& p : kPresets) names += std::string(names.empty() ? "" : ", ") + p.name;
  return names;
}

}  // namespace jetlm
