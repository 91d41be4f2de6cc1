// Without JETLM_CUDA: `jetlm bench --device cuda` says how to get it.
#include "bench_cuda.h"
#include "core/error.h"

namespace jetlm::cli {
bool cuda_bench_available() { return false; }
void run_paper_bench(const PaperBenchArgs&) {
  throw Error("--paper: this jetlm was built without the CUDA backend (configure with -DJETLM_CUDA=ON)");
}
void run_cuda_bench(const Model&, const CudaBenchArgs&) {
  throw Error("--device cuda: this jetlm was built without the CUDA backend (configure with -DJETLM_CUDA=ON)");
}
}  // namespace jetlm::cli
