// Forward composition of the layer kinds: which ops run in which order on which weights.
// All arithmetic is in backend/ (cpu:: ops). x is the normed layer input [T, D], float32.
#pragma once

#include <cstdint>

#include "memory/hybrid_cache.h"
#include "model/config.h"
#include "model/weights.h"

namespace jetlm::layers {

// attn / swa mixer for tokens at positions pos0 .. pos0+T-1; appends to the layer's cache.
void attention(const ModelConfig& c, LayerKind kind, const AttnWeights& w, LayerCache& cache,
               int64_t pos0, const float* x, int64_t T, float* out /*[T, D]*/);

// JetBlock mixer; `recurrent` forces the token-by-token delta rule (decode uses it for T == 1).
void jet(const ModelConfig& c, const JetWeights& w, LayerCache& cache, const float* x, int64_t T,
         bool recurrent, float* out /*[T, D]*/);

// SwiGLU MLP.
void mlp(const ModelConfig& c, const LayerWeights& w, const float* x, int64_t T, float* out);

}  // namespace jetlm::layers
