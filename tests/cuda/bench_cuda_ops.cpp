// cuda_op_bench: per-kernel timings of the CUDA backend at Jet-Nemotron-2B shapes (hidden 1536,
// MLP 8960, vocab 151936, attention 12/2/128, JetBlock 12 heads dk 96 dv 256, conv 4, SWA 1152).
// Each line: median time of several timed runs (CUDA events, after warm-up), the bytes or FLOPs
// the op must move or do at least, and the rate next to the peak. Weights of the decode GEMVs
// rotate through enough copies to exceed L2, so the numbers are HBM numbers.
//
//   cuda_op_bench [--peak-gbs 3350] [--peak-tflops 989] [--only copy|gemv|gemm|attention|gdn|small]   (H100 SXM: 3.35 TB/s, 989 dense bf16 TFLOP/s)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/ops_cuda.h"
#include "core/dtype.h"
#include "core/error.h"

using namespace jetlm;

namespace {

double g_peak_gbs = 3350.0;
double g_peak_tflops = 989.0;
std::string g_only;  // --only NAME: run only the sections whose name contains NAME
bool want(const char* section) { return g_only.empty() || std::string(section).find(g_only) != std::string::npos; }

#define CHECK(x)                                                                              \
  do {                                                                                        \
    cudaError_t e = (x);                                                                      \
    if (e != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

// Median milliseconds per call: each timed sample runs `inner` calls back to back between two
// events (as a decode step or a CUDA graph issues them), after warm-up; fn(i) gets a running call
// index for rotating buffers.
double time_ms(const std::function<void(int)>& fn, int reps = 11, int inner = 10) {
  int i = 0;
  for (int w = 0; w < 3; ++w) fn(i++);
  cuda::synchronize();
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    CHECK(cudaEventRecord(a, cuda::stream()));
    for (int k = 0; k < inner; ++k) fn(i++);
    CHECK(cudaEventRecord(b, cuda::stream()));
    CHECK(cudaEventSynchronize(b));
    float t = 0;
    CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(double(t) / inner);
  }
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

cuda::Buffer<float> random_device(std::mt19937& rng, size_t n, float lo = -1, float hi = 1) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> h(n);
  for (float& x : h) x = dist(rng);
  return cuda::Buffer<float>(h.data(), n);
}

cuda::Buffer<uint16_t> random_bf16(std::mt19937& rng, size_t n) {
  std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
  std::vector<uint16_t> h(n);
  for (auto& x : h) x = f32_to_bf16(dist(rng));
  return cuda::Buffer<uint16_t>(h.data(), n);
}

void row(const char* name, const std::string& shape, double ms, double bytes, double flops) {
  const double gbs = bytes / (ms * 1e-3) / 1e9, tflops = flops / (ms * 1e-3) / 1e12;
  std::printf("%-26s %-34s %10.1f us", name, shape.c_str(), ms * 1e3);
  if (bytes > 0) std::printf("  %8.0f GB/s (%4.0f%% of %.0f)", gbs, 100 * gbs / g_peak_gbs, g_peak_gbs);
  if (flops > 0) std::printf("  %7.2f TFLOP/s", tflops);
  std::printf("\n");
}

std::string dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t x : d) {
    if (!s.empty()) s += "x";
    s += std::to_string(x);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--peak-gbs")) g_peak_gbs = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--peak-tflops")) g_peak_tflops = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--only")) g_only = argv[i + 1];
  }
  try {
    cuda::require_device();
  } catch (const Error& e) {
    std::fprintf(stderr, "cuda_op_bench: %s\n", e.what());
    return 2;
  }
  std::printf("device: %s\n", cuda::device_description().c_str());
  std::mt19937 rng(1);

  if (want("copy")) {  // device-to-device copy: the achievable bandwidth
    const size_t n = size_t(1) << 28;  // 1 GiB
    cuda::Buffer<uint8_t> a(n), b(n);
    cuda::fill_bytes(a.data(), 1, n);
    const double ms = time_ms([&](int) { cuda::copy_device(b.data(), a.data(), n); }, 5, 3);
    row("d2d copy", "1 GiB", ms, 2.0 * double(n), 0);
  }

  // ---- decode GEMVs (T = 1, bf16 weights) ----
  struct Gemv { const char* name; int64_t rows, cols; };
  const Gemv gemvs[] = {{"attn q/o proj", 1536, 1536},  {"attn k/v proj", 256, 1536}, {"jet q/k proj", 1152, 1536},
                        {"jet v/g proj", 3072, 1536},   {"mlp gate/up", 8960, 1536},  {"mlp down", 1536, 8960},
                        {"lm_head", 151936, 1536}, {"jet in_proj stacked", 8872, 1536},
                        {"jet conv generator w2", 12288, 384}, {"jet o proj", 1536, 3072}};
  for (int64_t T : {1, 4, 8}) {
    if (!want("gemv")) break;
    for (const Gemv& g : gemvs) {
      const size_t n = size_t(g.rows * g.cols);
      const int copies = int(std::max<size_t>(1, std::min<size_t>(64, (size_t(400) << 20) / (2 * n))));
      std::vector<cuda::Buffer<uint16_t>> W;
      for (int c = 0; c < copies; ++c) W.push_back(random_bf16(rng, n));
      auto x = random_device(rng, size_t(T * g.cols));
      auto y = random_device(rng, size_t(T * g.rows));
      const double ms = time_ms([&](int i) {
        cuda::DeviceMatrix m{W[size_t(i % copies)].data(), DType::BF16, g.rows, g.cols};
        cuda::matmul(x.data(), T, m, nullptr, y.data());
      });
      row((std::string("gemv T=") + std::to_string(T) + " " + g.name).c_str(), dims({g.rows, g.cols}), ms,
          2.0 * double(n) + 4.0 * double(T * (g.rows + g.cols)), 2.0 * double(T) * double(n));
    }
  }

  // ---- prefill GEMMs (bf16 weights, T = 4096) ----
  for (const Gemv& g : {Gemv{"mlp gate/up", 8960, 1536}, Gemv{"mlp down", 1536, 8960}, Gemv{"attn q/o proj", 1536, 1536}}) {
    if (!want("gemm")) break;
    const int64_t T = 4096;
    auto W = random_bf16(rng, size_t(g.rows * g.cols));
    auto x = random_device(rng, size_t(T * g.cols));
    auto y = random_device(rng, size_t(T * g.rows));
    cuda::DeviceMatrix m{W.data(), DType::BF16, g.rows, g.cols};
    const double ms = time_ms([&](int) { cuda::matmul(x.data(), T, m, nullptr, y.data()); });
    const double flops = 2.0 * double(T) * double(g.rows * g.cols);
    row((std::string("gemm T=4096 ") + g.name).c_str(), dims({g.rows, g.cols}), ms, 0, flops);
    std::printf("%-26s %-34s %10s     %.1f%% of %.0f bf16 TFLOP/s\n", "", "", "", 100 * flops / (ms * 1e9) / g_peak_tflops,
                g_peak_tflops);
  }

  // ---- attention ----
  const int64_t Hq = 12, Hkv = 2, hd = 128;
  for (int64_t T : {int64_t(1024), int64_t(4096)}) {  // causal prefill, and SWA 1152
    if (!want("attention")) break;
    auto q = random_device(rng, size_t(T * Hq * hd), -2, 2);
    auto k = random_device(rng, size_t(T * Hkv * hd), -2, 2);
    auto v = random_device(rng, size_t(T * Hkv * hd));
    auto o = random_device(rng, size_t(T * Hq * hd));
    for (int64_t window : {int64_t(0), int64_t(1152)}) {
      const double ms = time_ms([&](int) {
        cuda::attention(q.data(), k.data(), v.data(), T, T, Hq, Hkv, hd, 0, 0, window, o.data());
      }, 5, 3);
      double pairs = 0;  // allowed (query, key) pairs
      for (int64_t t = 0; t < T; ++t) pairs += double(window > 0 ? std::min<int64_t>(t + 1, window) : t + 1);
      row((std::string("attention prefill") + (window ? " swa" : "")).c_str(),
          "T=S=" + std::to_string(T) + " 12/2/128" + (window ? " W=1152" : ""), ms, 0, 4.0 * pairs * Hq * hd);
    }
  }
  // Prefill attention on tensor cores: one 2048-token chunk against a paged bf16 cache (the
  // engine's prefill), Jet-Nemotron-2B's 12/2/128 and Qwen3-1.7B's 16/8/128, at the depths of the
  // --paper prefill rows (the chunk at half the context); both kernels, alternating.
  for (const int64_t HqP : {int64_t(12), int64_t(16)}) {
    if (!want("attention")) break;
    const int64_t HkvP = HqP == 12 ? 2 : 8, T = 2048, page = 64;
    for (const int64_t pos0 : {int64_t(1024), int64_t(31744), int64_t(130048)}) {
      const int64_t S = pos0 + T, kv_row = HkvP * hd, pages = (S + page - 1) / page;
      auto q = random_device(rng, size_t(T * HqP * hd), -2, 2);
      auto k = random_bf16(rng, size_t(pages * page * kv_row));
      auto v = random_bf16(rng, size_t(pages * page * kv_row));
      auto o = random_device(rng, size_t(T * HqP * hd));
      std::vector<int32_t> table(static_cast<size_t>(pages));
      for (int64_t i = 0; i < pages; ++i) table[size_t(i)] = int32_t((i * 7919) % pages);  // scattered pages
      cuda::Buffer<int32_t> d_table(table.data(), table.size());
      const cuda::KvLayout L{k.data(), v.data(), kv_row, d_table.data(), page, pages, 0, DType::BF16};
      double pairs = 0;
      for (int64_t t = 0; t < T; ++t) pairs += double(pos0 + t + 1);
      for (const char* kernel : {"registers", "wmma", "registers", "wmma"}) {
        setenv("JETLM_ATTN_PREFILL", kernel, 1);
        const double ms = time_ms([&](int) {
          cuda::attention_prefill_tc(q.data(), L, 0, T, S, HqP, HkvP, hd, pos0, 0, 0, o.data());
        }, 5, 2);
        row((std::string("attn prefill tc ") + kernel).c_str(),
            "T=2048 S=" + std::to_string(S) + (HqP == 12 ? " 12/2/128" : " 16/8/128"), ms, 0, 4.0 * pairs * HqP * hd);
      }
      unsetenv("JETLM_ATTN_PREFILL");
    }
  }
  for (int64_t S : {int64_t(4096), int64_t(65536)}) {  // decode: one query against S cached keys
    if (!want("attention")) break;
    auto q = random_device(rng, size_t(Hq * hd), -2, 2);
    auto k = random_device(rng, size_t(S * Hkv * hd), -2, 2);
    auto v = random_device(rng, size_t(S * Hkv * hd));
    auto o = random_device(rng, size_t(Hq * hd));
    const double ms = time_ms([&](int) {
      cuda::attention(q.data(), k.data(), v.data(), 1, S, Hq, Hkv, hd, S - 1, 0, 0, o.data());
    });
    row("attention decode", "S=" + std::to_string(S) + " 12/2/128", ms, 2.0 * 4.0 * double(S * Hkv * hd),
        4.0 * double(S) * Hq * hd);
  }

  // ---- gated delta rule (12 heads, dk 96, dv 256) ----
  const int64_t H = 12, dk = 96, dv = 256;
  for (int64_t T : {int64_t(1024), int64_t(2048), int64_t(4096)}) {
    if (!want("gdn")) break;
    auto q = random_device(rng, size_t(T * H * dk), -0.1f, 0.1f);
    auto k = random_device(rng, size_t(T * H * dk), -0.1f, 0.1f);
    auto v = random_device(rng, size_t(T * H * dv));
    auto g = random_device(rng, size_t(T * H), -1.0f, 0.0f);
    auto beta = random_device(rng, size_t(T * H), 0.0f, 1.0f);
    auto S = random_device(rng, size_t(H * dk * dv));
    auto o = random_device(rng, size_t(T * H * dv));
    const double ms = time_ms([&](int) {
      cuda::gdn_chunked(q.data(), k.data(), v.data(), g.data(), beta.data(), T, H, dk, dv, S.data(), o.data());
    }, 5, 3);
    // FLOPs of the chunked form: per chunk and head ~ L^2 (2dk + dv) + 4 L dk dv (+ the solve).
    const double flops = double(T / 64) * H * (64.0 * 64 * (2 * dk + dv) * 2 + 4.0 * 64 * dk * dv * 2);
    row("gdn_chunked", "T=" + std::to_string(T) + " 12x96x256", ms, 0, flops);
    // The tensor-core path the engine takes (defaults: output split from the state pass, prep dots
    // on tensor cores, W/U from the inverse of I + M, the mma.sync state pass), the WMMA state pass,
    // the opt-in mma.sync output kernel, the substitution prep, and the fused pass of before.
    struct Variant {
      const char* name;
      const char* split;
      const char* prep_tc;
      const char* inverse;
      const char* mma;
      const char* output_mma = "0";
    };
    for (int round = 0; round < 2; ++round)
      for (const Variant var : {Variant{"gdn_chunked_tc WMMA pass", "1", "1", "1", "0"},
                                Variant{"gdn_chunked_tc default (mma.sync pass)", "1", "1", "1", "1"},
                                Variant{"gdn_chunked_tc mma.sync pass+output", "1", "1", "1", "1", "1"},
                                Variant{"gdn_chunked_tc substitution", "1", "1", "0", "0"},
                                Variant{"gdn_chunked_tc fused old", "0", "0", "0", "0"}}) {
        setenv("JETLM_GDN_SPLIT", var.split, 1);
        setenv("JETLM_GDN_PREP_TC", var.prep_tc, 1);
        setenv("JETLM_GDN_PREP_INV", var.inverse, 1);
        setenv("JETLM_GDN_STATE_MMA", var.mma, 1);
        setenv("JETLM_GDN_OUTPUT_MMA", var.output_mma, 1);
        const double ms_tc = time_ms([&](int) {
          cuda::gdn_chunked_tc(q.data(), k.data(), v.data(), g.data(), beta.data(), T, H, dk, dv, S.data(), o.data());
        }, 5, 3);
        row(var.name, "T=" + std::to_string(T) + " 12x96x256", ms_tc, 0, flops);
      }
    for (const char* name : {"JETLM_GDN_PREP_TC", "JETLM_GDN_SPLIT", "JETLM_GDN_PREP_INV", "JETLM_GDN_STATE_MMA",
                             "JETLM_GDN_OUTPUT_MMA"})
      unsetenv(name);
  }
  if (want("gdn")) {
    auto q = random_device(rng, size_t(H * dk)), k = random_device(rng, size_t(H * dk)), v = random_device(rng, size_t(H * dv));
    auto g = random_device(rng, size_t(H), -1, 0), beta = random_device(rng, size_t(H), 0, 1);
    auto S = random_device(rng, size_t(H * dk * dv)), o = random_device(rng, size_t(H * dv));
    const double ms = time_ms([&](int) {
      cuda::gdn_recurrent(q.data(), k.data(), v.data(), g.data(), beta.data(), 1, H, dk, dv, S.data(), o.data());
    });
    row("gdn_recurrent (decode)", "T=1 12x96x256", ms, 2.0 * 4.0 * double(H * dk * dv), 0);
  }

  // ---- small ops at prefill size ----
  if (want("small")) {
    const int64_t T = 4096, D = 1536, C = 3072, K = 4;
    auto x = random_device(rng, size_t(T * D)), w = random_device(rng, size_t(D)), out = random_device(rng, size_t(T * D));
    double ms = time_ms([&](int) { cuda::rmsnorm(x.data(), T, D, w.data(), 1e-6f, out.data()); });
    row("rmsnorm", dims({T, D}), ms, 8.0 * double(T * D), 0);
    auto u = random_device(rng, size_t(T * C)), ker = random_device(rng, size_t(T * C * K));
    auto st = random_device(rng, size_t((K - 1) * C)), vv = random_device(rng, size_t(T * C));
    ms = time_ms([&](int) { cuda::dconv(u.data(), ker.data(), T, C, K, st.data(), vv.data()); });
    row("dconv", dims({T, C, K}), ms, 4.0 * double(T * C * (K + 2)), 0);
    auto gate = random_device(rng, size_t(T * 8960)), up = random_device(rng, size_t(T * 8960));
    ms = time_ms([&](int) { cuda::silu_mul(gate.data(), up.data(), T * 8960, gate.data()); });
    row("silu_mul", dims({T, 8960}), ms, 12.0 * double(T * 8960), 0);
    auto qq = random_device(rng, size_t(T * 12 * 128));
    ms = time_ms([&](int) { cuda::rope(qq.data(), T, 12, 128, 0, 1e6); });
    row("rope", dims({T, 12, 128}), ms, 8.0 * double(T * 12 * 128), 0);
  }
  cuda::synchronize();
  return 0;
}
