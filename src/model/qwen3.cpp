// Qwen3: every layer full attention, no q/k/v bias by default, explicit head_dim,
// per-head RMSNorm on q and k (q_norm, k_norm) before RoPE.
#include "core/error.h"
#include "io/json_fields.h"
#include "model/config.h"

namespace jetlm {

void parse_qwen3_hparams(const nlohmann::json& config, const std::string& where, ModelConfig& c) {
  if (json_fields::optional_bool(config, "use_sliding_window", where, false))
    throw_error(where, "field 'use_sliding_window' = true is not supported for qwen3 (expected false)");
  c.head_dim = int(json_fields::optional_int(config, "head_dim", where,
                                             c.hidden % c.n_heads == 0 ? c.hidden / c.n_heads : 0, 1, 65536));
  if (c.head_dim == 0) throw_error(where, "field 'head_dim' is missing and hidden_size is not a multiple of the heads");
  c.attn_bias = json_fields::optional_bool(config, "attention_bias", where, false);
  c.qk_norm = true;
  c.layer_types.assign(size_t(c.n_layers), LayerKind::Attn);
}

}  // namespace jetlm
