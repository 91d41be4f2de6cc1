#include "postnas/ops.h"

#include <ATen/autocast_mode.h>

#include <cmath>
#include <limits>

#include "core/error.h"

namespace jetlm::postnas {

namespace {

// The dtype the recurrences compute in: float64 when any input is (gradient checks), else float32.
torch::ScalarType compute_type(std::initializer_list<const torch::Tensor*> xs) {
  for (const torch::Tensor* x : xs)
    if (x->defined() && x->scalar_type() == torch::kDouble) return torch::kDouble;
  return torch::kFloat;
}

// [B, T, H, d] -> [B, H, N, C, d] with T zero-padded to N*C.
torch::Tensor to_chunks(const torch::Tensor& x, int64_t C, torch::ScalarType dt) {
  const int64_t T = x.size(1), N = (T + C - 1) / C, pad = N * C - T;
  torch::Tensor y = x.to(dt).transpose(1, 2);  // [B, H, T, d]
  if (pad > 0) y = torch::constant_pad_nd(y, {0, 0, 0, pad});
  return y.reshape({y.size(0), y.size(1), N, C, y.size(3)});
}

// [B, T, H] -> [B, H, N, C] with T zero-padded to N*C.
torch::Tensor gates_to_chunks(const torch::Tensor& x, int64_t C, torch::ScalarType dt) {
  const int64_t T = x.size(1), N = (T + C - 1) / C, pad = N * C - T;
  torch::Tensor y = x.to(dt).transpose(1, 2);  // [B, H, T]
  if (pad > 0) y = torch::constant_pad_nd(y, {0, pad});
  return y.reshape({y.size(0), y.size(1), N, C});
}

// [B, H, N, C, d] -> [B, T, H, d] (drops the padding).
torch::Tensor from_chunks(const torch::Tensor& x, int64_t T) {
  const auto B = x.size(0), H = x.size(1), d = x.size(4);
  return x.reshape({B, H, -1, d}).narrow(2, 0, T).transpose(1, 2).contiguous();
}

void check_recurrent_shapes(const char* what, const torch::Tensor& q, const torch::Tensor& k,
                            const torch::Tensor& v, const torch::Tensor& state) {
  JETLM_ASSERT(q.dim() == 4 && k.sizes() == q.sizes(), std::string(what) + ": q/k must be [B, T, H, dk]");
  JETLM_ASSERT(v.dim() == 4 && v.size(0) == q.size(0) && v.size(1) == q.size(1) && v.size(2) == q.size(2),
               std::string(what) + ": v must be [B, T, H, dv]");
  if (state.defined())
    JETLM_ASSERT(state.dim() == 4 && state.size(0) == q.size(0) && state.size(1) == q.size(2) &&
                     state.size(2) == q.size(3) && state.size(3) == v.size(3),
                 std::string(what) + ": state must be [B, H, dk, dv]");
}

torch::Tensor initial_state(const torch::Tensor& state, const torch::Tensor& q, const torch::Tensor& v,
                            torch::ScalarType dt) {
  if (state.defined()) return state.to(dt);
  return torch::zeros({q.size(0), q.size(2), q.size(3), v.size(3)}, q.options().dtype(dt));
}

}  // namespace

torch::Tensor at_least_f32(const torch::Tensor& x) {
  if (x.scalar_type() == torch::kBFloat16 || x.scalar_type() == torch::kHalf) return x.to(torch::kFloat);
  return x;
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  const torch::Tensor xf = at_least_f32(x);
  const torch::Tensor inv = torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return xf * inv * w.to(xf.scalar_type());
}

torch::Tensor l2_norm(const torch::Tensor& x, double scale) {
  const torch::Tensor xf = at_least_f32(x);
  return xf * torch::rsqrt(xf.pow(2).sum(-1, /*keepdim=*/true) + 1e-6) * scale;
}

torch::Tensor rope(const torch::Tensor& x, double theta, int64_t pos0) {
  JETLM_ASSERT(x.dim() == 4 && x.size(3) % 2 == 0, "rope: x must be [B, T, H, d] with even d");
  const int64_t T = x.size(1), d = x.size(3), half = d / 2;
  // Angles in float64 (positions reach 1e5 and more), then the input's dtype.
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble).device(x.device());
  const torch::Tensor inv_freq = 1.0 / torch::pow(theta, torch::arange(0, d, 2, f64) / double(d));  // [d/2]
  const torch::Tensor angles = (torch::arange(pos0, pos0 + T, f64).unsqueeze(1) * inv_freq.unsqueeze(0));
  const torch::Tensor cos = torch::cat({angles.cos(), angles.cos()}, -1).to(x.scalar_type()).view({1, T, 1, d});
  const torch::Tensor sin = torch::cat({angles.sin(), angles.sin()}, -1).to(x.scalar_type()).view({1, T, 1, d});
  const torch::Tensor rotated = torch::cat({-x.narrow(3, half, half), x.narrow(3, 0, half)}, 3);
  return x * cos + rotated * sin;
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               int64_t window) {
  JETLM_ASSERT(q.dim() == 4 && k.dim() == 4 && v.sizes() == k.sizes(), "attention: q [B,T,Hq,hd], k/v [B,T,Hkv,hd]");
  const int64_t T = q.size(1), Hq = q.size(2), Hkv = k.size(2), hd = q.size(3);
  JETLM_ASSERT(Hq % Hkv == 0 && k.size(3) == hd && k.size(1) == T);
  const int64_t group = Hq / Hkv;
  if (q.scalar_type() != torch::kDouble) {
    // Fused kernels (flash / memory-efficient on CUDA, flash on CPU): no T x T matrix in memory.
    // Float64 (the gradient checks) keeps the explicit form below.
    const torch::Tensor qh = q.transpose(1, 2), kh = k.transpose(1, 2), vh = v.transpose(1, 2);  // [B, H, T, hd]
    std::optional<torch::Tensor> mask;
    if (window > 0) {
      const auto idx = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(q.device()));
      mask = (idx.unsqueeze(0) <= idx.unsqueeze(1)) & (idx.unsqueeze(0) > idx.unsqueeze(1) - window);
    }
    return at::scaled_dot_product_attention(qh, kh, vh, mask, 0.0, /*is_causal=*/window == 0,
                                            1.0 / std::sqrt(double(hd)), /*enable_gqa=*/group > 1)
        .transpose(1, 2);
  }
  return causal_attention_explicit(q, k, v, window, nullptr);
}

