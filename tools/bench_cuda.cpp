#include "bench_cuda.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "backend/cuda/cuda_model.h"
#include "core/error.h"

namespace jetlm::cli {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

bool cuda_bench_available() { return true; }

void run_cuda_bench(const Model& model, const CudaBenchArgs& args) {
  cuda::require_device();
  const ModelConfig& c = model.config();
  int64_t context = 0;
  for (int64_t p : args.prompt_lens) context = std::max(context, p + args.gen + 2);
  for (int64_t d : args.depths) context = std::max(context, d + args.gen + 2);
  if (context > c.max_position)
    throw_error("jetlm bench", "prompt/depth + generated tokens (" + std::to_string(context) +
                                   ") exceed the model's context " + std::to_string(c.max_position));
  cuda::CudaModelOptions opt;
  opt.max_slots = int(args.batch);
  opt.context_limit = context;
  opt.prefill_chunk = args.prefill_chunk;
  opt.cuda_graphs = args.cuda_graphs;
  const auto t_load = Clock::now();
  cuda::CudaModel gpu(model, opt);
  const double bandwidth = cuda::measure_read_bandwidth_gb_s();
  const double tflops = cuda::measure_bf16_gemm_tflops();
  if (!args.json) {
    std::printf("device: %s; copy bandwidth %.0f GB/s, bf16 cuBLAS GEMM %.0f TFLOP/s; weights %.2f GB uploaded in "
                "%.1f s\n", cuda::device_description().c_str(), bandwidth, tflops, double(gpu.weight_bytes()) / 1e9,
                seconds_since(t_load));
    std::printf("%-18s %8s %6s %6s %12s %12s %10s %8s %8s\n", "model", "context", "gen", "batch", "prefill t/s",
                "decode t/s", "cache MB", "dec roof", "pre roof");
  }
  std::mt19937 rng(42);
  std::vector<int> slots(size_t(args.batch));
  for (int64_t b = 0; b < args.batch; ++b) slots[size_t(b)] = int(b);
  std::vector<cuda::DeviceSampling> greedy(size_t(args.batch));

  // One row per prompt length (prefill measured, then decode from there) and per depth (decode
  // only, synthetic cache contents).
  struct Row { int64_t context; bool prefill; };
  std::vector<Row> rows;
  for (int64_t p : args.prompt_lens) rows.push_back({p, true});
  for (int64_t d : args.depths) rows.push_back({d, false});
  for (const Row& row : rows) {
    double prefill_tps = 0, prefill_frac = 0;
    if (row.prefill) {
      std::vector<int32_t> ids(size_t(row.context));
      for (int32_t& id : ids) id = int32_t(rng() % uint32_t(c.vocab));
      std::vector<float> logits(size_t(c.vocab));
      gpu.reset_slot(0);
      gpu.prefill(0, ids.data(), std::min<int64_t>(row.context, 64), logits.data());  // warm-up
      gpu.reset_slot(0);
      const auto t0 = Clock::now();
      gpu.prefill(0, ids.data(), row.context, logits.data());
      const double s = seconds_since(t0);
      prefill_tps = double(row.context) / s;
      double flops = 2.0 * double(c.vocab) * c.hidden;
      for (int64_t p = 0; p < row.context; ++p) flops += layer_flops_per_token(c, p);
      prefill_frac = flops / s / (tflops * 1e12);
    }
    for (int64_t b = 0; b < args.batch; ++b) gpu.fill_synthetic(int(b), row.context, uint64_t(b) + 1);
    std::vector<int32_t> tokens(size_t(args.batch));
    for (int64_t b = 0; b < args.batch; ++b) tokens[size_t(b)] = int32_t((b * 7919) % c.vocab);
    // Two warm-up steps (the first captures the CUDA graph), then the timed ones.
    for (int w = 0; w < 2; ++w) gpu.decode_sample(slots.data(), tokens.data(), args.batch, greedy.data(), tokens.data());
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < args.gen; ++i)
      gpu.decode_sample(slots.data(), tokens.data(), args.batch, greedy.data(), tokens.data());
    const double s = seconds_since(t0);
    const double decode_tps = double(args.batch * args.gen) / s;
    // Bytes one step must move: every weight once, each sequence's cache read (KV) and state read+written.
    const int64_t mid = row.context + 2 + args.gen / 2;
    const int64_t cache_seq = gpu.cache_bytes_per_sequence(mid);
    int64_t state_seq = 0;
    for (LayerKind k : c.layer_types)
      if (k == LayerKind::Jet)
        state_seq += (int64_t(c.jet.num_heads) * c.jet.head_k_dim * c.jet.head_v_dim + int64_t(c.jet.conv_size - 1) * c.jet.value_dim()) * 4;
    const double step_bytes = double(gpu.weight_bytes()) + double(args.batch) * double(cache_seq + state_seq);
    const double decode_frac = step_bytes / (s / double(args.gen)) / (bandwidth * 1e9);
    if (args.json) {
      std::printf("{\"model\": \"%s\", \"device\": \"cuda\", \"prompt_len\": %lld, \"prefill_measured\": %s, "
                  "\"gen_tokens\": %lld, \"batch\": %lld, \"prefill_tok_s\": %.1f, \"decode_tok_s\": %.1f, "
                  "\"cache_bytes_per_seq\": %lld, \"weight_bytes\": %lld, \"mem_bw_gb_s\": %.1f, "
                  "\"bf16_peak_tflop_s\": %.1f, \"decode_roofline_frac\": %.4f, \"prefill_roofline_frac\": %.4f, "
                  "\"cuda_graphs\": %s}\n",
                  args.name.c_str(), (long long)row.context, row.prefill ? "true" : "false", (long long)args.gen,
                  (long long)args.batch, prefill_tps, decode_tps, (long long)gpu.cache_bytes_per_sequence(row.context),
                  (long long)gpu.weight_bytes(), bandwidth, tflops, decode_frac, prefill_frac,
                  args.cuda_graphs ? "true" : "false");
    } else {
      char pre[32] = "-", pre_frac[32] = "-";
      if (row.prefill) {
        std::snprintf(pre, sizeof pre, "%.0f", prefill_tps);
        std::snprintf(pre_frac, sizeof pre_frac, "%.1f%%", 100 * prefill_frac);
      }
      std::printf("%-18s %8lld %6lld %6lld %12s %12.1f %10.2f %7.1f%% %8s\n", args.name.c_str(),
                  (long long)row.context, (long long)args.gen, (long long)args.batch, pre, decode_tps,
                  double(gpu.cache_bytes_per_sequence(row.context)) / 1e6, 100 * decode_frac, pre_frac);
    }
    std::fflush(stdout);
  }
}

}  // namespace jetlm::cli
