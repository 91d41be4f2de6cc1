#include "bench_cuda.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cuda_runtime.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "backend/cuda/cuda_model.h"
#include "core/error.h"
#include "model/presets.h"
#include "model/weights.h"

namespace jetlm::cli {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

bool cuda_bench_available() { return true; }

namespace {
cuda::KvCacheType parse_kv_cache(const std::string& name) {
  if (name == "auto") return cuda::KvCacheType::Auto;
  if (name == "f32") return cuda::KvCacheType::F32;
  if (name == "bf16") return cuda::KvCacheType::BF16;
  throw_error("--kv-cache", "'" + name + "' is not one of auto, f32, bf16");
}
}  // namespace

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
  opt.kv_cache = parse_kv_cache(args.kv_cache);
  const auto t_load = Clock::now();
  cuda::CudaModel gpu(model, opt);
  const double bandwidth = cuda::measure_read_bandwidth_gb_s();
  const double tflops = cuda::measure_bf16_gemm_tflops();
  if (!args.json) {
    std::printf("device: %s; copy bandwidth %.0f GB/s, bf16 cuBLAS GEMM %.0f TFLOP/s; weights %.2f GB uploaded in "
                "%.1f s; %s KV cache\n", cuda::device_description().c_str(), bandwidth, tflops,
                double(gpu.weight_bytes()) / 1e9, seconds_since(t_load), dtype_name(gpu.kv_dtype()));
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
      // Warm-up with a full chunk: one-time work (GEMM plans and their tuning) stays out of the timing.
      gpu.prefill(0, ids.data(), std::min<int64_t>(row.context, opt.prefill_chunk), logits.data());
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

namespace {

struct PaperRow {
  std::string model;
  int64_t context = 0, batch = 0, chunk = 0, cache_bytes = 0;
  double decode_tps = 0, prefill_tps = 0, decode_frac = 0, prefill_frac = 0;
  std::string note;
};

}  // namespace

void run_paper_bench(const PaperBenchArgs& args) {
  cuda::require_device();
  const double bandwidth = cuda::measure_read_bandwidth_gb_s();
  const double tflops = cuda::measure_bf16_gemm_tflops();
  size_t free0 = 0, total = 0;
  if (cudaMemGetInfo(&free0, &total) != cudaSuccess) throw Error("cudaMemGetInfo failed");
  std::printf("jetlm bench --paper on %s: copy bandwidth %.0f GB/s, bf16 GEMM %.0f TFLOP/s, %.1f GiB free\n",
              cuda::device_description().c_str(), bandwidth, tflops, double(free0) / (1 << 30));
  const DType kv_dtype = cuda::CudaModel::kv_cache_dtype(parse_kv_cache(args.kv_cache), true);
  std::printf("random bf16 weights, %s KV cache, fp32 recurrent state, %lld generated tokens, prefill chunk %lld;\n"
              "prefill tok/s is one chunk timed at half the context (prefill time is linear in depth per chunk).\n\n",
              dtype_name(kv_dtype), (long long)args.gen, (long long)args.prefill_chunk);
  std::printf("%-16s %8s %6s %10s %12s %8s %12s %8s %8s\n", "model", "context", "batch", "cache MB", "decode t/s",
              "dec roof", "prefill t/s", "pre roof", "speedup");
  std::vector<PaperRow> rows;
  std::map<int64_t, PaperRow> baseline;  // qwen3-1.7b per context
  for (const std::string& name : args.models) {
    ModelConfig config = load_model_config(name);
    const int64_t longest = *std::max_element(args.contexts.begin(), args.contexts.end()) + args.gen + 2;
    // Random weights have no trained length limit: let every preset run the paper's contexts.
    config.max_position = int(std::max<int64_t>(config.max_position, longest));
    auto model = Model::random(config, DType::BF16, 1);
    for (int64_t context : args.contexts) {
      PaperRow row;
      row.model = name;
      row.context = context;
      row.chunk = args.prefill_chunk;
      const int64_t limit = context + args.gen + 2;
      row.cache_bytes = cuda::CudaModel::cache_bytes_for(config, limit, 16, kv_dtype);
      // The largest batch whose caches, logits and activation rows fit beside the weights (3 GiB kept
      // for cuBLAS, graphs and workspaces).
      const double budget = double(free0) - double(model->weight_bytes()) - 3.0 * double(1 << 30) -
                            double(args.prefill_chunk) * double(cuda::CudaModel::scratch_bytes_per_row(config)) -
                            double(limit) * double(config.n_kv_heads) * config.head_dim * 8.0;
      const double per_seq = double(row.cache_bytes) + double(config.vocab) * 4.0 +
                             double(cuda::CudaModel::scratch_bytes_per_row(config));
      row.batch = std::min<int64_t>(args.max_batch, int64_t(budget / per_seq));
      if (row.batch < 1) {
        row.note = "does not fit";
        std::printf("%-16s %8lld %6s %10.1f %12s\n", name.c_str(), (long long)context, "-", double(row.cache_bytes) / 1e6,
                    "does not fit");
        rows.push_back(row);
        continue;
      }
      cuda::CudaModelOptions opt;
      opt.max_slots = int(row.batch);
      opt.context_limit = limit;
      opt.prefill_chunk = args.prefill_chunk;
      opt.kv_cache = parse_kv_cache(args.kv_cache);
      cuda::CudaModel gpu(*model, opt);
      // Prefill: one chunk at half the context, after a warm-up chunk.
      std::mt19937 rng{static_cast<uint32_t>(context)};
      std::vector<int32_t> ids(size_t(args.prefill_chunk));
      for (int32_t& id : ids) id = int32_t(rng() % uint32_t(config.vocab));
      const int64_t depth = std::max<int64_t>(0, context / 2 - args.prefill_chunk / 2);
      gpu.fill_synthetic(0, depth, 3);
      gpu.prefill(0, ids.data(), args.prefill_chunk, nullptr);
      gpu.fill_synthetic(0, depth, 3);
      const auto t0 = Clock::now();
      gpu.prefill(0, ids.data(), args.prefill_chunk, nullptr);
      const double prefill_s = seconds_since(t0);
      row.prefill_tps = double(args.prefill_chunk) / prefill_s;
      double flops = 0;
      for (int64_t p = depth; p < depth + args.prefill_chunk; ++p) flops += layer_flops_per_token(config, p);
      row.prefill_frac = flops / prefill_s / (tflops * 1e12);
      // Decode: every slot at the full context, args.gen steps after two warm-up steps.
      for (int64_t b = 0; b < row.batch; ++b) gpu.fill_synthetic(int(b), context, uint64_t(b) + 1);
      std::vector<int> slots(size_t(row.batch));
      std::vector<int32_t> tokens(size_t(row.batch));
      for (int64_t b = 0; b < row.batch; ++b) {
        slots[size_t(b)] = int(b);
        tokens[size_t(b)] = int32_t((b * 7919) % config.vocab);
      }
      std::vector<cuda::DeviceSampling> greedy(size_t(row.batch));
      for (int w = 0; w < 2; ++w) gpu.decode_sample(slots.data(), tokens.data(), row.batch, greedy.data(), tokens.data());
      const auto t1 = Clock::now();
      const int64_t steps = args.gen - 2;
      for (int64_t i = 0; i < steps; ++i)
        gpu.decode_sample(slots.data(), tokens.data(), row.batch, greedy.data(), tokens.data());
      const double decode_s = seconds_since(t1);
      row.decode_tps = double(row.batch * steps) / decode_s;
      int64_t state_seq = 0;
      for (LayerKind k : config.layer_types)
        if (k == LayerKind::Jet) state_seq += int64_t(config.jet.num_heads) * config.jet.head_k_dim * config.jet.head_v_dim * 4;
      const double step_bytes = double(gpu.weight_bytes()) + double(row.batch) * double(row.cache_bytes + state_seq);
      row.decode_frac = step_bytes / (decode_s / double(steps)) / (bandwidth * 1e9);
      if (name == "qwen3-1.7b") baseline[context] = row;
      rows.push_back(row);
      std::printf("%-16s %8lld %6lld %10.1f %12.1f %7.1f%% %12.0f %7.1f%%\n", name.c_str(), (long long)context,
                  (long long)row.batch, double(row.cache_bytes) / 1e6, row.decode_tps, 100 * row.decode_frac,
                  row.prefill_tps, 100 * row.prefill_frac);
      std::fflush(stdout);
    }
  }
  // Speedups over Qwen3-1.7B at the same context, and the CSV.
  std::printf("\n%-16s %8s %16s %16s\n", "model", "context", "decode speedup", "prefill speedup");
  const std::string csv = args.csv.empty() ? "bench/results/paper.csv" : args.csv;
  std::filesystem::create_directories(std::filesystem::path(csv).parent_path().empty()
                                          ? std::filesystem::path(".")
                                          : std::filesystem::path(csv).parent_path());
  std::ofstream out(csv);
  if (!out) throw_error(csv, "cannot write the CSV");
  out << "model,context,batch,prefill_chunk,cache_mb_per_seq,decode_tok_s,prefill_tok_s,decode_roofline,"
         "prefill_roofline,decode_speedup_vs_qwen3,prefill_speedup_vs_qwen3,device\n";
  for (const PaperRow& r : rows) {
    const auto base = baseline.find(r.context);
    const bool have = base != baseline.end() && base->second.decode_tps > 0 && r.decode_tps > 0;
    const double ds = have ? r.decode_tps / base->second.decode_tps : 0.0;
    const double ps = have ? r.prefill_tps / base->second.prefill_tps : 0.0;
    if (have) std::printf("%-16s %8lld %15.2fx %15.2fx\n", r.model.c_str(), (long long)r.context, ds, ps);
    out << r.model << ',' << r.context << ',' << r.batch << ',' << r.chunk << ',' << double(r.cache_bytes) / 1e6 << ','
        << r.decode_tps << ',' << r.prefill_tps << ',' << r.decode_frac << ',' << r.prefill_frac << ',' << ds << ','
        << ps << ",\"" << cuda::device_description() << "\"\n";
  }
  std::printf("\nwrote %s\n", csv.c_str());
}

}  // namespace jetlm::cli
