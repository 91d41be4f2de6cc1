// jetlm public API: load a model directory (or make one with random weights) and run forward
// passes over a sequence held in a HybridCache.
//
//   auto model = jetlm::Model::load("path/to/Jet-Nemotron-2B");
//   jetlm::HybridCache cache = model->new_cache();
//   std::vector<float> logits(n * model->config().vocab);
//   model->forward(ids.data(), n, cache, logits.data());       // prefill (any chunking works)
//   model->forward(&next, 1, cache, logits.data());             // decode one token
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "memory/hybrid_cache.h"
#include "model/config.h"
#include "model/weights.h"

namespace jetlm {

class Checkpoint;

struct ForwardOptions {
  // false: write only the last position's logits ([1, vocab]) and skip the LM head elsewhere.
  bool all_logits = true;
  // Run JetBlocks token by token (the decode form) even for T > 1; for tests.
  bool recurrent_jet = false;
  // Called with named intermediate results: "hidden" (the residual stream after layer `layer`,
  // [T, D]) and "final_norm" ([T, D], layer -1).
  std::function<void(const char* name, int layer, const float* data, int64_t rows, int64_t cols)>
      observer;
};

// How weights are held in memory.
enum class WeightFormat {
  AsStored,  // memory-mapped and used in the checkpoint's dtype (BF16/F16/F32, or a q8 checkpoint)
  Q8,        // quantized to 8 bits (blocks of 32, f16 scales) at load time
};

// Parses "as-stored"/"stored" or "q8"; throws jetlm::Error naming `flag` otherwise.
WeightFormat parse_weight_format(const std::string& text, const std::string& flag);

// Where as-stored weights live after loading.
enum class WeightPlacement {
  // Used in place from the memory-mapped files: starts at once from a warm page cache and shares
  // it between processes.
  Mapped,
  // Copied out of the checkpoint into the process's memory on 2 MiB pages (where the kernel grants
  // them); the files are then unmapped. A CPU decode step streams every weight, and a GEMV reads
  // them faster from 2 MiB pages; getting the pages can cost seconds per GiB at load (docs/perf.md).
  Memory,
};

class Model {
 public:
  // Loads DIR/config.json and the safetensors weights. q8 (quantized at load) weights are always in
  // memory (on 2 MiB pages with Memory); `placement` says where as-stored ones live (with q8: the
  // few matrices kept unquantized). Throws jetlm::Error.
  static std::unique_ptr<Model> load(const std::string& model_dir, WeightFormat format = WeightFormat::AsStored,
                                     WeightPlacement placement = WeightPlacement::Mapped);
  // A model with random weights in `dtype` (F32, BF16 or F16; I8 = q8 of random bf16 weights),
  // for benchmarks and tests. Memory: the weights on 2 MiB pages, as a loaded checkpoint's with
  // WeightPlacement::Memory (Mapped: ordinary pages).
  static std::unique_ptr<Model> random(const ModelConfig& config, DType dtype, uint64_t seed,
                                       WeightPlacement placement = WeightPlacement::Mapped);
  ~Model();

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  int64_t weight_bytes() const;  // bytes of all weights as stored (tied head counted once)
  HybridCache new_cache() const { return HybridCache(config_); }

  // Runs T new tokens of one sequence, continuing `cache` (positions cache.n_past() onwards),
  // and advances the cache. logits: [T, vocab] (or [1, vocab] with all_logits = false); may be
  // null. Ids outside [0, vocab) throw jetlm::Error before anything changes.
  void forward(const int32_t* ids, int64_t T, HybridCache& cache, float* logits,
               const ForwardOptions& options = {}) const;

  // One decode step of B sequences at once: ids[b] continues caches[b] (B distinct caches, each
  // advanced by one token). Weight matmuls run on the B rows together (weights read once per step);
  // rope positions, attention over each sequence's own KV cache / SWA ring and the JetBlock conv
  // and recurrent states are per sequence. logits: [B, vocab] (may be null). Row b equals
  // forward(&ids[b], 1, *caches[b], ...) to float32 rounding (cpu::matmul with B > 1 sums in another
  // order; q8 weights take the integer GEMV, activations rounded to 8 bits, for up to 8 rows, so q8
  // rows of batches up to 8 equal the one-token forward exactly and larger q8 batches differ by
  // that quantization). Ids outside [0, vocab) throw jetlm::Error before anything changes.
  void decode_batch(const int32_t* ids, int64_t B, HybridCache* const* caches, float* logits) const;

 private:
  Model() = default;
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;  // keeps mapped weights alive (null once all are copied)
  WeightStorage owned_;  // random, quantized or copied weights
  ModelWeights weights_;
};

}  // namespace jetlm
