#include "memory/hybrid_cache.h"

#include <random>

#include <algorithm>

#include "core/error.h"

namespace jetlm {

HybridCache::HybridCache(const ModelConfig& config) : config_(&config) {
  layers_.resize(size_t(config.n_layers));
  for (int il = 0; il < config.n_layers; ++il) layers_[size_t(il)].kind = config.layer_types[size_t(il)];
  reset();
}

void HybridCache::reset() {
  const ModelConfig& c = *config_;
  n_past_ = 0;
  const int64_t kv_row = int64_t(c.n_kv_heads) * c.head_dim;
  for (LayerCache& L : layers_) {
    switch (L.kind) {
      case LayerKind::Attn:
        L.k.clear();
        L.v.clear();
        break;
      case LayerKind::Swa:
        L.k.assign(size_t(int64_t(c.swa_window) * kv_row), 0.0f);
        L.v.assign(size_t(int64_t(c.swa_window) * kv_row), 0.0f);
        break;
      case LayerKind::Jet:
        L.state.assign(size_t(int64_t(c.jet.num_heads) * c.jet.head_k_dim * c.jet.head_v_dim), 0.0f);
        L.conv.assign(size_t(int64_t(c.jet.conv_size - 1) * c.jet.value_dim()), 0.0f);
        break;
    }
  }
}

int64_t HybridCache::bytes() const {
  int64_t n = 0;
  for (const LayerCache& L : layers_)
    n += int64_t(L.k.size() + L.v.size() + L.state.size() + L.conv.size()) * int64_t(sizeof(float));
  return n;
}

int64_t HybridCache::bytes_for(const ModelConfig& c, int64_t n_tokens, int64_t bytes_per_element) {
  const int64_t kv_row = 2 * int64_t(c.n_kv_heads) * c.head_dim;  // K and V
  int64_t elements = 0;
  for (LayerKind kind : c.layer_types) {
    switch (kind) {
      case LayerKind::Attn: elements += n_tokens * kv_row; break;
      case LayerKind::Swa: elements += std::min<int64_t>(n_tokens, c.swa_window) * kv_row; break;
      case LayerKind::Jet:
        // The recurrent state stays float32 whatever the KV element size.
        elements += int64_t(c.jet.num_heads) * c.jet.head_k_dim * c.jet.head_v_dim * 4 / bytes_per_element;
        elements += int64_t(c.jet.conv_size - 1) * c.jet.value_dim();
        break;
    }
  }
  return elements * bytes_per_element;
}

void HybridCache::restore(const Snapshot& snapshot) {
  JETLM_ASSERT(snapshot.layers.size() == layers_.size(), "snapshot of another model");
  n_past_ = snapshot.n_past;
  layers_ = snapshot.layers;
}

void HybridCache::fill_synthetic(int64_t n_tokens, uint64_t seed) {
  reset();
  const ModelConfig& c = *config_;
  const int64_t kv_row = int64_t(c.n_kv_heads) * c.head_dim;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  auto fill = [&](std::vector<float>& v, float scale) {
    for (float& x : v) x = scale * dist(rng);
  };
  for (LayerCache& L : layers_) {
    switch (L.kind) {
      case LayerKind::Attn:
        L.k.resize(size_t(n_tokens * kv_row));
        L.v.resize(size_t(n_tokens * kv_row));
        fill(L.k, 1.0f);
        fill(L.v, 1.0f);
        break;
      case LayerKind::Swa:
        fill(L.k, 1.0f);
        fill(L.v, 1.0f);
        break;
      case LayerKind::Jet:
        fill(L.state, 0.01f);
        fill(L.conv, 1.0f);
        break;
    }
  }
  n_past_ = n_tokens;
}

}  // namespace jetlm
