// `jetlm bench --device cuda`: the GPU engine's prefill and batched decode throughput, with the
// GPU's measured bandwidth and bf16 tensor-core peak as rooflines (tools/bench_cuda.cpp, built
// with JETLM_CUDA=ON).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "jetlm/model.h"

namespace jetlm::cli {

struct CudaBenchArgs {
  std::string name;
  std::vector<int64_t> prompt_lens;
  std::vector<int64_t> depths;
  int64_t gen = 32;
  int64_t batch = 1;
  int64_t prefill_chunk = 2048;
  bool cuda_graphs = true;
  bool json = false;
  std::string kv_cache = "auto";  // auto, f32 or bf16 (cuda::KvCacheType)
};

// FLOPs of one token's pass through the layers at context position `pos` (tools/cmd_bench.cpp).
double layer_flops_per_token(const ModelConfig& c, int64_t pos);

// `jetlm bench --paper`: the paper's throughput table (SPEC.md section 3) on this GPU.
struct PaperBenchArgs {
  std::vector<std::string> models = {"jet-nemotron-2b", "jet-nemotron-4b", "qwen3-1.7b", "qwen2.5-1.5b"};
  std::vector<int64_t> contexts = {4096, 8192, 16384, 32768, 65536, 131072, 262144};
  int64_t gen = 128;
  int64_t prefill_chunk = 2048;
  int64_t max_batch = 1024;
  std::string kv_cache = "auto";  // random bf16 weights: auto is a bf16 KV cache, as the paper's stack
  std::string csv;  // where to write the table as CSV ("" = bench/results/paper.csv)
};

bool cuda_bench_available();
void run_paper_bench(const PaperBenchArgs& args);  // false when jetlm was built without JETLM_CUDA
void run_cuda_bench(const Model& model, const CudaBenchArgs& args);

}  // namespace jetlm::cli
