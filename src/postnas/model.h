// Trainable modules (torch::nn) of the hybrid models the engine runs, and the extra linear-attention
// blocks the PostNAS search compares. Parameter names and shapes are the engine's HF tensor names
// (SPEC.md section 2): named_parameters() of a HybridModel is, name for name and shape for shape,
// expected_tensors() of its ModelConfig (model/weights.h), so checkpoints map 1:1 both ways.
//
// GDN and GLA blocks follow flash-linear-attention's module names (GatedDeltaNet: q/k/v/a/b/g/o
// projections, A_log, dt_bias, q/k/v_conv1d.weight [C, 1, K], o_norm.weight; GatedLinearAttention:
// q/k/v/g/o projections, gk_proj.0/1 (low rank, bias on the second), g_norm_swish_gate.weight).
// The engine does not run these two; they exist for the block-selection search.
//
// Inputs are [B, T, D] (batch of independent sequences, positions 0..T-1). Norms and the
// recurrences compute in float32 whatever autocast does to the matmuls.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/config.h"

namespace jetlm::postnas {

// The mixer of one layer. Attn/Swa/Jet are the engine's layer kinds; Gdn and Gla are search-only.
enum class BlockKind { Attn, Swa, Jet, Gdn, Gla };
const char* block_kind_name(BlockKind kind);
// "attn", "swa", "jet", "gdn", "gla"; throws jetlm::Error naming `where` otherwise.
BlockKind parse_block_kind(const std::string& name, const std::string& where);
BlockKind block_kind_of(LayerKind kind);
bool engine_runs(BlockKind kind);  // Attn, Swa, Jet

// GLA's low-rank gate width (fla's gate_low_rank_dim) and logit normaliser.
constexpr int64_t kGlaGateRank = 16;
constexpr double kGlaGateNormalizer = 16.0;

// A pre-norm mixer: x [B, T, D] (already normed) -> [B, T, D].
class MixerImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t n, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

class MLPImpl : public torch::nn::Module {
 public:
  MLPImpl(int64_t hidden, int64_t intermediate);
  torch::Tensor forward(const torch::Tensor& x);  // down(silu(gate x) * up x)
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

// Full (window == 0) or sliding-window causal attention, Qwen2/Qwen3 style (SPEC.md).
class AttentionImpl : public MixerImpl {
 public:
  AttentionImpl(const ModelConfig& c, int64_t window);
  torch::Tensor forward(const torch::Tensor& x) override;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // Qwen3 only
  int64_t n_heads, n_kv_heads, head_dim, window;
  double rope_theta, rms_eps;
  // When set, forward materialises the attention probabilities [B, Hq, T, T] (float32, gradient
  // retained) and appends them here, for the cheap importance score; slower, for analysis only.
  std::vector<torch::Tensor>* capture_probs = nullptr;
};

// kernel_generator: w1 (no bias) -> silu -> w2 (bias); names as in the official DynamicShortConvolution.
class KernelGeneratorImpl : public torch::nn::Module {
 public:
  KernelGeneratorImpl(int64_t hidden, int64_t generator_hidden, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear w1{nullptr}, w2{nullptr};
};
TORCH_MODULE(KernelGenerator);

class DynamicConvImpl : public torch::nn::Module {
 public:
  DynamicConvImpl(int64_t hidden, int64_t channels, int64_t generator_hidden, int64_t taps);
  // u [B, T, C] pre-conv values, x [B, T, D] the block input (generates the kernels).
  torch::Tensor forward(const torch::Tensor& u, const torch::Tensor& x);
  KernelGenerator kernel_generator{nullptr};
  int64_t channels, taps;
};
TORCH_MODULE(DynamicConv);

class JetBlockImpl : public MixerImpl {
 public:
  explicit JetBlockImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x) override;
  // The recurrence inputs and gates (for tests): q, k (normalised, q scaled), v (after the
  // dynamic conv), g (log-decay), beta. Shapes [B,T,H,dk], [B,T,H,dk], [B,T,H,dv], [B,T,H] x2.
  std::vector<torch::Tensor> recurrence_inputs(const torch::Tensor& x);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, b_proj{nullptr}, a_proj{nullptr},
      g_proj{nullptr}, o_proj{nullptr};
  DynamicConv dynamic_conv1d{nullptr};
  torch::Tensor A_log, dt_bias;
  RMSNorm o_norm{nullptr};
  int64_t H, dk, dv;
  bool recurrent = false;  // run the token-by-token form instead of the chunked one (tests)
};

// fla's ShortConvolution: depthwise causal conv, weight [C, 1, K], silu, no bias.
class ShortConvImpl : public torch::nn::Module {
 public:
  ShortConvImpl(int64_t channels, int64_t taps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
};
TORCH_MODULE(ShortConv);

// Gated DeltaNet (fla GatedDeltaNet, use_gate, use_short_conv): sizes from config.jet.
class GatedDeltaNetImpl : public MixerImpl {
 public:
  explicit GatedDeltaNetImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x) override;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, a_proj{nullptr}, b_proj{nullptr},
      g_proj{nullptr}, o_proj{nullptr};
  ShortConv q_conv1d{nullptr}, k_conv1d{nullptr}, v_conv1d{nullptr};
  torch::Tensor A_log, dt_bias;
  RMSNorm o_norm{nullptr};
  int64_t H, dk, dv;
  bool recurrent = false;
};

// Gated Linear Attention (fla GatedLinearAttention, output gate, fused norm+swish gate, no short
// conv): sizes from config.jet (heads, dk, dv), so its state matches a JetBlock's.
class GLAImpl : public MixerImpl {
 public:
  explicit GLAImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x) override;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, g_proj{nullptr}, o_proj{nullptr};
  torch::nn::Sequential gk_proj{nullptr};
  RMSNorm g_norm_swish_gate{nullptr};
  int64_t H, dk, dv;
  bool recurrent = false;
};

// Draws every parameter of `module` by the rules of HybridModelImpl::reset_parameters (by name).
void reset_parameters_of(torch::nn::Module& module);

// A freshly constructed mixer of `kind` (initialise it with reset_parameters_of).
std::shared_ptr<MixerImpl> make_mixer(const ModelConfig& c, BlockKind kind);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& c, BlockKind kind);
  torch::Tensor forward(const torch::Tensor& x);  // x + mixer(norm x), then + mlp(norm .)
  BlockKind kind;
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  std::shared_ptr<MixerImpl> self_attn;
  MLP mlp{nullptr};
};
TORCH_MODULE(DecoderLayer);

