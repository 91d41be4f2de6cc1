// PostNAS export: a searched placement becomes a Jet-Nemotron model dir the engine runs. Full
// attention stays where the placement says (the teacher's weights), SWA where asked, JetBlock
// everywhere else; the JetBlocks start from the attention's projections and are trained by a short
// stage-1 distillation from the teacher (everything else frozen: embeddings, norms, MLPs, attention).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "postnas/supernet.h"

namespace jetlm::postnas {

struct ExportOptions {
  std::string teacher, data, out, device = "cpu";
  std::string full;        // layers kept as full attention, "0,3,5"
  std::string swa;         // layers that become sliding-window attention ("" = none)
  int64_t swa_window = 256;
  LinearBlockSizes sizes;  // JetBlock heads / dk / dv (0 = the teacher's heads and head_dim)
  int64_t steps = 500, batch = 16, seq = 512;
  double lr = 1e-3, min_lr = 1e-4, warmup = 25, clip = 1.0, task_mix = 0.3;
  std::string tasks = "kv-retrieval,passkey,arithmetic";
  std::string dtype = "bf16";  // of the written weights: bf16 or f32
  int64_t log_every = 25;
  uint64_t seed = 1;
  int threads = 0;
  std::function<void(const std::string&)> log;
};

struct ExportResult {
  double first_kl = 0, last_kl = 0, tokens_per_s = 0;
  int64_t trainable = 0;  // JetBlock parameters
};

// Writes OUT (config.json, model.safetensors, the teacher's tokenizer files, export.json).
ExportResult export_hybrid(const ExportOptions& options);

}  // namespace jetlm::postnas
