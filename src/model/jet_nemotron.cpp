// Jet-Nemotron: Qwen2.5 attention layers kept where `layer_types` says "attn" (or "swa", sliding
// window), JetBlock ("jet") everywhere else. See SPEC.md section 1.
#include <cmath>

#include "core/error.h"
#include "io/json_fields.h"
#include "model/config.h"

namespace jetlm {

using json = nlohmann::json;
using namespace json_fields;

void parse_jet_nemotron_hparams(const json& config, const std::string& where, ModelConfig& c) {
  if (c.hidden % c.n_heads != 0)
    throw_error(where, "hidden_size must be a multiple of num_attention_heads");
  c.head_dim = c.hidden / c.n_heads;
  c.attn_bias = true;
  c.qk_norm = false;
  if (!config.contains("layer_types") || !config["layer_types"].is_array())
    throw_error(where, "field 'layer_types' is missing or not an array (expected one of "
                       "\"attn\", \"swa\", \"jet\" per layer)");
  const json& types = config["layer_types"];
  for (size_t i = 0; i < types.size(); ++i) {
    const json& t = types[i];
    if (t == "attn") c.layer_types.push_back(LayerKind::Attn);
    else if (t == "swa") c.layer_types.push_back(LayerKind::Swa);
    else if (t == "jet") c.layer_types.push_back(LayerKind::Jet);
    else
      throw_error(where, "layer_types[" + std::to_string(i) + "]: unknown layer type " + brief(t) +
                             ", expected \"attn\", \"swa\" or \"jet\"");
  }
  const bool needs_swa = c.has_kind(LayerKind::Swa);
  const bool needs_jet = c.has_kind(LayerKind::Jet);
  if (!needs_swa && !needs_jet) return;
  const std::string eac_where = where + ": efficient_attention_config";
  const json& eac = require_object(config, "efficient_attention_config", where);
  if (needs_swa) {
    const json& swa = require_object(eac, "swa", eac_where);
    c.swa_window = int(require_int(swa, "window_size", eac_where + ".swa"));
  }
  if (needs_jet) {
    const std::string jw = eac_where + ".jet";
    const json& jet = require_object(eac, "jet", eac_where);
    c.jet.num_heads = int(require_int(jet, "num_heads", jw, 1, 4096));
    c.jet.head_k_dim = int(require_int(jet, "head_dim", jw, 1, 65536));
    const double expand_v = require_number(jet, "expand_v", jw);
    const double dv = c.jet.head_k_dim * expand_v;
    if (!(dv >= 1 && dv <= 65536))
      throw_error(jw, "head_dim x expand_v = " + std::to_string(dv) + ", expected 1..65536");
    c.jet.head_v_dim = int(std::lround(dv));
    // The official block accepts expand_v when head_dim * expand_v is an integer within 1e-5.
    if (c.jet.head_v_dim <= 0 || std::fabs(dv - c.jet.head_v_dim) > 1e-5 * std::fabs(dv))
      throw_error(jw, "expand_v " + brief(jet["expand_v"]) + " times head_dim " +
                          std::to_string(c.jet.head_k_dim) + " is not a positive integer");
    c.jet.conv_size = int(require_int(jet, "conv_size", jw, 1, 64));
    const int reduction = int(require_int(jet, "dconv_generator_reduction", jw, 1, 1 << 20));
    c.jet.generator_hidden = c.jet.value_dim() / reduction;
    if (c.jet.generator_hidden < 1)
      throw_error(jw, "dconv_generator_reduction " + std::to_string(reduction) +
                          " leaves no generator width for value_dim " + std::to_string(c.jet.value_dim()));
    c.jet.norm_eps = float(optional_number(jet, "norm_eps", jw, 1e-5));
    if (jet.contains("mode") && jet["mode"] != "chunk" && jet["mode"] != "fused_recurrent")
      throw_error(jw, "field 'mode': expected \"chunk\" or \"fused_recurrent\", got " + brief(jet["mode"]));
  }
}

}  // namespace jetlm
