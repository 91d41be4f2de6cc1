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

// One decode step of B sequences (one token each), for batched decoding: the projections run on
// the B rows at once (each weight read once), while rope positions, the KV cache / SWA ring and the
// JetBlock conv and recurrent states are per sequence. caches[b] is sequence b's cache of this
// layer and pos[b] the position of its token. x [B, D], out [B, D]. Row b equals what
// attention()/jet() give for that sequence's token alone (to the matmul's float32 rounding).
void attention_batch(const ModelConfig& c, LayerKind kind, const AttnWeights& w,
                     LayerCache* const* caches, const int64_t* pos, const float* x, int64_t B,
                     float* out);
void jet_batch(const ModelConfig& c, const JetWeights& w, LayerCache* const* caches, const float* x,
               int64_t B, float* out);

// SwiGLU MLP (row-wise, so it serves batched decoding with T = B rows too).
void mlp(const ModelConfig& c, const LayerWeights& w, const float* x, int64_t T, float* out);

}  // namespace jetlm::layers
