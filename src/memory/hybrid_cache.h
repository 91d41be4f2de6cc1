// HybridCache: the per-sequence state of every layer, by layer kind (SPEC.md section 1).
//   attn: K and V of every past token, [n_past, Hkv, hd] each, float32
//   swa:  a ring of the last W tokens' K and V, slot = position % W
//   jet:  recurrent state S [H, dk, dv] (float32) + the last K-1 pre-conv values [K-1, value_dim]
// A recurrent state cannot be truncated, so rollback goes through snapshot()/restore().
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace jetlm {

struct LayerCache {
  LayerKind kind = LayerKind::Attn;
  std::vector<float> k, v;       // attn: grows by Hkv*hd per token; swa: ring of W*Hkv*hd
  std::vector<float> state;      // jet: [H, dk, dv]
  std::vector<float> conv;       // jet: [K-1, value_dim], oldest first
};

class HybridCache {
 public:
  explicit HybridCache(const ModelConfig& config);

  int64_t n_past() const { return n_past_; }  // tokens already consumed
  void advance(int64_t n_tokens) { n_past_ += n_tokens; }
  LayerCache& layer(int il) { return layers_[size_t(il)]; }
  const LayerCache& layer(int il) const { return layers_[size_t(il)]; }

  void reset();  // back to an empty sequence, keeping allocations
  // Benchmarks: the cache of a sequence that has consumed `n_tokens`, with random contents, so
  // decode speed at any depth can be measured without prefilling that many tokens.
  void fill_synthetic(int64_t n_tokens, uint64_t seed);
  // Bytes this cache holds now (float32 storage).
  int64_t bytes() const;
  // Bytes a sequence of `n_tokens` needs with `bytes_per_element`-sized elements: the quantity
  // the max-batch planner and the hardware-aware search use.
  static int64_t bytes_for(const ModelConfig& config, int64_t n_tokens, int64_t bytes_per_element);

  struct Snapshot {
    int64_t n_past = 0;
    std::vector<LayerCache> layers;
  };
  Snapshot snapshot() const { return {n_past_, layers_}; }
  void restore(const Snapshot& snapshot);

 private:
  const ModelConfig* config_;
  int64_t n_past_ = 0;
  std::vector<LayerCache> layers_;
};

}  // namespace jetlm