torch::Tensor causal_attention_explicit(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                        int64_t window, torch::Tensor* probs) {
  JETLM_ASSERT(q.dim() == 4 && k.dim() == 4 && v.sizes() == k.sizes(), "attention: q [B,T,Hq,hd], k/v [B,T,Hkv,hd]");
  const int64_t T = q.size(1), Hq = q.size(2), Hkv = k.size(2), hd = q.size(3);
  JETLM_ASSERT(Hq % Hkv == 0 && k.size(3) == hd && k.size(1) == T);
  const int64_t group = Hq / Hkv;
  torch::Tensor kk = k, vv = v;
  if (group > 1) {  // query head h reads kv head h / group
    kk = k.repeat_interleave(group, 2);
    vv = v.repeat_interleave(group, 2);
  }
  const torch::Tensor qh = q.transpose(1, 2), kh = kk.transpose(1, 2), vh = vv.transpose(1, 2);  // [B, H, T, hd]
  torch::Tensor scores = at_least_f32(torch::matmul(qh, kh.transpose(-1, -2))) * (1.0 / std::sqrt(double(hd)));
  const auto idx = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(q.device()));
  torch::Tensor allowed = idx.unsqueeze(0) <= idx.unsqueeze(1);  // [T(i), T(j)]: j <= i
  if (window > 0) allowed = allowed & (idx.unsqueeze(0) > idx.unsqueeze(1) - window);
  scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<double>::infinity());
  const torch::Tensor p = torch::softmax(scores, -1);  // [B, Hq, T, T], float32 or float64
  if (probs) *probs = p;
  return torch::matmul(p.to(vh.scalar_type()), vh).transpose(1, 2);  // [B, T, Hq, hd]
}

