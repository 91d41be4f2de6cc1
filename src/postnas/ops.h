// Differentiable building blocks of the PostNAS blocks, made of libtorch ops (autograd gives the
// backward). Shapes: B batch, T tokens, H heads, dk/dv head dims, C channels, K taps. Every
// function keeps float32 (or float64, for gradient checks) internally: bf16/f16 inputs are widened.
//
// The gated delta rule (SPEC.md section 1, per head, S [dk, dv] starting at `state` or 0):
//     S = exp(g_t) S;  S = S + k_t (beta_t (v_t - S^T k_t))^T;  o_t = S^T q_t
// q and k are taken as given (the caller L2-normalises them and scales q).
#pragma once

#include <torch/torch.h>

namespace jetlm::postnas {

// Widens bf16/f16 to float32; float32/float64 stay as they are.
torch::Tensor at_least_f32(const torch::Tensor& x);

// w * x / sqrt(mean(x^2, -1) + eps), computed in (at least) float32; returns that dtype.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps);
// x * rsqrt(sum(x^2, -1) + 1e-6) * scale (the JetBlock / GDN q/k normalisation).
torch::Tensor l2_norm(const torch::Tensor& x, double scale = 1.0);

// HF rotate_half RoPE on x [B, T, H, d] at positions pos0 .. pos0+T-1.
torch::Tensor rope(const torch::Tensor& x, double theta, int64_t pos0 = 0);

// Causal softmax attention with GQA: q [B, T, Hq, hd], k/v [B, T, Hkv, hd] -> [B, T, Hq, hd].
// window > 0: token i sees j with i - window < j <= i (SWA). Scale 1/sqrt(hd), softmax in fp32.
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               int64_t window = 0);
// The same with the T x T probabilities materialised (float32 or wider) and returned in *probs
// [B, Hq, T, T] as part of the graph (the cheap layer-importance score reads their gradient).
torch::Tensor causal_attention_explicit(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                        int64_t window, torch::Tensor* probs);

struct RecurrentResult {
  torch::Tensor o;      // [B, T, H, dv]
  torch::Tensor state;  // [B, H, dk, dv], the state after the last token
};

// The gated delta rule, chunked (WY/UT form, one lower-triangular solve per chunk, the state
// carried between chunks). q/k [B, T, H, dk], v [B, T, H, dv], g (log-decay, <= 0) and beta
// [B, T, H]; state [B, H, dk, dv] or undefined (zeros). Every decay factor is exp of a difference
// of cumulative log-decays with the later index first (<= 0), so strong decays cannot overflow.
RecurrentResult gated_delta_rule_chunked(const torch::Tensor& q, const torch::Tensor& k,
                                         const torch::Tensor& v, const torch::Tensor& g,
                                         const torch::Tensor& beta, const torch::Tensor& state = {},
                                         int64_t chunk = 64);
// The same rule token by token (the test oracle and the decode form).
RecurrentResult gated_delta_rule_recurrent(const torch::Tensor& q, const torch::Tensor& k,
                                           const torch::Tensor& v, const torch::Tensor& g,
                                           const torch::Tensor& beta, const torch::Tensor& state = {});

// Gated linear attention (GLA): per-key-dimension decay gk [B, T, H, dk] (log, <= 0):
//     S = diag(exp(gk_t)) S + k_t v_t^T;  o_t = S^T q_t      (q taken as given, scale it first)
RecurrentResult gla_chunked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const torch::Tensor& gk, const torch::Tensor& state = {}, int64_t chunk = 16);
RecurrentResult gla_recurrent(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& gk, const torch::Tensor& state = {});

// JetBlock dynamic convolution: u [B, T, C] (pre-conv values), kernel [B, T, C, K] (per token;
// tap i multiplies u_{t-K+1+i}, u before t = 0 is 0) -> silu(sum_i kernel[t, c, i] u_{t-K+1+i}[c]).
torch::Tensor dynamic_conv(const torch::Tensor& u, const torch::Tensor& kernel);

// Depthwise causal convolution with a static kernel, then silu (fla's ShortConvolution):
// x [B, T, C], weight [C, 1, K] (tap K-1 multiplies x_t) -> [B, T, C].
torch::Tensor short_conv(const torch::Tensor& x, const torch::Tensor& weight);

// While alive (and `on`), CUDA autocast to bf16 is on: the trainer's forward precision.
class AutocastBf16Cuda {
 public:
  explicit AutocastBf16Cuda(bool on);
  ~AutocastBf16Cuda();
  AutocastBf16Cuda(const AutocastBf16Cuda&) = delete;
  AutocastBf16Cuda& operator=(const AutocastBf16Cuda&) = delete;

 private:
  bool on_;
};

// While alive, autocast is off for CUDA (and CPU): the recurrences run in float32 whatever the
// caller's autocast says.
class AutocastOff {
 public:
  AutocastOff();
  ~AutocastOff();
  AutocastOff(const AutocastOff&) = delete;
  AutocastOff& operator=(const AutocastOff&) = delete;

 private:
  bool cuda_ = false, cpu_ = false;
};

}  // namespace jetlm::postnas
