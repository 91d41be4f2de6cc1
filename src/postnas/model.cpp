#include "postnas/model.h"

#include <cmath>

#include "core/error.h"
#include "postnas/ops.h"

namespace jetlm::postnas {

namespace nn = torch::nn;

namespace {

nn::Linear linear(int64_t in, int64_t out, bool bias) {
  return nn::Linear(nn::LinearOptions(in, out).bias(bias));
}

// [B, T, H*d] -> [B, T, H, d]
torch::Tensor heads(const torch::Tensor& x, int64_t H, int64_t d) {
  return x.view({x.size(0), x.size(1), H, d});
}

// JetBlock / GDN gates: beta = sigmoid(b), g = -exp(A_log) * softplus(a + dt_bias), in float32.
void decay_gates(const torch::Tensor& b_raw, const torch::Tensor& a_raw, const torch::Tensor& A_log,
                 const torch::Tensor& dt_bias, torch::Tensor& beta, torch::Tensor& g) {
  const torch::Tensor a = at_least_f32(a_raw);
  beta = torch::sigmoid(at_least_f32(b_raw));
  g = -torch::exp(A_log.to(a.scalar_type())) * torch::softplus(a + dt_bias.to(a.scalar_type()));
}

void check_jet_sizes(const ModelConfig& c, const char* block) {
  if (c.jet.num_heads <= 0 || c.jet.head_k_dim <= 0 || c.jet.head_v_dim <= 0 || c.jet.conv_size <= 0)
    throw_error("config", std::string("a ") + block +
                              " layer takes its sizes from efficient_attention_config.jet, which is not set");
}

}  // namespace

const char* block_kind_name(BlockKind kind) {
  switch (kind) {
    case BlockKind::Attn: return "attn";
    case BlockKind::Swa: return "swa";
    case BlockKind::Jet: return "jet";
    case BlockKind::Gdn: return "gdn";
    case BlockKind::Gla: return "gla";
  }
  return "?";
}

BlockKind parse_block_kind(const std::string& name, const std::string& where) {
  for (BlockKind k : {BlockKind::Attn, BlockKind::Swa, BlockKind::Jet, BlockKind::Gdn, BlockKind::Gla})
    if (name == block_kind_name(k)) return k;
  throw_error(where, "unknown block type '" + name + "', expected attn, swa, jet, gdn or gla");
}

BlockKind block_kind_of(LayerKind kind) {
  switch (kind) {
    case LayerKind::Attn: return BlockKind::Attn;
    case LayerKind::Swa: return BlockKind::Swa;
    case LayerKind::Jet: return BlockKind::Jet;
  }
  return BlockKind::Attn;
}

bool engine_runs(BlockKind kind) {
  return kind == BlockKind::Attn || kind == BlockKind::Swa || kind == BlockKind::Jet;
}

RMSNormImpl::RMSNormImpl(int64_t n, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({n}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) { return rms_norm(x, weight, eps); }

MLPImpl::MLPImpl(int64_t hidden, int64_t intermediate) {
  gate_proj = register_module("gate_proj", linear(hidden, intermediate, false));
  up_proj = register_module("up_proj", linear(hidden, intermediate, false));
  down_proj = register_module("down_proj", linear(intermediate, hidden, false));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

AttentionImpl::AttentionImpl(const ModelConfig& c, int64_t window_)
    : n_heads(c.n_heads), n_kv_heads(c.n_kv_heads), head_dim(c.head_dim), window(window_),
      rope_theta(c.rope_theta), rms_eps(c.rms_eps) {
  const int64_t D = c.hidden, q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim;
  q_proj = register_module("q_proj", linear(D, q_dim, c.attn_bias));
  k_proj = register_module("k_proj", linear(D, kv_dim, c.attn_bias));
  v_proj = register_module("v_proj", linear(D, kv_dim, c.attn_bias));
  o_proj = register_module("o_proj", linear(q_dim, D, false));
  if (c.qk_norm) {
    q_norm = register_module("q_norm", RMSNorm(head_dim, c.rms_eps));
    k_norm = register_module("k_norm", RMSNorm(head_dim, c.rms_eps));
  }
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  torch::Tensor q = heads(q_proj(x), n_heads, head_dim);
  torch::Tensor k = heads(k_proj(x), n_kv_heads, head_dim);
  const torch::Tensor v = heads(v_proj(x), n_kv_heads, head_dim);
  if (q_norm) {
    q = q_norm(q);
    k = k_norm(k);
  }
  q = rope(q, rope_theta);
  k = rope(k, rope_theta);
  torch::Tensor o;  // [B, T, Hq, hd]
  if (capture_probs) {
    torch::Tensor probs;
    o = causal_attention_explicit(q, k, v, window, &probs);
    if (probs.requires_grad()) probs.retain_grad();
    capture_probs->push_back(probs);
  } else {
    o = causal_attention(q, k, v, window);
  }
  return o_proj(o.reshape({x.size(0), x.size(1), n_heads * head_dim}));
}

KernelGeneratorImpl::KernelGeneratorImpl(int64_t hidden, int64_t generator_hidden, int64_t out) {
  w1 = register_module("w1", linear(hidden, generator_hidden, false));
  w2 = register_module("w2", linear(generator_hidden, out, true));
}

torch::Tensor KernelGeneratorImpl::forward(const torch::Tensor& x) { return w2(torch::silu(w1(x))); }

DynamicConvImpl::DynamicConvImpl(int64_t hidden, int64_t channels_, int64_t generator_hidden, int64_t taps_)
    : channels(channels_), taps(taps_) {
  kernel_generator = register_module("kernel_generator", KernelGenerator(hidden, generator_hidden, channels * taps));
}

torch::Tensor DynamicConvImpl::forward(const torch::Tensor& u, const torch::Tensor& x) {
  // w2's output index is c*K + i (channel-major, tap-minor).
  const torch::Tensor kernel = kernel_generator(x).view({x.size(0), x.size(1), channels, taps});
  return dynamic_conv(u, kernel);
}

JetBlockImpl::JetBlockImpl(const ModelConfig& c) : H(c.jet.num_heads), dk(c.jet.head_k_dim), dv(c.jet.head_v_dim) {
  check_jet_sizes(c, "jet");
  const int64_t D = c.hidden, kd = H * dk, vd = H * dv;
  q_proj = register_module("q_proj", linear(D, kd, false));
  k_proj = register_module("k_proj", linear(D, kd, false));
  v_proj = register_module("v_proj", linear(D, vd, false));
  b_proj = register_module("b_proj", linear(D, H, false));
  a_proj = register_module("a_proj", linear(D, H, false));
  g_proj = register_module("g_proj", linear(D, vd, false));
  o_proj = register_module("o_proj", linear(vd, D, false));
  A_log = register_parameter("A_log", torch::zeros({H}));
  dt_bias = register_parameter("dt_bias", torch::zeros({H}));
  o_norm = register_module("o_norm", RMSNorm(dv, c.jet.norm_eps));
  dynamic_conv1d = register_module("dynamic_conv1d", DynamicConv(D, vd, c.jet.generator_hidden, c.jet.conv_size));
}

std::vector<torch::Tensor> JetBlockImpl::recurrence_inputs(const torch::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1);
  const torch::Tensor q = l2_norm(heads(torch::silu(q_proj(x)), H, dk), 1.0 / std::sqrt(double(dk)));
  const torch::Tensor k = l2_norm(heads(torch::silu(k_proj(x)), H, dk));
  const torch::Tensor v = dynamic_conv1d(v_proj(x), x).view({B, T, H, dv});
  torch::Tensor beta, g;
  decay_gates(b_proj(x), a_proj(x), A_log, dt_bias, beta, g);
  return {q, k, v, g, beta};
}

torch::Tensor JetBlockImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1);
  const auto in = recurrence_inputs(x);
  const RecurrentResult r = recurrent ? gated_delta_rule_recurrent(in[0], in[1], in[2], in[3], in[4])
                                      : gated_delta_rule_chunked(in[0], in[1], in[2], in[3], in[4]);
  const torch::Tensor gate = heads(g_proj(x), H, dv);
  const torch::Tensor o = o_norm(r.o) * torch::silu(at_least_f32(gate));  // [B, T, H, dv]
  return o_proj(o.reshape({B, T, H * dv}).to(x.scalar_type()));
}