RecurrentResult gated_delta_rule_chunked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const torch::Tensor& g, const torch::Tensor& beta,
                                         const torch::Tensor& state, int64_t chunk) {
  check_recurrent_shapes("gated_delta_rule_chunked", q, k, v, state);
  JETLM_ASSERT(g.dim() == 3 && beta.sizes() == g.sizes() && g.size(0) == q.size(0) && g.size(1) == q.size(1) &&
               g.size(2) == q.size(2), "gated_delta_rule_chunked: g/beta must be [B, T, H]");
  JETLM_ASSERT(chunk > 0);
  AutocastOff autocast_off;
  const auto dt = compute_type({&q, &k, &v, &g, &beta, &state});
  const int64_t T = q.size(1), C = chunk;
  const torch::Tensor Q = to_chunks(q, C, dt), K = to_chunks(k, C, dt), V = to_chunks(v, C, dt);  // [B,H,N,C,d]
  const torch::Tensor beta_c = gates_to_chunks(beta, C, dt);                                    // [B,H,N,C]
  const torch::Tensor G = gates_to_chunks(g, C, dt).cumsum(-1);  // cumulative log-decay within each chunk
  const int64_t N = Q.size(2);

  // decay[r, s] = exp(G_r - G_s) for s <= r (<= 1), 0 above the diagonal (masked before exp).
  const auto bool_opts = torch::TensorOptions().dtype(torch::kBool).device(q.device());
  const torch::Tensor lower_incl = torch::ones({C, C}, bool_opts).tril();
  const torch::Tensor strict_lower = torch::ones({C, C}, bool_opts).tril(-1);
  const torch::Tensor decay = (G.unsqueeze(-1) - G.unsqueeze(-2))
                                  .masked_fill(lower_incl.logical_not(), -std::numeric_limits<double>::infinity())
                                  .exp();  // [B,H,N,C,C]

  // WY/UT form: with A[r, s] = beta_r exp(G_r - G_s) (k_r . k_s) for s < r, the per-token updates
  // of the chunk are U = (I + A)^-1 (beta V) - (I + A)^-1 (beta exp(G) K) S0 =: u - w S0.
  const torch::Tensor k_beta = K * beta_c.unsqueeze(-1);
  const torch::Tensor A = (torch::matmul(k_beta, K.transpose(-1, -2)) * decay).masked_fill(strict_lower.logical_not(), 0.0);
  const torch::Tensor L = A + torch::eye(C, A.options());
  const torch::Tensor u = at::linalg_solve_triangular(L, V * beta_c.unsqueeze(-1), /*upper=*/false,
                                                      /*left=*/true, /*unitriangular=*/true);  // [B,H,N,C,dv]
  const torch::Tensor w = at::linalg_solve_triangular(L, k_beta * G.exp().unsqueeze(-1), /*upper=*/false,
                                                      /*left=*/true, /*unitriangular=*/true);  // [B,H,N,C,dk]
  const torch::Tensor qk = torch::matmul(Q, K.transpose(-1, -2)) * decay;  // [B,H,N,C,C], causal incl. diagonal

  torch::Tensor S = initial_state(state, q, v, dt);  // [B,H,dk,dv]
  std::vector<torch::Tensor> outs;
  outs.reserve(size_t(N));
  for (int64_t n = 0; n < N; ++n) {
    const torch::Tensor Gn = G.select(2, n);                             // [B,H,C]
    const torch::Tensor Un = u.select(2, n) - torch::matmul(w.select(2, n), S);  // [B,H,C,dv]
    const torch::Tensor Qn = Q.select(2, n), Kn = K.select(2, n);
    outs.push_back(torch::matmul(Qn * Gn.exp().unsqueeze(-1), S) + torch::matmul(qk.select(2, n), Un));
    const torch::Tensor g_last = Gn.narrow(-1, C - 1, 1);                // [B,H,1]
    const torch::Tensor k_decayed = Kn * (g_last - Gn).exp().unsqueeze(-1);  // exp(G_last - G_s) <= 1
    S = S * g_last.exp().unsqueeze(-1) + torch::matmul(k_decayed.transpose(-1, -2), Un);
  }
  return {from_chunks(torch::stack(outs, 2), T), S};
}

