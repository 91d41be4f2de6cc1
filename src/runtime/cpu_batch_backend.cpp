#include "jetlm/cpu_batch_backend.h"

#include <string>

#include "core/error.h"

namespace jetlm {

CpuBatchBackend::CpuBatchBackend(const Model& model, int max_slots, int64_t context_limit)
    : model_(model), context_limit_(context_limit == 0 ? model.config().max_position : context_limit) {
  if (max_slots < 1) throw_error("max slots", "expected at least 1, got " + std::to_string(max_slots));
  if (context_limit_ < 1 || context_limit_ > model.config().max_position)
    throw_error("context limit", "expected 1.." + std::to_string(model.config().max_position) +
                                     " (max_position_embeddings), got " + std::to_string(context_limit));
  slots_.reserve(size_t(max_slots));
  for (int i = 0; i < max_slots; ++i) slots_.push_back(model.new_cache());
}

void CpuBatchBackend::check_slot(int slot, const char* where) const {
  if (slot < 0 || slot >= max_slots())
    throw_error(where, "slot " + std::to_string(slot) + " out of range, expected 0.." + std::to_string(max_slots() - 1));
}

int64_t CpuBatchBackend::slot_tokens(int slot) const {
  check_slot(slot, "slot_tokens");
  return slots_[size_t(slot)].n_past();
}

void CpuBatchBackend::reset_slot(int slot) {
  check_slot(slot, "reset_slot");
  slots_[size_t(slot)].reset();
}

void CpuBatchBackend::prefill(int slot, const int32_t* ids, int64_t T, float* last_logits) {
  check_slot(slot, "prefill");
  if (T < 1) throw_error("prefill", "expected at least one token, got " + std::to_string(T));
  HybridCache& cache = slots_[size_t(slot)];
  if (cache.n_past() + T > context_limit_)
    throw_error("prefill", "slot " + std::to_string(slot) + " would hold " + std::to_string(cache.n_past() + T) +
                               " tokens, past the context limit of " + std::to_string(context_limit_));
  ForwardOptions last_only;
  last_only.all_logits = false;
  model_.forward(ids, T, cache, last_logits, last_only);  // checks the ids before changing anything
}

void CpuBatchBackend::decode(const int* slots, const int32_t* ids, int64_t B, float* logits) {
  if (B < 1) throw_error("decode", "expected at least one sequence, got " + std::to_string(B));
  std::vector<HybridCache*> caches(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    check_slot(slots[b], "decode");
    for (int64_t other = 0; other < b; ++other)
      if (slots[other] == slots[b]) throw_error("decode", "slot " + std::to_string(slots[b]) + " appears twice in the batch");
    HybridCache& cache = slots_[size_t(slots[b])];
    if (cache.n_past() + 1 > context_limit_)
      throw_error("decode", "slot " + std::to_string(slots[b]) + " is full (" + std::to_string(cache.n_past()) +
                                " tokens, the context limit)");
    caches[size_t(b)] = &cache;
  }
  model_.decode_batch(ids, B, caches.data(), logits);  // checks the ids before changing anything
}

int64_t CpuBatchBackend::cache_bytes() const {
  int64_t total = 0;
  for (const HybridCache& cache : slots_) total += cache.bytes();
  return total;
}

}  // namespace jetlm