ShortConvImpl::ShortConvImpl(int64_t channels, int64_t taps) {
  weight = register_parameter("weight", torch::zeros({channels, 1, taps}));
}

torch::Tensor ShortConvImpl::forward(const torch::Tensor& x) { return short_conv(x, weight); }

GatedDeltaNetImpl::GatedDeltaNetImpl(const ModelConfig& c)
    : H(c.jet.num_heads), dk(c.jet.head_k_dim), dv(c.jet.head_v_dim) {
  check_jet_sizes(c, "gdn");
  const int64_t D = c.hidden, kd = H * dk, vd = H * dv, K = c.jet.conv_size;
  q_proj = register_module("q_proj", linear(D, kd, false));
  k_proj = register_module("k_proj", linear(D, kd, false));
  v_proj = register_module("v_proj", linear(D, vd, false));
  a_proj = register_module("a_proj", linear(D, H, false));
  b_proj = register_module("b_proj", linear(D, H, false));
  A_log = register_parameter("A_log", torch::zeros({H}));
  dt_bias = register_parameter("dt_bias", torch::zeros({H}));
  q_conv1d = register_module("q_conv1d", ShortConv(kd, K));
  k_conv1d = register_module("k_conv1d", ShortConv(kd, K));
  v_conv1d = register_module("v_conv1d", ShortConv(vd, K));
  g_proj = register_module("g_proj", linear(D, vd, false));
  o_norm = register_module("o_norm", RMSNorm(dv, c.jet.norm_eps));
  o_proj = register_module("o_proj", linear(vd, D, false));
}