RecurrentResult gated_delta_rule_recurrent(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                           const torch::Tensor& g, const torch::Tensor& beta,
                                           const torch::Tensor& state) {
  check_recurrent_shapes("gated_delta_rule_recurrent", q, k, v, state);
  AutocastOff autocast_off;
  const auto dt = compute_type({&q, &k, &v, &g, &beta, &state});
  const torch::Tensor Q = q.to(dt), K = k.to(dt), V = v.to(dt), Gd = g.to(dt), Bt = beta.to(dt);
  torch::Tensor S = initial_state(state, q, v, dt);
  std::vector<torch::Tensor> outs;
  for (int64_t t = 0; t < q.size(1); ++t) {
    const torch::Tensor kt = K.select(1, t), qt = Q.select(1, t), vt = V.select(1, t);  // [B,H,d]
    S = S * Gd.select(1, t).exp().unsqueeze(-1).unsqueeze(-1);
    const torch::Tensor predicted = torch::matmul(kt.unsqueeze(-2), S).squeeze(-2);     // S^T k: [B,H,dv]
    const torch::Tensor delta = Bt.select(1, t).unsqueeze(-1) * (vt - predicted);
    S = S + kt.unsqueeze(-1) * delta.unsqueeze(-2);
    outs.push_back(torch::matmul(qt.unsqueeze(-2), S).squeeze(-2));
  }
  return {torch::stack(outs, 1), S};
}

RecurrentResult gla_chunked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                            const torch::Tensor& gk, const torch::Tensor& state, int64_t chunk) {
  check_recurrent_shapes("gla_chunked", q, k, v, state);
  JETLM_ASSERT(gk.sizes() == q.sizes(), "gla_chunked: gk must be [B, T, H, dk]");
  AutocastOff autocast_off;
  const auto dt = compute_type({&q, &k, &v, &gk, &state});
  const int64_t T = q.size(1), C = chunk;
  const torch::Tensor Q = to_chunks(q, C, dt), K = to_chunks(k, C, dt), V = to_chunks(v, C, dt);
  const torch::Tensor G = to_chunks(gk, C, dt).cumsum(-2);  // [B,H,N,C,dk], per key dim
  const int64_t N = Q.size(2);
  // A[r, s] = sum_d q_rd k_sd exp(G_rd - G_sd) for s <= r: the differences are formed per element
  // (a [C, C, dk] tensor per chunk) so that no factor can overflow.
  const auto bool_opts = torch::TensorOptions().dtype(torch::kBool).device(q.device());
  const torch::Tensor upper = torch::ones({C, C}, bool_opts).tril().logical_not().unsqueeze(-1);  // [C,C,1]
  const torch::Tensor decay = (G.unsqueeze(-2) - G.unsqueeze(-3))
                                  .masked_fill(upper, -std::numeric_limits<double>::infinity())
                                  .exp();  // [B,H,N,C(r),C(s),dk]
  const torch::Tensor A = (Q.unsqueeze(-2) * K.unsqueeze(-3) * decay).sum(-1);  // [B,H,N,C,C]
  torch::Tensor S = initial_state(state, q, v, dt);
  std::vector<torch::Tensor> outs;
  for (int64_t n = 0; n < N; ++n) {
    const torch::Tensor Gn = G.select(2, n), Qn = Q.select(2, n), Kn = K.select(2, n), Vn = V.select(2, n);
    outs.push_back(torch::matmul(Qn * Gn.exp(), S) + torch::matmul(A.select(2, n), Vn));
    const torch::Tensor g_last = Gn.narrow(-2, C - 1, 1);  // [B,H,1,dk]
    S = S * g_last.squeeze(-2).exp().unsqueeze(-1) +
        torch::matmul((Kn * (g_last - Gn).exp()).transpose(-1, -2), Vn);
  }
  return {from_chunks(torch::stack(outs, 2), T), S};
}

