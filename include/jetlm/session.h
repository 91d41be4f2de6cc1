// A Session is one sequence being generated: its token history, its HybridCache and the logits
// of its last position. Feeding tokens continues the cache (a chat turn never re-prefills the
// history); generate() samples until a stop condition and reports each token to a callback.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "jetlm/batch_backend.h"
#include "jetlm/model.h"
#include "jetlm/sampling.h"

namespace jetlm {

struct GenerateOptions {
  SamplingParams sampling;
  int64_t max_new_tokens = 256;
  std::vector<int32_t> stop_ids;  // end-of-sequence tokens (not passed to on_token)
  int64_t prefill_chunk = 512;    // tokens per prefill forward
};

struct GenerateResult {
  std::vector<int32_t> tokens;     // generated, stop token excluded
  std::string finish_reason;       // "stop" (stop id or caller), "length", "context"
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

class Session {
 public:
  explicit Session(const Model& model);
  // A session on one slot of a batched backend (e.g. the CUDA engine): the slot is reset now and
  // holds this session's cache. snapshot()/restore() are not available on a backend slot.
  Session(BatchBackend& backend, int slot);

  const ModelConfig& config() const { return *config_; }
  const std::vector<int32_t>& history() const { return history_; }
  const HybridCache& cache() const { return cache_; }
  int64_t context_limit() const {
    return backend_ ? backend_->context_limit() : int64_t(config_->max_position);
  }

  // Prefills `ids` in chunks of `chunk` tokens after what the session already holds. Throws
  // jetlm::Error (and changes nothing) when an id is out of range or the context would overflow.
  // `progress(done, total)` is called after each chunk.
  void feed(std::span<const int32_t> ids, int64_t chunk = 512,
            const std::function<void(int64_t, int64_t)>& progress = {});

  // Samples up to max_new_tokens from the last logits; each new token is fed back. on_token
  // returns false to stop early (finish_reason "stop"). Needs at least one fed token.
  GenerateResult generate(const GenerateOptions& options,
                          const std::function<bool(int32_t)>& on_token = {});

  void reset();
  struct Snapshot {
    HybridCache::Snapshot cache;
    std::vector<int32_t> history;
    std::vector<float> last_logits;
  };
  Snapshot snapshot() const;
  void restore(const Snapshot& s);

 private:
  const Model* model_ = nullptr;        // CPU mode
  BatchBackend* backend_ = nullptr;     // backend-slot mode
  int slot_ = 0;
  const ModelConfig* config_;
  HybridCache cache_;                   // CPU mode's cache (empty in backend mode)
  std::vector<int32_t> history_;
  std::vector<float> last_logits_;  // [vocab], empty before the first feed
};

}  // namespace jetlm