torch::Tensor GatedDeltaNetImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1);
  const torch::Tensor q = l2_norm(heads(q_conv1d(q_proj(x)), H, dk), 1.0 / std::sqrt(double(dk)));
  const torch::Tensor k = l2_norm(heads(k_conv1d(k_proj(x)), H, dk));
  const torch::Tensor v = heads(v_conv1d(v_proj(x)), H, dv);
  torch::Tensor beta, g;
  decay_gates(b_proj(x), a_proj(x), A_log, dt_bias, beta, g);
  const RecurrentResult r =
      recurrent ? gated_delta_rule_recurrent(q, k, v, g, beta) : gated_delta_rule_chunked(q, k, v, g, beta);
  const torch::Tensor o = o_norm(r.o) * torch::silu(at_least_f32(heads(g_proj(x), H, dv)));
  return o_proj(o.reshape({B, T, H * dv}).to(x.scalar_type()));
}

GLAImpl::GLAImpl(const ModelConfig& c) : H(c.jet.num_heads), dk(c.jet.head_k_dim), dv(c.jet.head_v_dim) {
  check_jet_sizes(c, "gla");
  const int64_t D = c.hidden, kd = H * dk, vd = H * dv;
  q_proj = register_module("q_proj", linear(D, kd, false));
  k_proj = register_module("k_proj", linear(D, kd, false));
  v_proj = register_module("v_proj", linear(D, vd, false));
  g_proj = register_module("g_proj", linear(D, vd, false));
  gk_proj = register_module("gk_proj", nn::Sequential(linear(D, kGlaGateRank, false), linear(kGlaGateRank, kd, true)));
  o_proj = register_module("o_proj", linear(vd, D, false));
  g_norm_swish_gate = register_module("g_norm_swish_gate", RMSNorm(dv, c.jet.norm_eps));
}

torch::Tensor GLAImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1);
  const torch::Tensor q = at_least_f32(heads(q_proj(x), H, dk)) * (1.0 / std::sqrt(double(dk)));
  const torch::Tensor k = at_least_f32(heads(k_proj(x), H, dk));
  const torch::Tensor v = at_least_f32(heads(v_proj(x), H, dv));
  const torch::Tensor gk = torch::log_sigmoid(at_least_f32(heads(gk_proj->forward(x), H, dk))) / kGlaGateNormalizer;
  const RecurrentResult r = recurrent ? gla_recurrent(q, k, v, gk) : gla_chunked(q, k, v, gk);
  const torch::Tensor o = g_norm_swish_gate(r.o) * torch::silu(at_least_f32(heads(g_proj(x), H, dv)));
  return o_proj(o.reshape({B, T, H * dv}).to(x.scalar_type()));
}

