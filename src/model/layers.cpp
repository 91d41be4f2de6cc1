#include "model/layers.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/ops.h"
#include "core/error.h"

namespace jetlm::layers {

namespace {
using Buffer = std::vector<float>;
Buffer buffer(int64_t n) { return Buffer(size_t(n)); }

// The per-sequence half of attention: appends the new keys/values (already projected and rotated)
// to this sequence's cache and attends over it. q [T, Hq, hd], k/v [T, Hkv, hd], attn_out [T, Hq, hd].
void attend(const ModelConfig& c, LayerKind kind, LayerCache& cache, int64_t pos0, const float* q,
            const float* k, const float* v, int64_t T, float* attn_out) {
  const int64_t Hq = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim;
  const int64_t kv_row = Hkv * hd;
  if (kind == LayerKind::Attn) {
    JETLM_ASSERT(int64_t(cache.k.size()) == pos0 * kv_row, "attn cache out of step with positions");
    cache.k.insert(cache.k.end(), k, k + T * kv_row);
    cache.v.insert(cache.v.end(), v, v + T * kv_row);
    cpu::attention(q, cache.k.data(), cache.v.data(), T, pos0 + T, Hq, Hkv, hd, pos0, 0, 0,
                   attn_out);
  } else {
    // SWA: keys at positions pos0-prev .. pos0+T-1, where the ring holds the previous ones.
    const int64_t W = c.swa_window;
    const int64_t prev = std::min<int64_t>(pos0, W - 1);
    Buffer keys = buffer((prev + T) * kv_row), values = buffer((prev + T) * kv_row);
    for (int64_t i = 0; i < prev; ++i) {
      const int64_t slot = (pos0 - prev + i) % W;
      std::copy_n(cache.k.data() + slot * kv_row, kv_row, keys.data() + i * kv_row);
      std::copy_n(cache.v.data() + slot * kv_row, kv_row, values.data() + i * kv_row);
    }
    std::copy_n(k, T * kv_row, keys.begin() + prev * kv_row);
    std::copy_n(v, T * kv_row, values.begin() + prev * kv_row);
    cpu::attention(q, keys.data(), values.data(), T, prev + T, Hq, Hkv, hd, pos0,
                   pos0 - prev, W, attn_out);
    for (int64_t p = std::max(pos0, pos0 + T - W); p < pos0 + T; ++p) {
      const int64_t slot = p % W;
      std::copy_n(k + (p - pos0) * kv_row, kv_row, cache.k.data() + slot * kv_row);
      std::copy_n(v + (p - pos0) * kv_row, kv_row, cache.v.data() + slot * kv_row);
    }
  }
}

}  // namespace

void attention(const ModelConfig& c, LayerKind kind, const AttnWeights& w, LayerCache& cache,
               int64_t pos0, const float* x, int64_t T, float* out) {
  const int64_t Hq = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim;
  const int64_t kv_row = Hkv * hd;
  Buffer q = buffer(T * Hq * hd), k = buffer(T * kv_row), v = buffer(T * kv_row);
  cpu::matmul(x, T, w.q, w.q_bias.empty() ? nullptr : w.q_bias.data(), q.data());
  cpu::matmul(x, T, w.k, w.k_bias.empty() ? nullptr : w.k_bias.data(), k.data());
  cpu::matmul(x, T, w.v, w.v_bias.empty() ? nullptr : w.v_bias.data(), v.data());
  if (c.qk_norm) {
    cpu::rmsnorm(q.data(), T * Hq, hd, w.q_norm.data(), c.rms_eps, q.data());
    cpu::rmsnorm(k.data(), T * Hkv, hd, w.k_norm.data(), c.rms_eps, k.data());
  }
  cpu::rope(q.data(), T, Hq, hd, pos0, c.rope_theta);
  cpu::rope(k.data(), T, Hkv, hd, pos0, c.rope_theta);

  Buffer attn_out = buffer(T * Hq * hd);
  attend(c, kind, cache, pos0, q.data(), k.data(), v.data(), T, attn_out.data());
  cpu::matmul(attn_out.data(), T, w.o, nullptr, out);
}

void jet(const ModelConfig& c, const JetWeights& w, LayerCache& cache, const float* x, int64_t T,
         bool recurrent, float* out) {
  const JetConfig& j = c.jet;
  const int64_t H = j.num_heads, dk = j.head_k_dim, dv = j.head_v_dim;
  const int64_t key_dim = H * dk, value_dim = H * dv, K = j.conv_size;
  Buffer q = buffer(T * key_dim), k = buffer(T * key_dim);
  cpu::matmul(x, T, w.q, nullptr, q.data());
  cpu::matmul(x, T, w.k, nullptr, k.data());
  cpu::silu(q.data(), T * key_dim);
  cpu::silu(k.data(), T * key_dim);

  // Values: dynamic causal conv of u = W_v x with per-token kernels W2 silu(W1 x) + b2.
  Buffer u = buffer(T * value_dim), hidden = buffer(T * j.generator_hidden);
  Buffer kernels = buffer(T * value_dim * K), v = buffer(T * value_dim);
  cpu::matmul(x, T, w.v, nullptr, u.data());
  cpu::matmul(x, T, w.w1, nullptr, hidden.data());
  cpu::silu(hidden.data(), T * j.generator_hidden);
  cpu::matmul(hidden.data(), T, w.w2, w.w2_bias.data(), kernels.data());
  cpu::dconv(u.data(), kernels.data(), T, value_dim, K, cache.conv.data(), v.data());

  Buffer b_raw = buffer(T * H), a_raw = buffer(T * H), beta = buffer(T * H), g = buffer(T * H);
  cpu::matmul(x, T, w.b, nullptr, b_raw.data());
  cpu::matmul(x, T, w.a, nullptr, a_raw.data());
  cpu::jet_gates(b_raw.data(), a_raw.data(), w.A_log.data(), w.dt_bias.data(), T, H, beta.data(),
                 g.data());

  cpu::l2norm_rows(q.data(), T * H, dk, 1.0f / std::sqrt(float(dk)));
  cpu::l2norm_rows(k.data(), T * H, dk, 1.0f);
  Buffer o = buffer(T * value_dim);
  if (recurrent || T == 1)
    cpu::gdn_recurrent(q.data(), k.data(), v.data(), g.data(), beta.data(), T, H, dk, dv,
                       cache.state.data(), o.data());
  else
    cpu::gdn_chunked(q.data(), k.data(), v.data(), g.data(), beta.data(), T, H, dk, dv,
                     cache.state.data(), o.data());

  Buffer gate = buffer(T * value_dim);
  cpu::matmul(x, T, w.g, nullptr, gate.data());
  cpu::gated_rmsnorm(o.data(), gate.data(), T, H, dv, w.o_norm.data(), j.norm_eps);
  cpu::matmul(o.data(), T, w.o, nullptr, out);
}

void attention_batch(const ModelConfig& c, LayerKind kind, const AttnWeights& w,
                     LayerCache* const* caches, const int64_t* pos, const float* x, int64_t B,
                     float* out) {
  const int64_t Hq = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim;
  const int64_t q_row = Hq * hd, kv_row = Hkv * hd;
  // Projections of all B rows at once: each weight is read once per step.
  Buffer q = buffer(B * q_row), k = buffer(B * kv_row), v = buffer(B * kv_row);
  cpu::matmul(x, B, w.q, w.q_bias.empty() ? nullptr : w.q_bias.data(), q.data());
  cpu::matmul(x, B, w.k, w.k_bias.empty() ? nullptr : w.k_bias.data(), k.data());
  cpu::matmul(x, B, w.v, w.v_bias.empty() ? nullptr : w.v_bias.data(), v.data());
  if (c.qk_norm) {
    cpu::rmsnorm(q.data(), B * Hq, hd, w.q_norm.data(), c.rms_eps, q.data());
    cpu::rmsnorm(k.data(), B * Hkv, hd, w.k_norm.data(), c.rms_eps, k.data());
  }
  // Positions, caches and attention per sequence.
  Buffer attn_out = buffer(B * q_row);
  for (int64_t b = 0; b < B; ++b) {
    cpu::rope(q.data() + b * q_row, 1, Hq, hd, pos[b], c.rope_theta);
    cpu::rope(k.data() + b * kv_row, 1, Hkv, hd, pos[b], c.rope_theta);
    attend(c, kind, *caches[b], pos[b], q.data() + b * q_row, k.data() + b * kv_row,
           v.data() + b * kv_row, 1, attn_out.data() + b * q_row);
  }
  cpu::matmul(attn_out.data(), B, w.o, nullptr, out);
}

void jet_batch(const ModelConfig& c, const JetWeights& w, LayerCache* const* caches, const float* x,
               int64_t B, float* out) {
  const JetConfig& j = c.jet;
  const int64_t H = j.num_heads, dk = j.head_k_dim, dv = j.head_v_dim;
  const int64_t key_dim = H * dk, value_dim = H * dv, K = j.conv_size;
  // Every projection (and the kernel generator) on all B rows at once; the same row-wise ops as
  // jet() with T = B.
  Buffer q = buffer(B * key_dim), k = buffer(B * key_dim);
  cpu::matmul(x, B, w.q, nullptr, q.data());
  cpu::matmul(x, B, w.k, nullptr, k.data());
  cpu::silu(q.data(), B * key_dim);
  cpu::silu(k.data(), B * key_dim);
  Buffer u = buffer(B * value_dim), hidden = buffer(B * j.generator_hidden);
  Buffer kernels = buffer(B * value_dim * K), v = buffer(B * value_dim);
  cpu::matmul(x, B, w.v, nullptr, u.data());
  cpu::matmul(x, B, w.w1, nullptr, hidden.data());
  cpu::silu(hidden.data(), B * j.generator_hidden);
  cpu::matmul(hidden.data(), B, w.w2, w.w2_bias.data(), kernels.data());
  Buffer b_raw = buffer(B * H), a_raw = buffer(B * H), beta = buffer(B * H), g = buffer(B * H);
  cpu::matmul(x, B, w.b, nullptr, b_raw.data());
  cpu::matmul(x, B, w.a, nullptr, a_raw.data());
  cpu::jet_gates(b_raw.data(), a_raw.data(), w.A_log.data(), w.dt_bias.data(), B, H, beta.data(),
                 g.data());
  cpu::l2norm_rows(q.data(), B * H, dk, 1.0f / std::sqrt(float(dk)));
  cpu::l2norm_rows(k.data(), B * H, dk, 1.0f);
  // Conv state and recurrent state are per sequence: one decode step each.
  Buffer o = buffer(B * value_dim);
  for (int64_t b = 0; b < B; ++b) {
    LayerCache& cache = *caches[b];
    cpu::dconv(u.data() + b * value_dim, kernels.data() + b * value_dim * K, 1, value_dim, K,
               cache.conv.data(), v.data() + b * value_dim);
    cpu::gdn_recurrent(q.data() + b * key_dim, k.data() + b * key_dim, v.data() + b * value_dim,
                       g.data() + b * H, beta.data() + b * H, 1, H, dk, dv, cache.state.data(),
                       o.data() + b * value_dim);
  }
  Buffer gate = buffer(B * value_dim);
  cpu::matmul(x, B, w.g, nullptr, gate.data());
  cpu::gated_rmsnorm(o.data(), gate.data(), B, H, dv, w.o_norm.data(), j.norm_eps);
  cpu::matmul(o.data(), B, w.o, nullptr, out);
}

void mlp(const ModelConfig& c, const LayerWeights& w, const float* x, int64_t T, float* out) {
  const int64_t I = c.intermediate;
  Buffer gate = buffer(T * I), up = buffer(T * I);
  cpu::matmul(x, T, w.gate, nullptr, gate.data());
  cpu::matmul(x, T, w.up, nullptr, up.data());
  cpu::silu_mul(gate.data(), up.data(), T * I, gate.data());
  cpu::matmul(gate.data(), T, w.down, nullptr, out);
}

}  // namespace jetlm::layers
