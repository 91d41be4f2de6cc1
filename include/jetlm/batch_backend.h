// BatchBackend: one model's compute over a fixed set of sequence slots, the interface the
// scheduler (server, batched generation, benchmarks) drives. Each slot holds one sequence's
// hybrid cache (KV pages / SWA ring / JetBlock state). Implementations: the CPU engine
// (runtime/cpu_batch_backend) and the CUDA engine (backend/cuda/cuda_model).
//
// Contract:
//  - slots are 0 .. max_slots()-1; a slot starts empty; reset_slot() empties it again.
//  - prefill() appends T tokens to one slot (any chunking gives the same result) and writes the
//    logits of the last of them ([vocab]; may be null).
//  - decode() appends one token to each of B distinct slots and writes their logits [B, vocab];
//    the result for a slot equals what prefill() of that one token would give.
//  - a slot may not grow past context_limit(); ids must be in [0, vocab). Both throw jetlm::Error
//    before anything changes.
#pragma once

#include <cstdint>

#include "model/config.h"

namespace jetlm {

class BatchBackend {
 public:
  virtual ~BatchBackend() = default;

  virtual const ModelConfig& config() const = 0;
  virtual int max_slots() const = 0;
  virtual int64_t context_limit() const = 0;
  virtual int64_t slot_tokens(int slot) const = 0;  // tokens the slot has consumed
  virtual void reset_slot(int slot) = 0;

  virtual void prefill(int slot, const int32_t* ids, int64_t T, float* last_logits) = 0;
  virtual void decode(const int* slots, const int32_t* ids, int64_t B, float* logits) = 0;
};

}  // namespace jetlm
