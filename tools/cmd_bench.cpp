// jetlm bench: prefill and decode speed of a model (or of a config with random weights), with
// the machine's measured read bandwidth and GEMM peak, so every number comes with its roofline.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "backend/ops.h"
#include "bench_cuda.h"
#include "cli_util.h"
#include "commands.h"
#include "jetlm/model.h"

namespace jetlm::cli {

// Matmuls and attention; the LM head is counted where it runs (declared in bench_cuda.h).
double layer_flops_per_token(const ModelConfig& c, int64_t pos) {
  const int64_t lm_head = c.tie_embeddings ? 0 : int64_t(c.vocab) * c.hidden;
  double f = 2.0 * double(parameter_count(c) - int64_t(c.vocab) * c.hidden - lm_head);
  for (LayerKind k : c.layer_types) {
    if (k == LayerKind::Jet) continue;
    const int64_t ctx = k == LayerKind::Swa ? std::min<int64_t>(pos, c.swa_window) : pos;
    f += 4.0 * double(ctx) * c.n_heads * c.head_dim;
  }
  return f;
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct BenchArgs {
  std::string model_dir, config;
  bool random_weights = false;
  std::string dtype = "bf16";
  std::string weights = "as-stored";  // --model: as-stored or q8 (quantized at load time)
  std::string prompt_lens = "128";
  std::string depths;  // decode at these cache depths (synthetic cache contents)
  int64_t gen = 32;
  int64_t batch = 1;
  int threads = 0;
  bool json = false;
  std::string device = "cpu";
  int64_t chunk = 2048;   // cuda: prefill chunk
  bool no_graphs = false; // cuda: launch the decode step directly
  bool paper = false;
  HugepagesFlags hugepages;
  std::string contexts, csv;
  bool gen_given = false;
  bool dtype_given = false, weights_given = false;
  std::string kv_cache = "auto";  // cuda
};

// Read bandwidth: best of several passes of a threaded sum over a buffer far larger than the
// caches (GB/s). The buffer stays allocated so the bandwidth can be sampled again after each
// decode run: on shared VMs it changes regime for minutes at a time, and a run's roofline uses
// the higher of the samples before and after it (never a fraction from a slow probe next to a
// fast run).
class BandwidthProbe {
 public:
  explicit BandwidthProbe(bool huge_pages)
      // The same kind of pages the weights are on (2 MiB when they were copied onto them).
      : bytes_(allocate_host_bytes(kFloats * sizeof(float), huge_pages)) {
    float* buffer = reinterpret_cast<float*>(bytes_.get());
#pragma omp parallel for num_threads(cpu::num_threads())
    for (size_t i = 0; i < kFloats; ++i) buffer[i] = float(i & 7);
  }
  double measure() const {
    const float* buffer = reinterpret_cast<const float*>(bytes_.get());
    double best = 0;
    // Without and with software prefetch at two distances: the best plain read, since the decode
    // GEMVs prefetch their weights (on the 2-vCPU Xeon VM, 2026-12-07: 1 KB ahead read ~10%
    // faster than none).
    for (int rep = 0; rep < 6; ++rep) {
      const auto t0 = Clock::now();
      const double total = cpu::read_all(buffer, int64_t(kFloats), kProbePrefetchBytes[rep % 3]);
      const double s = seconds_since(t0);
      if (total < 0) std::printf(" ");  // keep the sum alive
      best = std::max(best, double(kFloats * sizeof(float)) / s / 1e9);
    }
    return best;
  }

 private:
  static constexpr size_t kFloats = size_t(1) << 28;  // 1 GiB
  static constexpr int64_t kProbePrefetchBytes[3] = {0, 1024, 2560};
  HostBytes bytes_;
};

// Peak of the engine's own prefill GEMM (bf16 weights) in GFLOP/s.
double measure_gemm_peak() {
  const int64_t T = 256, K = 2048, N = 2048;
  std::vector<uint16_t> w(size_t(N * K));
  std::vector<float> x(size_t(T * K)), y(size_t(T * N));
  std::mt19937 rng(7);
  for (auto& v : w) v = f32_to_bf16(float(rng() % 1000) / 1000.0f - 0.5f);
  for (auto& v : x) v = float(rng() % 1000) / 1000.0f - 0.5f;
  const Matrix W{w.data(), DType::BF16, N, K};
  double best = 0;
  for (int rep = 0; rep < 10; ++rep) {
    const auto t0 = Clock::now();
    cpu::matmul(x.data(), T, W, nullptr, y.data());
    best = std::max(best, 2.0 * double(T * K * N) / seconds_since(t0) / 1e9);
  }
  return best;
}

DType parse_weight_dtype(const std::string& name) {
  if (name == "bf16") return DType::BF16;
  if (name == "f16") return DType::F16;
  if (name == "f32") return DType::F32;
  if (name == "q8") return DType::I8;  // random bf16 weights quantized to q8
  throw_error("--dtype", "'" + name + "' is not one of bf16, f16, f32, q8");
}

void run_bench(const BenchArgs& args) {
  if (args.threads > 0) cpu::set_num_threads(args.threads);
  if (args.paper) {
    PaperBenchArgs paper;
    if (!args.config.empty()) {
      paper.models.clear();
      for (size_t a = 0, b; a <= args.config.size(); a = b + 1) {
        b = args.config.find(',', a);
        if (b == std::string::npos) b = args.config.size();
        if (b > a) paper.models.push_back(args.config.substr(a, b - a));
      }
    }
    if (!args.contexts.empty()) {
      paper.contexts.clear();
      for (int32_t v : parse_id_list(args.contexts, "--contexts")) {
        if (v < 1) throw_error("--contexts", "contexts must be positive");
        paper.contexts.push_back(v);
      }
    }
    if (args.gen_given) paper.gen = std::max<int64_t>(args.gen, 3);
    if (args.batch > 1) paper.max_batch = args.batch;
    paper.prefill_chunk = args.chunk;
    paper.csv = args.csv;
    paper.kv_cache = args.kv_cache;
    return run_paper_bench(paper);
  }
  if (args.device != "cpu" && args.device != "cuda")
    throw_error("--device", "'" + args.device + "' is not one of cpu, cuda");
  if (args.device == "cuda" && !cuda_bench_available())
    throw_error("--device cuda", "this jetlm was built without the CUDA backend (configure with -DJETLM_CUDA=ON)");
  if (args.model_dir.empty() == args.config.empty())
    throw_error("jetlm bench", "give exactly one of --model DIR or --config (path or preset) --random-weights");
  if (!args.config.empty() && !args.random_weights)
    throw_error("--config", "a config has no weights: add --random-weights");
  // Each only applies to one source of weights; silently ignoring it would report numbers for
  // weights the user did not ask for.
  if (!args.model_dir.empty() && args.dtype_given)
    throw_error("--dtype", "sets the dtype of --config ... --random-weights; a --model runs its weights as stored, "
                           "or quantized with --weights q8");
  if (args.model_dir.empty() && args.weights_given)
    throw_error("--weights", "applies to --model DIR; random weights take --dtype bf16|f16|f32|q8");
  std::vector<int64_t> prompt_lens;
  for (int32_t v : parse_id_list(args.prompt_lens, "--prompt-len")) {
    if (v < 1) throw_error("--prompt-len", "lengths must be positive");
    prompt_lens.push_back(v);
  }
  const auto load_t0 = Clock::now();
  // Random weights follow the rule of a checkpoint of their size, so a config measures what the
  // same model loaded from a directory would run at (2 MiB pages: ~10% faster bf16 decode of
  // Jet-Nemotron-2B on the 2-core EPYC VM, docs/perf.md).
  std::unique_ptr<Model> model;
  WeightPlacement placement = WeightPlacement::Mapped;
  if (args.model_dir.empty()) {
    const ModelConfig config = load_model_config(args.config);
    const DType dtype = parse_weight_dtype(args.dtype);
    // q8: one byte per weight and an f16 scale per block (core/tensor.h).
    const double bytes_per_weight = dtype == DType::I8 ? 1.0 + 2.0 / double(kQ8Block) : double(dtype_size(dtype));
    placement = weight_placement_for_bytes(args.hugepages, args.device,
                                           int64_t(double(parameter_count(config)) * bytes_per_weight));
    model = Model::random(config, dtype, 1, placement);
  } else {
    placement = weight_placement(args.hugepages, args.device, args.model_dir);
    model = Model::load(args.model_dir, parse_weight_format(args.weights, "--weights"), placement);
  }
  const ModelConfig& c = model->config();
  const std::string name = args.model_dir.empty() ? args.config : args.model_dir;
  // Lengths against the context before anything is measured (the CUDA bench checks its own).
  if (args.device != "cuda") {
    for (int64_t prompt_len : prompt_lens)
      if (prompt_len + args.gen > c.max_position)
        throw_error("--prompt-len", std::to_string(prompt_len) + " + " + std::to_string(args.gen) +
                                        " generated tokens exceed the context of " + std::to_string(c.max_position));
    if (!args.depths.empty())
      for (int32_t depth : parse_id_list(args.depths, "--depth"))
        if (depth < 0 || depth + args.gen > c.max_position)
          throw_error("--depth", std::to_string(depth) + " + " + std::to_string(args.gen) +
                                     " generated tokens exceed the context of " + std::to_string(c.max_position) +
                                     " (depths must be >= 0)");
  }
  if (args.device == "cuda") {
    CudaBenchArgs cargs;
    cargs.name = name;
    cargs.prompt_lens = prompt_lens;
    if (!args.depths.empty()) for (int32_t d : parse_id_list(args.depths, "--depth")) {
      if (d < 0) throw_error("--depth", "depths must be >= 0");
      cargs.depths.push_back(d);
    }
    cargs.gen = args.gen;
    cargs.batch = args.batch;
    cargs.prefill_chunk = args.chunk;
    cargs.cuda_graphs = !args.no_graphs;
    cargs.kv_cache = args.kv_cache;
    cargs.json = args.json;
    return run_cuda_bench(*model, cargs);
  }
  if (!args.json)
    std::fprintf(stderr, "jetlm bench: %s, %.2f GB of weights ready in %.1f s (%s); measuring the machine...\n",
                 name.c_str(), double(model->weight_bytes()) / 1e9, seconds_since(load_t0),
                 args.model_dir.empty()
                     ? (placement == WeightPlacement::Memory ? "random, on 2 MiB pages" : "random, in memory")
                 : placement == WeightPlacement::Memory ? "copied onto 2 MiB pages"
                                                        : "memory-mapped");
  const BandwidthProbe probe(placement == WeightPlacement::Memory);
  double bandwidth_before = probe.measure();  // the sample next to the coming run
  const double bandwidth_first = bandwidth_before;
  const double gemm_peak = measure_gemm_peak();
  const double fma_peak = cpu::fma_peak_gflops();
  if (!args.json) {
    std::printf("machine: %d threads, kernels %s (q8 GEMV %s), read bandwidth %.1f GB/s, bf16 GEMM (2048^2 x 256) "
                "%.1f GFLOP/s,\nfp32 FMA peak %.1f GFLOP/s (bandwidth sampled again after every decode run; a run's "
                "roofline uses the higher sample of before and after it)\n",
                cpu::num_threads(), cpu::isa_name(cpu::active_isa()), cpu::q8_gemv_kernel_name(), bandwidth_first,
                gemm_peak, fma_peak);
    std::printf("%-18s %8s %6s %6s %12s %12s %10s %10s %8s %8s %8s\n", "model", "prompt", "gen", "batch",
                "prefill t/s", "decode t/s", "cache MB", "weights GB", "dec roof", "pre/gemm", "pre/fma");
  }
  std::mt19937 rng(42);
  const int64_t B = args.batch;
  for (int64_t prompt_len : prompt_lens) {
    // B sequences of random ids, each prefilled into its own cache, then decoded together: one
    // decode step reads every weight once for the whole batch (Model::decode_batch).
    std::vector<std::vector<int32_t>> ids(static_cast<size_t>(B));
    for (auto& seq : ids) {
      seq.resize(size_t(prompt_len + args.gen));
      for (int32_t& id : seq) id = int32_t(rng() % uint32_t(c.vocab));
    }
    std::vector<HybridCache> caches;
    for (int64_t b = 0; b < B; ++b) caches.push_back(model->new_cache());
    std::vector<float> logits(size_t(B * c.vocab));
    ForwardOptions last_only;
    last_only.all_logits = false;
    auto t0 = Clock::now();
    constexpr int64_t kChunk = 512;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t p = 0; p < prompt_len; p += kChunk)
        model->forward(ids[size_t(b)].data() + p, std::min(kChunk, prompt_len - p), caches[size_t(b)], logits.data(),
                       last_only);
    const double prefill_s = seconds_since(t0);
    std::vector<HybridCache*> cache_ptrs;
    for (auto& cache : caches) cache_ptrs.push_back(&cache);
    std::vector<int32_t> step_ids(static_cast<size_t>(B));
    t0 = Clock::now();
    for (int64_t i = 0; i < args.gen; ++i) {
      if (B == 1) {
        model->forward(ids[0].data() + prompt_len + i, 1, caches[0], logits.data(), last_only);
        continue;
      }
      for (int64_t b = 0; b < B; ++b) step_ids[size_t(b)] = ids[size_t(b)][size_t(prompt_len + i)];
      model->decode_batch(step_ids.data(), B, cache_ptrs.data(), logits.data());
    }
    const double decode_s = seconds_since(t0);
    const double bandwidth_after = probe.measure();
    const double bandwidth = std::max(bandwidth_before, bandwidth_after);
    const double prefill_tps = double(B * prompt_len) / prefill_s;
    const double decode_tps = double(B * args.gen) / decode_s;
    // Decode reads every weight once and each sequence's whole cache once per step (the cache at
    // mid-generation).
    const int64_t mid = prompt_len + args.gen / 2;
    const int64_t cache_bytes = HybridCache::bytes_for(c, mid, 4);
    const double step_bytes = double(model->weight_bytes() + B * cache_bytes);
    const double decode_roofline = double(args.gen) / decode_s * step_bytes / (bandwidth * 1e9);
    // The LM head runs once per prefill chunk (last position only).
    double prefill_flops = 2.0 * double(c.vocab) * c.hidden * double((prompt_len + kChunk - 1) / kChunk);
    for (int64_t p = 0; p < prompt_len; ++p) prefill_flops += layer_flops_per_token(c, p);
    prefill_flops *= double(B);
    const double prefill_roofline = prefill_flops / prefill_s / (gemm_peak * 1e9);
    const double prefill_fma_frac = fma_peak > 0 ? prefill_flops / prefill_s / (fma_peak * 1e9) : 0.0;
    const int64_t cache_per_seq = HybridCache::bytes_for(c, prompt_len + args.gen, 4);
    if (args.json) {
      std::printf(
          "{\"model\": \"%s\", \"prompt_len\": %lld, \"gen_tokens\": %lld, \"batch\": %lld, "
          "\"threads\": %d, \"cpu_isa\": \"%s\", \"q8_gemv\": \"%s\", \"weights_on_hugepages\": %s, "
          "\"prefill_tok_s\": %.3f, \"decode_tok_s\": %.3f, "
          "\"cache_bytes_per_seq\": %lld, \"weight_bytes\": %lld, \"mem_bw_gb_s\": %.2f, "
          "\"mem_bw_before_gb_s\": %.2f, \"mem_bw_after_gb_s\": %.2f, "
          "\"gemm_peak_gflop_s\": %.2f, \"fma_peak_gflop_s\": %.2f, \"decode_roofline_frac\": %.4f, "
          "\"prefill_roofline_frac\": %.4f, \"prefill_fma_peak_frac\": %.4f}\n",
          name.c_str(), (long long)prompt_len, (long long)args.gen, (long long)args.batch,
          cpu::num_threads(), cpu::isa_name(cpu::active_isa()), cpu::q8_gemv_kernel_name(),
          placement == WeightPlacement::Memory ? "true" : "false", prefill_tps, decode_tps,
          (long long)cache_per_seq,
          (long long)model->weight_bytes(), bandwidth, bandwidth_before, bandwidth_after, gemm_peak, fma_peak,
          decode_roofline, prefill_roofline, prefill_fma_frac);
    } else {
      std::printf("%-18s %8lld %6lld %6lld %12.1f %12.2f %10.1f %10.2f %7.0f%% %7.0f%% %7.0f%%\n", name.c_str(),
                  (long long)prompt_len, (long long)args.gen, (long long)B, prefill_tps, decode_tps,
                  double(cache_per_seq) / 1e6, double(model->weight_bytes()) / 1e9,
                  100 * decode_roofline, 100 * prefill_roofline, 100 * prefill_fma_frac);
    }
    std::fflush(stdout);
    bandwidth_before = bandwidth_after;
  }
  if (args.depths.empty()) return;
  // Decode speed against cache depth: the cache is filled with random contents as if `depth`
  // tokens had been consumed (the work per step depends only on the depth), then `gen` steps run.
  if (!args.json)
    std::printf("\n%-18s %8s %6s %12s %10s %8s\n", "model", "depth", "gen", "decode t/s", "cache MB", "dec roof");
  for (int32_t depth : parse_id_list(args.depths, "--depth")) {
    HybridCache cache = model->new_cache();
    cache.fill_synthetic(depth, 7);
    std::vector<float> logits(size_t(c.vocab));
    ForwardOptions last_only;
    last_only.all_logits = false;
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < args.gen; ++i) {
      const int32_t id = int32_t((i * 7919) % c.vocab);
      model->forward(&id, 1, cache, logits.data(), last_only);
    }
    const double decode_tps = double(args.gen) / seconds_since(t0);
    const double bandwidth_after = probe.measure();
    const double bandwidth = std::max(bandwidth_before, bandwidth_after);
    bandwidth_before = bandwidth_after;
    const int64_t cache_bytes = HybridCache::bytes_for(c, depth + args.gen / 2, 4);
    const double roofline = decode_tps * double(model->weight_bytes() + cache_bytes) / (bandwidth * 1e9);
    if (args.json)
      std::printf("{\"model\": \"%s\", \"decode_depth\": %d, \"gen_tokens\": %lld, \"batch\": 1, "
                  "\"decode_tok_s\": %.3f, \"cache_bytes_per_seq\": %lld, \"weight_bytes\": %lld, "
                  "\"mem_bw_gb_s\": %.2f, \"decode_roofline_frac\": %.4f}\n",
                  name.c_str(), depth, (long long)args.gen, decode_tps, (long long)cache_bytes,
                  (long long)model->weight_bytes(), bandwidth, roofline);
    else
      std::printf("%-18s %8d %6lld %12.2f %10.1f %7.0f%%\n", name.c_str(), depth, (long long)args.gen, decode_tps,
                  double(cache_bytes) / 1e6, 100 * roofline);
    std::fflush(stdout);
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "prefill/decode throughput with roofline fractions");
  cmd->add_option("--model", args->model_dir, "model directory");
  cmd->add_option("--config", args->config,
                  "config.json path or preset (jet-nemotron-2b, jet-nemotron-4b, qwen3-1.7b, qwen2.5-1.5b)");
  cmd->add_flag("--random-weights", args->random_weights, "random weights for --config (no download)");
  cmd->add_option("--dtype", args->dtype, "random weight dtype: bf16 (default), f16, f32, q8")
      ->each([args](const std::string&) { args->dtype_given = true; });
  cmd->add_option("--weights", args->weights, "with --model: as-stored (default) or q8 (quantize at load)")
      ->each([args](const std::string&) { args->weights_given = true; });
  add_hugepages_flags(cmd, args->hugepages, kHugepagesHelp, kNoHugepagesHelp);
  cmd->add_option("-p,--prompt-len", args->prompt_lens, "prompt length(s), comma-separated (default 128)");
  cmd->add_option("--depth", args->depths, "also decode at these cache depths, e.g. 1024,8192,32768 (synthetic "
                  "cache contents, no prefill)");
  cmd->add_option("-n,--gen", args->gen, "generated tokens per run (default 32; --paper: 128)")
      ->check(kPositive)
      ->each([args](const std::string&) { args->gen_given = true; });
  cmd->add_option("--batch", args->batch, "sequences decoded together (default 1; each prefilled on its own, then "
                  "one decode step for all)")->check(CLI::Range(1, 4096));
  cmd->add_option("--threads", args->threads, "CPU threads (default: all cores)")->check(kPositive);
  cmd->add_flag("--json", args->json, "one JSON object per configuration");
  cmd->add_option("--device", args->device, "cpu (default) or cuda (needs a build with JETLM_CUDA=ON)");
  cmd->add_option("--chunk", args->chunk, "cuda: prefill chunk in tokens (default 2048)")->check(CLI::Range(1, 65535));
  cmd->add_flag("--paper", args->paper, "cuda: the paper's table: Jet-Nemotron-2B/4B, Qwen3-1.7B, Qwen2.5-1.5B (or "
                "--config a,b) at 4K..256K (or --contexts), largest batch that fits, speedups, CSV");
  cmd->add_option("--contexts", args->contexts, "--paper: contexts, comma-separated");
  cmd->add_option("--csv", args->csv, "--paper: CSV path (default bench/results/paper.csv)");
  cmd->add_flag("--no-graphs", args->no_graphs, "cuda: launch each decode step directly instead of a CUDA graph");
  cmd->add_option("--kv-cache", args->kv_cache, "cuda: KV cache elements: auto (bf16 for half-precision and q8 "
                  "weights, f32 for f32), f32, bf16");
  cmd->callback([args] { run_bench(*args); });
}

}  // namespace jetlm::cli