// embed_tokens, layers.i, norm: registered under "model" by HybridModel.
class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const ModelConfig& c, const std::vector<BlockKind>& blocks);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(Decoder);

class HybridModelImpl : public torch::nn::Module {
 public:
  // blocks: one per layer; empty = the config's layer_types. A Gdn/Gla block takes its sizes from
  // config.jet, which must then be set.
  explicit HybridModelImpl(const ModelConfig& config, std::vector<BlockKind> blocks = {});
  // ids [B, T] (int64) -> logits [B, T, vocab] (float32).
  torch::Tensor forward(const torch::Tensor& ids);
  // ids [B, T] -> the final-normed hidden states [B, T, D].
  torch::Tensor hidden_states(const torch::Tensor& ids);
  // The LM head: the embedding when tied.
  const torch::Tensor& head_weight() const;
  const ModelConfig& config() const { return config_; }
  const std::vector<BlockKind>& blocks() const { return blocks_; }
  // Runs JetBlock/GDN/GLA token by token (the recurrent form) instead of chunked; for tests.
  void set_recurrent(bool recurrent);
  // Re-draws every parameter (linear ~ U(+-1/sqrt(in)) like torch, embeddings N(0, 0.02), norms 1,
  // A_log/dt_bias as fla does) from torch's global generator: seed it first for reproducibility.
  void reset_parameters();

  Decoder model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // only when not tied

 private:
  ModelConfig config_;
  std::vector<BlockKind> blocks_;
};
TORCH_MODULE(HybridModel);

}  // namespace jetlm::postnas