RecurrentResult gla_recurrent(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& gk, const torch::Tensor& state) {
  check_recurrent_shapes("gla_recurrent", q, k, v, state);
  AutocastOff autocast_off;
  const auto dt = compute_type({&q, &k, &v, &gk, &state});
  const torch::Tensor Q = q.to(dt), K = k.to(dt), V = v.to(dt), Gk = gk.to(dt);
  torch::Tensor S = initial_state(state, q, v, dt);
  std::vector<torch::Tensor> outs;
  for (int64_t t = 0; t < q.size(1); ++t) {
    S = S * Gk.select(1, t).exp().unsqueeze(-1) + K.select(1, t).unsqueeze(-1) * V.select(1, t).unsqueeze(-2);
    outs.push_back(torch::matmul(Q.select(1, t).unsqueeze(-2), S).squeeze(-2));
  }
  return {torch::stack(outs, 1), S};
}

torch::Tensor dynamic_conv(const torch::Tensor& u, const torch::Tensor& kernel) {
  JETLM_ASSERT(u.dim() == 3 && kernel.dim() == 4 && kernel.size(0) == u.size(0) && kernel.size(1) == u.size(1) &&
                   kernel.size(2) == u.size(2),
               "dynamic_conv: u [B, T, C], kernel [B, T, C, K]");
  const int64_t T = u.size(1), K = kernel.size(3);
  const torch::Tensor uf = at_least_f32(u), kf = at_least_f32(kernel);
  const torch::Tensor padded = torch::constant_pad_nd(uf, {0, 0, K - 1, 0});  // [B, K-1+T, C]
  torch::Tensor acc = padded.narrow(1, 0, T) * kf.select(3, 0);
  for (int64_t i = 1; i < K; ++i) acc = acc + padded.narrow(1, i, T) * kf.select(3, i);
  return torch::silu(acc);
}

torch::Tensor short_conv(const torch::Tensor& x, const torch::Tensor& weight) {
  JETLM_ASSERT(x.dim() == 3 && weight.dim() == 3 && weight.size(0) == x.size(2) && weight.size(1) == 1,
               "short_conv: x [B, T, C], weight [C, 1, K]");
  const int64_t T = x.size(1), K = weight.size(2);
  const torch::Tensor xf = at_least_f32(x);
  const torch::Tensor w = weight.to(xf.scalar_type()).select(1, 0);  // [C, K]
  const torch::Tensor padded = torch::constant_pad_nd(xf, {0, 0, K - 1, 0});
  torch::Tensor acc = padded.narrow(1, 0, T) * w.select(1, 0);
  for (int64_t i = 1; i < K; ++i) acc = acc + padded.narrow(1, i, T) * w.select(1, i);
  return torch::silu(acc);
}

AutocastOff::AutocastOff() {
  cuda_ = at::autocast::is_autocast_enabled(at::kCUDA);
  cpu_ = at::autocast::is_autocast_enabled(at::kCPU);
  if (cuda_) at::autocast::set_autocast_enabled(at::kCUDA, false);
  if (cpu_) at::autocast::set_autocast_enabled(at::kCPU, false);
}

AutocastOff::~AutocastOff() {
  if (cuda_) at::autocast::set_autocast_enabled(at::kCUDA, true);
  if (cpu_) at::autocast::set_autocast_enabled(at::kCPU, true);
}

AutocastBf16Cuda::AutocastBf16Cuda(bool on) : on_(on) {
  if (!on_) return;
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::increment_nesting();
}

AutocastBf16Cuda::~AutocastBf16Cuda() {
  if (!on_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(at::kCUDA, false);
}

}  // namespace jetlm::postnas
