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
};

// FLOPs of one token's pass through the layers at context position `pos` (tools/cmd_bench.cpp).
double layer_flops_per_token(const ModelConfig& c, int64_t pos);

bool cuda_bench_available();  // false when jetlm was built without JETLM_CUDA
void run_cuda_bench(const Model& model, const CudaBenchArgs& args);

}  // namespace jetlm::cli
