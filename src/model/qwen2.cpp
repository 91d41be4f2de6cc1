// Qwen2 / Qwen2.5: every layer full attention, q/k/v biases, head_dim = hidden / heads.
#include "core/error.h"
#include "io/json_fields.h"
#include "model/config.h"

namespace jetlm {

void parse_qwen2_hparams(const nlohmann::json& config, const std::string& where, ModelConfig& c) {
  if (json_fields::optional_bool(config, "use_sliding_window", where, false))
    throw_error(where, "field 'use_sliding_window' = true is not supported for qwen2 (expected false)");
  if (c.hidden % c.n_heads != 0)
    throw_error(where, "hidden_size must be a multiple of num_attention_heads");
  c.head_dim = c.hidden / c.n_heads;
  c.attn_bias = true;
  c.qk_norm = false;
  c.layer_types.assign(size_t(c.n_layers), LayerKind::Attn);
}

}  // namespace jetlm