std::shared_ptr<MixerImpl> make_mixer(const ModelConfig& c, BlockKind kind) {
  switch (kind) {
    case BlockKind::Attn: return std::make_shared<AttentionImpl>(c, 0);
    case BlockKind::Swa:
      if (c.swa_window <= 0) throw_error("config", "a swa layer needs efficient_attention_config.swa.window_size > 0");
      return std::make_shared<AttentionImpl>(c, c.swa_window);
    case BlockKind::Jet: return std::make_shared<JetBlockImpl>(c);
    case BlockKind::Gdn: return std::make_shared<GatedDeltaNetImpl>(c);
    case BlockKind::Gla: return std::make_shared<GLAImpl>(c);
  }
  JETLM_ASSERT(false, "unknown block kind");
  return nullptr;
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, BlockKind kind_) : kind(kind_) {
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden, c.rms_eps));
  self_attn = make_mixer(c, kind);
  register_module("self_attn", self_attn);
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden, c.rms_eps));
  mlp = register_module("mlp", MLP(c.hidden, c.intermediate));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x) {
  // The residual stream stays in the input's dtype (float32 master activations under autocast).
  const torch::Tensor h = x + self_attn->forward(input_layernorm(x).to(x.scalar_type())).to(x.scalar_type());
  return h + mlp(post_attention_layernorm(h).to(x.scalar_type())).to(x.scalar_type());
}

DecoderImpl::DecoderImpl(const ModelConfig& c, const std::vector<BlockKind>& blocks) {
  embed_tokens = register_module("embed_tokens", nn::Embedding(c.vocab, c.hidden));
  layers = register_module("layers", nn::ModuleList());
  for (BlockKind kind : blocks) layers->push_back(DecoderLayer(c, kind));
  norm = register_module("norm", RMSNorm(c.hidden, c.rms_eps));
}

HybridModelImpl::HybridModelImpl(const ModelConfig& config, std::vector<BlockKind> blocks)
    : config_(config), blocks_(std::move(blocks)) {
  if (blocks_.empty())
    for (LayerKind k : config_.layer_types) blocks_.push_back(block_kind_of(k));
  if (int64_t(blocks_.size()) != config_.n_layers)
    throw_error("HybridModel", "got " + std::to_string(blocks_.size()) + " block types for " +
                                   std::to_string(config_.n_layers) + " layers");
  model = register_module("model", Decoder(config_, blocks_));
  if (!config_.tie_embeddings) lm_head = register_module("lm_head", linear(config_.hidden, config_.vocab, false));
  reset_parameters();
}

torch::Tensor HybridModelImpl::hidden_states(const torch::Tensor& ids) {
  JETLM_ASSERT(ids.dim() == 2, "HybridModel: ids must be [B, T]");
  torch::Tensor x = model->embed_tokens(ids);
  for (const auto& layer : *model->layers) x = layer->as<DecoderLayerImpl>()->forward(x);
  return model->norm(x);
}

const torch::Tensor& HybridModelImpl::head_weight() const {
  return config_.tie_embeddings ? model->embed_tokens->weight : lm_head->weight;
}

torch::Tensor HybridModelImpl::forward(const torch::Tensor& ids) {
  const torch::Tensor h = hidden_states(ids);
  return at_least_f32(torch::matmul(h.to(head_weight().scalar_type()), head_weight().t()));
}

void HybridModelImpl::set_recurrent(bool r) {
  for (const auto& layer : *model->layers) {
    auto* l = layer->as<DecoderLayerImpl>();
    if (auto* j = dynamic_cast<JetBlockImpl*>(l->self_attn.get())) j->recurrent = r;
    if (auto* g = dynamic_cast<GatedDeltaNetImpl*>(l->self_attn.get())) g->recurrent = r;
    if (auto* g = dynamic_cast<GLAImpl*>(l->self_attn.get())) g->recurrent = r;
  }
}

void HybridModelImpl::reset_parameters() { reset_parameters_of(*this); }

void reset_parameters_of(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    if (name.ends_with("A_log")) {
      p.uniform_(1.0, 16.0).log_();  // decay rates exp(A_log) in [1, 16], as fla
    } else if (name.ends_with("dt_bias")) {
      // softplus(dt_bias) = dt, log-uniform in [1e-3, 0.1]: dt_bias = dt + log(-expm1(-dt)).
      const torch::Tensor dt = torch::exp(torch::rand_like(p) * (std::log(0.1) - std::log(1e-3)) + std::log(1e-3));
      p.copy_(dt + torch::log(-torch::expm1(-dt)));
    } else if (name.ends_with("norm.weight") || name.ends_with("layernorm.weight") ||
               name.ends_with("g_norm_swish_gate.weight")) {
      p.fill_(1.0);
    } else if (name.ends_with(".bias")) {
      p.zero_();
    } else if (name.ends_with("conv1d.weight")) {
      p.uniform_(-0.5, 0.5);
    } else {
      p.normal_(0.0, 0.02);  // linear and embedding weights, as HF's initializer_range
    }
  }
}

}  // namespace jetlm::postnas
