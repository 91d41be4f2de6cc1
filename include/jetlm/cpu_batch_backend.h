// CpuBatchBackend: the BatchBackend contract (jetlm/batch_backend.h) on the CPU engine. Each slot
// is a HybridCache of the model; prefill() runs Model::forward on one slot, decode() runs
// Model::decode_batch over the given slots, so a decode step reads every weight once for the
// whole batch.
#pragma once

#include <cstdint>
#include <vector>

#include "jetlm/batch_backend.h"
#include "jetlm/model.h"

namespace jetlm {

class CpuBatchBackend : public BatchBackend {
 public:
  // context_limit: most tokens a slot may hold; 0 = the model's max_position. Throws jetlm::Error
  // for max_slots < 1 or a limit outside 1..max_position.
  CpuBatchBackend(const Model& model, int max_slots, int64_t context_limit = 0);

  const ModelConfig& config() const override { return model_.config(); }
  int max_slots() const override { return int(slots_.size()); }
  int64_t context_limit() const override { return context_limit_; }
  int64_t slot_tokens(int slot) const override;
  void reset_slot(int slot) override;

  void prefill(int slot, const int32_t* ids, int64_t T, float* last_logits) override;
  void decode(const int* slots, const int32_t* ids, int64_t B, float* logits) override;

  // Bytes the slots' caches hold now (float32 storage), for metrics.
  int64_t cache_bytes() const;

 private:
  void check_slot(int slot, const char* where) const;
  const Model& model_;
  int64_t context_limit_;
  std::vector<HybridCache> slots_;
};

}  // namespace jetlm
