// CPU implementations of the op contract: OpenMP threads, loops written so the compiler
// vectorises them, with GCC function multi-versioning for runtime dispatch by CPU features
// (AVX-512 / AVX2+FMA / baseline x86-64). Shapes and semantics: backend/ops.h.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cpu/gemm_kernels.h"
#include "backend/ops.h"
#include "backend/quantize.h"
#include "core/env.h"
#include "core/error.h"

#if defined(__x86_64__) && !defined(__clang__) && !defined(JETLM_NO_MULTIVERSION)
#define JETLM_DISPATCH __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define JETLM_DISPATCH
#endif

namespace jetlm::cpu {

namespace {

int g_num_threads = 0;  // 0: OpenMP's default (all cores)

// exp(x) for x <= 0 written so `omp simd` loops vectorise it (std::exp is a scalar call):
// x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 polynomial (relative error ~2e-7),
// 2^n put into the exponent bits; below -87 the result flushes to 0.
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;  // a value select (std::max returns a reference: a branch)
  // Round to nearest by adding and subtracting 1.5 * 2^23 (exact for |v| < 2^22): unlike
  // std::nearbyint, which must not raise the inexact flag, this vectorises.
  constexpr float kRound = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// silu(x) = x / (1 + exp(-x)) = x exp(x) / (1 + exp(x)), taking whichever form has a
// non-positive exponent, so `omp simd` loops vectorise it (std::exp is a scalar call; the MLP's
// silu over T x intermediate values cost ~2% of a 512-token prefill).
inline float silu_f(float x) {
  const float e = exp_nonpositive(-std::fabs(x));
  return x * (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}

// Dot products keep 32 independent partial sums: the compiler maps them onto several vector
// registers, so the loop is bound by loads, not by the latency of one accumulator chain.
constexpr int64_t kLanes = 32;

// The partial sums are added pairwise (lane j + lane j + 16, then + 8, ...), so the reduction is
// five vector adds instead of a 32-add serial chain: in a single-token GEMV over short rows, that
// chain capped one core at ~24 GB/s of bf16 weights from cache (33 GB/s pairwise; docs/perf.md).
inline float reduce_lanes(float (&partial)[kLanes]) {
  for (int64_t width = kLanes / 2; width > 0; width /= 2)
    for (int64_t j = 0; j < width; ++j) partial[j] += partial[j + width];
  return partial[0];
}

JETLM_DISPATCH float dot_f32(const float* a, const float* b, int64_t n) {
  float partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) partial[j] += a[i + j] * b[i + j];
  float acc = 0.0f;
  for (; i < n; ++i) acc += a[i] * b[i];
  return acc + reduce_lanes(partial);
}

JETLM_DISPATCH float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  float partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) partial[j] += bf16_to_f32(w[i + j]) * x[i + j];
  float acc = 0.0f;
  for (; i < n; ++i) acc += bf16_to_f32(w[i]) * x[i];
  return acc + reduce_lanes(partial);
}

// The bandwidth probe's read. ahead > 0: it also asks for its input that many bytes in advance (one
// request per 64-byte line), since the probe must be the best plain read the machine does and the
// decode GEMVs prefetch too (gemm_kernels.h, kStreamPrefetchBytes). The sum is the same either way.
JETLM_DISPATCH float sum_f32(const float* x, int64_t n, int64_t ahead) {
  float partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    if (ahead > 0) {
      __builtin_prefetch(reinterpret_cast<const char*>(x + i) + ahead);
      __builtin_prefetch(reinterpret_cast<const char*>(x + i + 16) + ahead);
    }
    for (int64_t j = 0; j < kLanes; ++j) partial[j] += x[i + j];
  }
  float acc = 0.0f;
  for (; i < n; ++i) acc += x[i];
  return acc + reduce_lanes(partial);
}

JETLM_DISPATCH void axpy(float* y, float a, const float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

JETLM_DISPATCH void scale_inplace(float* y, float a, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] *= a;
}

// The active ISA, resolved once (see active_isa()); read in hot loops, so a relaxed atomic.
std::atomic<int> g_active_isa{-1};

Isa resolve_active_isa();

inline Isa current_isa() {
  const int v = g_active_isa.load(std::memory_order_relaxed);
  return v >= 0 ? Isa(v) : resolve_active_isa();
}

bool has_avx2_fma() { return current_isa() >= Isa::Avx2; }
bool has_avx512() { return current_isa() >= Isa::Avx512; }
bool has_avx512_bf16() { return current_isa() >= Isa::Avx512Bf16; }

// Converts `n` consecutive weights starting at element `offset` to float32.
JETLM_DISPATCH void weights_to_f32(const Matrix& W, int64_t offset, int64_t n, float* out) {
  if (W.dtype == DType::BF16) {
    const uint16_t* src = static_cast<const uint16_t*>(W.data) + offset;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(src[i]);
  } else if (W.dtype == DType::F16) {
    const uint16_t* src = static_cast<const uint16_t*>(W.data) + offset;
    for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(src[i]);
  } else if (W.dtype == DType::I8) {
    // q8 rows are converted whole: their scales are per row.
    JETLM_ASSERT(offset % W.cols == 0 && n % W.cols == 0, "q8 weights are converted by whole rows");
    const int64_t r0 = offset / W.cols, rows = n / W.cols;
    if (has_avx2_fma()) {
      kernels::dequantize_q8_avx2(static_cast<const int8_t*>(W.data) + offset, W.scales + r0 * q8_blocks(W.cols), rows,
                                  W.cols, out);
      return;
    }
    for (int64_t r = r0; r < r0 + rows; ++r) matrix_row_f32(W, r, out + (r - r0) * W.cols);
  } else {
    const float* src = static_cast<const float*>(W.data) + offset;
    std::copy(src, src + n, out);
  }
}

int threads() { return g_num_threads > 0 ? g_num_threads : omp_get_max_threads(); }

// Items [0, n) over the threads for a weight-streaming loop: thread t owns the t-th contiguous
// share and walks it from the front, `chunk` items at a time, so each core streams one region as
// with schedule(static); a thread that finishes takes chunks from the back of the other shares.
// Static shares left one core waiting for the other at the end of each GEMV (perf: ~8% of decode
// thread time in the OpenMP barrier on the 2-core VM), while schedule(dynamic) interleaved the
// cores' streams and halved the decode speed. fn(i) runs exactly once for every i.
template <typename F>
void parallel_stealing(int64_t n, int64_t chunk, F&& fn) {
  const int T = int(std::min<int64_t>(threads(), std::max<int64_t>(1, n / chunk)));
  if (T <= 1 || omp_in_parallel()) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  JETLM_ASSERT(n < (int64_t(1) << 32));
  struct alignas(64) Share { std::atomic<uint64_t> range; };  // (hi << 32) | lo, one cache line each
  std::vector<Share> shares(static_cast<size_t>(T));
  for (int t = 0; t < T; ++t)
    shares[size_t(t)].range.store(uint64_t(n * (t + 1) / T) << 32 | uint64_t(n * t / T), std::memory_order_relaxed);
  // Claims up to `chunk` items of share s, from the front (its owner) or the back; false when empty.
  const auto claim = [&](int s, bool front, int64_t& lo_out, int64_t& hi_out) {
    std::atomic<uint64_t>& range = shares[size_t(s)].range;
    uint64_t cur = range.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t lo = cur & 0xffffffffu, hi = cur >> 32;
      if (lo >= hi) return false;
      const uint64_t take = std::min<uint64_t>(uint64_t(chunk), hi - lo);
      const uint64_t next = front ? (hi << 32 | (lo + take)) : ((hi - take) << 32 | lo);
      if (range.compare_exchange_weak(cur, next, std::memory_order_relaxed)) {
        lo_out = int64_t(front ? lo : hi - take);
        hi_out = lo_out + int64_t(take);
        return true;
      }
    }
  };
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num();
    int64_t lo = 0, hi = 0;
    while (claim(t, true, lo, hi))
      for (int64_t i = lo; i < hi; ++i) fn(i);
    for (int k = 1; k < T; ++k)
      while (claim((t + k) % T, false, lo, hi))
        for (int64_t i = lo; i < hi; ++i) fn(i);
  }
}


}  // namespace

void set_num_threads(int n) { g_num_threads = n; }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Portable: return "portable";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Bf16: return "avx512bf16";
  }
  return "?";
}

Isa detected_isa() {
#if defined(__x86_64__)
  static const Isa detected = [] {
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")))
      return Isa::Portable;
    if (!__builtin_cpu_supports("avx512f")) return Isa::Avx2;
    if (!__builtin_cpu_supports("avx512bf16")) return Isa::Avx512;
    return Isa::Avx512Bf16;
  }();
  return detected;
#else
  return Isa::Portable;
#endif
}

namespace {

Isa resolve_active_isa() {
  // AVX512-BF16 rounds activations to bf16 (measured 5e-2 logits error on the bf16 golden, whose
  // tolerance is 2e-2, and no faster than the float32 AVX-512 GEMM on a Sapphire Rapids Xeon), so
  // it is used only when asked for by name.
  Isa isa = std::min(detected_isa(), Isa::Avx512);
  const std::string limit_name = env_choice("JETLM_CPU_ISA", "", {"portable", "avx2", "avx512", "avx512bf16"});
  if (limit_name == isa_name(Isa::Avx512Bf16)) isa = detected_isa();
  for (Isa limit : {Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16})
    if (limit_name == isa_name(limit)) isa = std::min(isa, limit);
  g_active_isa.store(int(isa), std::memory_order_relaxed);
  return isa;
}

}  // namespace

Isa active_isa() { return current_isa(); }

void set_max_isa(Isa limit) { g_active_isa.store(int(std::min(detected_isa(), limit)), std::memory_order_relaxed); }

double read_all(const float* x, int64_t n, int64_t prefetch_bytes) {
  double total = 0;
  constexpr int64_t kBlock = 1 << 16;
#pragma omp parallel for num_threads(threads()) reduction(+ : total) schedule(static)
  for (int64_t b = 0; b < n; b += kBlock)
    total += sum_f32(x + b, std::min(kBlock, n - b), prefetch_bytes);
  return total;
}
int num_threads() { return threads(); }

double fma_peak_gflops() {
  if (!has_avx2_fma()) return 0.0;
  const bool wide = has_avx512();
  double total = 0;
#pragma omp parallel num_threads(threads()) reduction(+ : total)
  total += wide ? kernels::fma_peak_gflops_avx512() : kernels::fma_peak_gflops_avx2();
  return total;
}

double bf16_dot_peak_gflops() {
  if (!has_avx512_bf16()) return 0.0;
  double total = 0;
#pragma omp parallel num_threads(threads()) reduction(+ : total)
  total += kernels::bf16_dot_peak_gflops_avx512();
  return total;
}

// Single-token bf16 GEMVs over rows longer than this take eight rows at a time (AVX2 kernel, also on
// AVX-512 machines): a float32 x of more columns outgrows half the 32 KB L1 (docs/perf.md).
constexpr int64_t kLongRowCols = 4096;

// Up to this many activation rows, q8 weights take the integer GEMV (activations quantized to 8
// bits per block, as in decode); more rows dequantize weight tiles into the float32 GEMM.
constexpr int64_t kQ8GemvMaxRows = 8;
// The same for bf16/f32 weights: up to this many rows, reading each weight row once for all of
// them beats converting and packing every weight tile for the GEMM.
constexpr int64_t kGemvMaxRows = 8;

namespace {

using Q8Gemv = void (*)(const int8_t*, const uint16_t*, int64_t, int64_t, const int8_t*, const float*, const float*,
                        float*);

// VNNI changes no bits (gemv_q8_rows.h), so it follows the ISA limit without a level of its own;
// JETLM_CPU_VNNI=0 turns it off (A/B runs against the AVX2 kernel).
struct Q8GemvChoice {
  Q8Gemv kernel;
  const char* name;
};
Q8GemvChoice q8_gemv_choice() {
#if defined(__x86_64__)
  static const bool allowed = env_switch("JETLM_CPU_VNNI", true);
  static const bool avx512_vnni = allowed && __builtin_cpu_supports("avx512vnni") &&
                                  __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  static const bool avx_vnni = allowed && __builtin_cpu_supports("avxvnni");
  if (has_avx512() && avx512_vnni) return {kernels::gemv_q8_avx512vnni, "avx512vnni"};
  if (has_avx2_fma() && avx_vnni) return {kernels::gemv_q8_avxvnni, "avxvnni"};
#endif
  if (has_avx2_fma()) return {kernels::gemv_q8_avx2, "avx2"};
  return {nullptr, "portable"};
}

// JETLM_CPU_STEAL=0: static shares for the single-token GEMVs (A/B runs).
bool steal_rows() {
  static const bool on = env_switch("JETLM_CPU_STEAL", true);
  return on;
}

}  // namespace

const char* q8_gemv_kernel_name() { return q8_gemv_choice().name; }

void matmul(const float* x, int64_t T, const Matrix& W, const float* bias, float* y) {
  JETLM_ASSERT(W.dtype == DType::F32 || W.dtype == DType::BF16 || W.dtype == DType::F16 ||
               (W.dtype == DType::I8 && W.scales != nullptr));
  const int64_t N = W.rows, Kdim = W.cols;
  if (T <= kQ8GemvMaxRows && W.dtype == DType::I8 && has_avx2_fma()) {
    // q8 decode (one token, or a decode batch of up to 8): each activation row is quantized once,
    // then integer dot products per block; a task's 16 weight rows stay in cache while every
    // activation row passes over them, so the weights are read from memory once per step.
    const int64_t blocks = q8_blocks(Kdim);
    std::vector<int8_t> xq(static_cast<size_t>(T * Kdim));
    std::vector<float> x_scales(static_cast<size_t>(T * blocks));
    for (int64_t t = 0; t < T; ++t)
      kernels::quantize_activation_q8_avx2(x + t * Kdim, Kdim, xq.data() + t * Kdim, x_scales.data() + t * blocks);
    const Q8Gemv gemv_q8 = q8_gemv_choice().kernel;
    const int64_t rows_per_task = 16, tasks = (N + rows_per_task - 1) / rows_per_task;
    const auto task = [&](int64_t i) {
      const int64_t r0 = i * rows_per_task, rows = std::min(rows_per_task, N - r0);
      for (int64_t t = 0; t < T; ++t)
        gemv_q8(static_cast<const int8_t*>(W.data) + r0 * Kdim, W.scales + r0 * blocks, rows, Kdim,
                xq.data() + t * Kdim, x_scales.data() + t * blocks, bias ? bias + r0 : nullptr, y + t * N + r0);
    };
    if (steal_rows()) {
      parallel_stealing(tasks, std::max<int64_t>(1, (int64_t(1) << 16) / (rows_per_task * Kdim)), task);
    } else {
#pragma omp parallel for num_threads(threads()) schedule(static)
      for (int64_t i = 0; i < tasks; ++i) task(i);
    }
    return;
  }
  if (T == 1 && (W.dtype == DType::BF16 || W.dtype == DType::F32)) {
    // Decode: one pass over the weights, read as stored. bf16 takes the hand-written AVX2 dot
    // product, also on AVX-512 machines: it gives the bits of the compiler's loop at either width
    // (the same 32 lanes and reduction), and that loop's AVX-512 build chains each of its two
    // accumulators once per 64 bytes and reduces the 32 lanes through the stack after every row.
    const bool bf16_avx2 = W.dtype == DType::BF16 && has_avx2_fma();
    // Chunks of ~64 KB of weights for the stealing schedule.
    const int64_t chunk_rows = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, Kdim * dtype_size(W.dtype)));
    // The AVX2 bf16 kernels take x in their unpack order (gemm_kernels.h), permuted once here.
    thread_local std::vector<float> x_unpack_order;
    const bool long_rows = bf16_avx2 && Kdim > kLongRowCols;
    if (bf16_avx2) {
      x_unpack_order.resize(static_cast<size_t>(Kdim));
      kernels::unpack_order_bf16(x, Kdim, long_rows ? Kdim - Kdim % 16 : Kdim - Kdim % 32, x_unpack_order.data());
    }
    const float* xp = x_unpack_order.data();
    if (long_rows) {
      // Long rows: eight at a time, so x is read from L1 once for all eight.
      const int64_t blocks = (N + 7) / 8;
      const auto block = [&](int64_t blk) {
        const int64_t r0 = blk * 8, rows = std::min<int64_t>(8, N - r0);
        kernels::dot_rows8_bf16_avx2(static_cast<const uint16_t*>(W.data) + r0 * Kdim, Kdim, rows, xp, y + r0);
        if (bias)
          for (int64_t r = r0; r < r0 + rows; ++r) y[r] += bias[r];
      };
      if (steal_rows()) {
        parallel_stealing(blocks, std::max<int64_t>(1, chunk_rows / 8), block);
      } else {
#pragma omp parallel for num_threads(threads()) schedule(static)
        for (int64_t blk = 0; blk < blocks; ++blk) block(blk);
      }
      return;
    }
    const auto row = [&](int64_t r) {
      const float acc = bf16_avx2 ? kernels::dot_bf16_avx2(static_cast<const uint16_t*>(W.data) + r * Kdim, xp, Kdim)
                        : W.dtype == DType::BF16
                            ? dot_bf16(static_cast<const uint16_t*>(W.data) + r * Kdim, x, Kdim)
                            : dot_f32(static_cast<const float*>(W.data) + r * Kdim, x, Kdim);
      y[r] = acc + (bias ? bias[r] : 0.0f);
    };
    if (steal_rows()) {
      parallel_stealing(N, chunk_rows, row);
    } else {
#pragma omp parallel for num_threads(threads()) schedule(static)
      for (int64_t r = 0; r < N; ++r) row(r);
    }
    return;
  }
  if (T <= kGemvMaxRows && (W.dtype == DType::BF16 || W.dtype == DType::F32) && has_avx2_fma()) {
    // A decode batch of a few sequences: each weight row is read once for all T rows (converting
    // and packing every tile for the GEMM would cost more than the arithmetic it saves).
    const int64_t rows_per_task = 16;
#pragma omp parallel for num_threads(threads()) schedule(static)
    for (int64_t r0 = 0; r0 < N; r0 += rows_per_task) {
      const int64_t rows = std::min(rows_per_task, N - r0);
      if (W.dtype == DType::BF16)
        kernels::gemv_rows_bf16_avx2(static_cast<const uint16_t*>(W.data) + r0 * Kdim, rows, Kdim, x, T,
                                     bias ? bias + r0 : nullptr, y + r0, N);
      else
        kernels::gemv_rows_f32_avx2(static_cast<const float*>(W.data) + r0 * Kdim, rows, Kdim, x, T,
                                    bias ? bias + r0 : nullptr, y + r0, N);
    }
    return;
  }
  // Prefill: a tile of weight rows is converted once to float32, packed into 16-row panels, and
  // reused by every token through the outer-product microkernel (AVX2+FMA), or the portable dot
  // loop elsewhere.
  const bool avx2 = has_avx2_fma(), avx512 = has_avx512();
  const int64_t tile_rows = 64;  // four panels
  const int64_t n_tiles = (N + tile_rows - 1) / tile_rows;
  if (W.dtype == DType::BF16 && has_avx512_bf16()) {
    // bf16 weights on AVX512_BF16: the activations are rounded to bf16 once, weight tiles are
    // packed as bf16 pairs straight from storage, and vdpbf16ps accumulates in float32.
    const int64_t K2 = (Kdim + 1) / 2;
    std::vector<uint32_t> x2(static_cast<size_t>(T * K2));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t q = 0; q < K2; ++q) {
        const uint32_t lo = f32_to_bf16(x[t * Kdim + 2 * q]);
        const uint32_t hi = 2 * q + 1 < Kdim ? f32_to_bf16(x[t * Kdim + 2 * q + 1]) : 0u;
        x2[size_t(t * K2 + q)] = lo | (hi << 16);
      }
    const uint16_t* w = static_cast<const uint16_t*>(W.data);
#pragma omp parallel num_threads(threads())
    {
      std::vector<uint32_t> tile(static_cast<size_t>(tile_rows * K2));
#pragma omp for schedule(dynamic, 1)
      for (int64_t tile_index = 0; tile_index < n_tiles; ++tile_index) {
        const int64_t r0 = tile_index * tile_rows;
        const int64_t rows = std::min(tile_rows, N - r0);
        const int64_t panels = (rows + kernels::kPanel - 1) / kernels::kPanel;
        std::fill(tile.begin(), tile.begin() + panels * kernels::kPanel * K2, 0u);
        for (int64_t r = 0; r < rows; ++r) {
          const uint16_t* wr = w + (r0 + r) * Kdim;
          uint32_t* panel = tile.data() + (r / kernels::kPanel) * kernels::kPanel * K2 + r % kernels::kPanel;
          for (int64_t q = 0; q < K2; ++q) {
            const uint32_t hi = 2 * q + 1 < Kdim ? wr[2 * q + 1] : 0u;
            panel[q * kernels::kPanel] = uint32_t(wr[2 * q]) | (hi << 16);
          }
        }
        kernels::gemm_bf16_pairs_avx512(x2.data(), T, K2, tile.data(), rows, y + r0, N, bias ? bias + r0 : nullptr);
      }
    }
    return;
  }
#pragma omp parallel num_threads(threads())
  {
    std::vector<float> rows16(avx2 ? static_cast<size_t>(kernels::kPanel * Kdim) : 0);
    std::vector<float> tile(static_cast<size_t>(tile_rows * Kdim));
#pragma omp for schedule(dynamic, 1)
    for (int64_t tile_index = 0; tile_index < n_tiles; ++tile_index) {
      const int64_t r0 = tile_index * tile_rows;
      const int64_t rows = std::min(tile_rows, N - r0);
      const float* tile_bias = bias ? bias + r0 : nullptr;
      if (avx2) {
        const int64_t panels = (rows + kernels::kPanel - 1) / kernels::kPanel;
        // Panels converted and transposed eight by eight in registers (one strided store per
        // weight cost ~40% of a 64-token prefill's GEMM time, perf); f16 and q8 rows are first
        // widened to float32 sixteen rows at a time.
        for (int64_t p = 0; p < panels; ++p) {
          const int64_t pr0 = r0 + p * kernels::kPanel, prows = std::min(kernels::kPanel, N - pr0);
          float* panel = tile.data() + p * kernels::kPanel * Kdim;
          if (W.dtype == DType::BF16) {
            kernels::pack_panel_bf16_avx2(static_cast<const uint16_t*>(W.data) + pr0 * Kdim, prows, Kdim, panel);
          } else if (W.dtype == DType::F32) {
            kernels::pack_panel_f32_avx2(static_cast<const float*>(W.data) + pr0 * Kdim, prows, Kdim, panel);
          } else {
            weights_to_f32(W, pr0 * Kdim, prows * Kdim, rows16.data());
            kernels::pack_panel_f32_avx2(rows16.data(), prows, Kdim, panel);
          }
        }
        if (avx512)
          kernels::gemm_packed_avx512(x, T, Kdim, tile.data(), rows, y + r0, N, tile_bias);
        else
          kernels::gemm_packed_avx2(x, T, Kdim, tile.data(), rows, y + r0, N, tile_bias);
        continue;
      }
      weights_to_f32(W, r0 * Kdim, rows * Kdim, tile.data());
      for (int64_t t = 0; t < T; ++t) {
        const float* xt = x + t * Kdim;
        float* yt = y + t * N + r0;
        for (int64_t r = 0; r < rows; ++r)
          yt[r] = dot_f32(tile.data() + r * Kdim, xt, Kdim) + (tile_bias ? tile_bias[r] : 0.0f);
      }
    }
  }
}

void embedding(const int32_t* ids, int64_t T, const Matrix& E, float* out) {
  for (int64_t t = 0; t < T; ++t) {
    JETLM_ASSERT(ids[t] >= 0 && ids[t] < E.rows, "token id out of range (checked by the caller)");
    weights_to_f32(E, int64_t(ids[t]) * E.cols, E.cols, out + t * E.cols);
  }
}

void rmsnorm(const float* x, int64_t R, int64_t N, const float* w, float eps, float* out) {
#pragma omp parallel for num_threads(threads()) schedule(static) if (R * N > 65536)
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = x + r * N;
    float* outr = out + r * N;
    const float inv = 1.0f / std::sqrt(dot_f32(xr, xr, N) / float(N) + eps);
    for (int64_t i = 0; i < N; ++i) outr[i] = w[i] * (xr[i] * inv);
  }
}

void rope(float* x, int64_t T, int64_t H, int64_t hd, int64_t pos0, double theta) {
  const int64_t half = hd / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv_freq[i] = std::pow(theta, -2.0 * double(i) / double(hd));
#pragma omp parallel num_threads(threads()) if (T * H * hd > 65536)
  {
    std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      // Angles in float64: positions reach 256K, where float32 angles lose precision.
      for (int64_t i = 0; i < half; ++i) {
        const double angle = double(pos0 + t) * inv_freq[i];
        cos_t[i] = float(std::cos(angle));
        sin_t[i] = float(std::sin(angle));
      }
      for (int64_t h = 0; h < H; ++h) {
        float* row = x + (t * H + h) * hd;
        for (int64_t i = 0; i < half; ++i) {
          const float a = row[i], b = row[i + half];
          row[i] = a * cos_t[i] - b * sin_t[i];
          row[i + half] = b * cos_t[i] + a * sin_t[i];
        }
      }
    }
  }
}

namespace {

// Decode attention, one work item: the `group` query heads of KV head kh at query t over keys
// [s0, s1). Every K/V row is read once for the whole group; the result is a partial softmax
// (max m, sum l, unnormalised acc) that attention_decode merges across key chunks.
JETLM_DISPATCH void attention_chunk(const float* q, const float* k, const float* v, int64_t t, int64_t kh,
                                    int64_t group, int64_t Hq, int64_t Hkv, int64_t hd, int64_t s0, int64_t s1,
                                    float scale, float* scores, float* m, float* l, float* acc) {
  const int64_t n = s1 - s0;
  for (int64_t g = 0; g < group; ++g) {
    const float* qg = q + (t * Hq + kh * group + g) * hd;
    float* sg = scores + g * n;
    const int64_t ks_stride = Hkv * hd;
    if (has_avx512()) {
      kernels::qk_scores_avx512(qg, k + (s0 * Hkv + kh) * hd, ks_stride, n, hd, scale, sg);
    } else if (has_avx2_fma()) {
      kernels::qk_scores_avx2(qg, k + (s0 * Hkv + kh) * hd, ks_stride, n, hd, scale, sg);
    } else {
      for (int64_t s = 0; s < n; ++s) sg[s] = dot_f32(qg, k + ((s0 + s) * Hkv + kh) * hd, hd) * scale;
    }
    float mx = -INFINITY;
    for (int64_t s = 0; s < n; ++s) mx = std::max(mx, sg[s]);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t s = 0; s < n; ++s) {
      sg[s] = exp_nonpositive(sg[s] - mx);
      sum += sg[s];
    }
    m[g] = mx;
    l[g] = sum;
  }
  // P V, per query head: the output columns stay in registers over the whole key chunk.
  const int64_t vs_stride = Hkv * hd;
  const float* v0 = v + (s0 * Hkv + kh) * hd;
  for (int64_t g = 0; g < group; ++g) {
    const float* pg = scores + g * n;
    float* ag = acc + g * hd;
    if (has_avx512()) {
      kernels::pv_accumulate_avx512(pg, v0, vs_stride, n, hd, ag);
      continue;
    }
    if (has_avx2_fma()) {
      kernels::pv_accumulate_avx2(pg, v0, vs_stride, n, hd, ag);
      continue;
    }
    std::fill(ag, ag + hd, 0.0f);
    for (int64_t s = 0; s < n; ++s) axpy(ag, pg[s], v0 + s * vs_stride, hd);
  }
}

// Few queries (decode): split each query's key range into chunks so all threads work even with
// one or two KV heads (flash-decoding), then merge the partial softmaxes.
void attention_decode(const float* q, const float* k, const float* v, int64_t T, int64_t S, int64_t Hq, int64_t Hkv,
                      int64_t hd, int64_t qpos0, int64_t kpos0, int64_t window, float* o, int n_threads) {
  const int64_t group = Hq / Hkv;
  const float scale = 1.0f / std::sqrt(float(hd));
  constexpr int64_t kChunk = 256;
  struct Item {
    int64_t t, kh, s0, s1;
  };
  std::vector<Item> items;
  std::vector<int64_t> first_item(size_t(T * Hkv + 1));
  for (int64_t t = 0; t < T; ++t) {
    const int64_t qpos = qpos0 + t;
    const int64_t s_begin = window > 0 ? std::max<int64_t>(0, qpos - window + 1 - kpos0) : 0;
    const int64_t s_end = std::min<int64_t>(S, qpos - kpos0 + 1);
    JETLM_ASSERT(s_end > s_begin, "a query sees no key");
    for (int64_t kh = 0; kh < Hkv; ++kh) {
      first_item[size_t(t * Hkv + kh)] = int64_t(items.size());
      for (int64_t s0 = s_begin; s0 < s_end; s0 += kChunk) items.push_back({t, kh, s0, std::min(s_end, s0 + kChunk)});
    }
  }
  first_item[size_t(T * Hkv)] = int64_t(items.size());
  const int64_t n_items = int64_t(items.size());
  std::vector<float> m(size_t(n_items * group)), l(size_t(n_items * group)), acc(size_t(n_items * group * hd));
#pragma omp parallel num_threads(n_threads) if (n_items > 1)
  {
    std::vector<float> scores(size_t(group * kChunk));
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < n_items; ++i) {
      const Item& it = items[size_t(i)];
      attention_chunk(q, k, v, it.t, it.kh, group, Hq, Hkv, hd, it.s0, it.s1, scale, scores.data(),
                      m.data() + i * group, l.data() + i * group, acc.data() + i * group * hd);
    }
  }
  for (int64_t t = 0; t < T; ++t)
    for (int64_t kh = 0; kh < Hkv; ++kh)
      for (int64_t g = 0; g < group; ++g) {
        const int64_t i0 = first_item[size_t(t * Hkv + kh)], i1 = first_item[size_t(t * Hkv + kh + 1)];
        float mx = -INFINITY;
        for (int64_t i = i0; i < i1; ++i) mx = std::max(mx, m[size_t(i * group + g)]);
        float* out = o + (t * Hq + kh * group + g) * hd;
        std::fill(out, out + hd, 0.0f);
        float denom = 0.0f;
        for (int64_t i = i0; i < i1; ++i) {
          const float w = std::exp(m[size_t(i * group + g)] - mx);  // <= 1: exponent of a non-positive difference
          denom += w * l[size_t(i * group + g)];
          const float* a = acc.data() + (i * group + g) * hd;
          for (int64_t d = 0; d < hd; ++d) out[d] += w * a[d];
        }
        for (int64_t d = 0; d < hd; ++d) out[d] /= denom;
      }
}

}  // namespace

void attention(const float* q, const float* k, const float* v, int64_t T, int64_t S, int64_t Hq,
               int64_t Hkv, int64_t hd, int64_t qpos0, int64_t kpos0, int64_t window, float* o) {
  JETLM_ASSERT(Hq % Hkv == 0);
  // Blocks of queries through the decode path: per (query, KV head) and 256-key chunk, a KV
  // head's query group at once with the SIMD score / P V kernels and a vectorised exp, then the
  // partial softmaxes merged; no T x S matrix. The block keeps the partial results (Tb x Hkv x
  // chunks x group x hd floats) near 8 MB. Before: one (query, head) pair at a time with a
  // scalar exp per key, ~3x slower per key.
  const int64_t group = Hq / Hkv, chunks = (S + 255) / 256;
  const int64_t per_query = std::max<int64_t>(1, Hkv * chunks * group * hd * int64_t(sizeof(float)));
  const int64_t block = std::clamp<int64_t>((int64_t(8) << 20) / per_query, 4, std::max<int64_t>(T, 4));
  for (int64_t t0 = 0; t0 < T; t0 += block) {
    const int64_t n = std::min(block, T - t0);
    attention_decode(q + t0 * Hq * hd, k, v, n, S, Hq, Hkv, hd, qpos0 + t0, kpos0, window, o + t0 * Hq * hd,
                     threads());
  }
}

namespace {

// The SIMD loops of silu_mul / silu, in functions of their own so the ISA dispatch applies (the
// exp polynomial's rounding needs SSE4.1's roundps; the x86-64 baseline calls a library function
// per element instead).
JETLM_DISPATCH void silu_mul_span(const float* gate, const float* up, int64_t n, float* out) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = silu_f(gate[i]) * up[i];
}

JETLM_DISPATCH void silu_span(float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = silu_f(x[i]);
}

constexpr int64_t kSiluSpan = 4096;

}  // namespace

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
#pragma omp parallel for num_threads(threads()) schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i += kSiluSpan)
    silu_mul_span(gate + i, up + i, std::min(kSiluSpan, n - i), out + i);
}

void silu(float* x, int64_t n) {
#pragma omp parallel for num_threads(threads()) schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i += kSiluSpan) silu_span(x + i, std::min(kSiluSpan, n - i));
}

void add(float* y, const float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void l2norm_rows(float* x, int64_t R, int64_t N, float scale) {
  for (int64_t r = 0; r < R; ++r) {
    float* xr = x + r * N;
    scale_inplace(xr, scale / std::sqrt(dot_f32(xr, xr, N) + 1e-6f), N);
  }
}

void dconv(const float* u, const float* kernel, int64_t T, int64_t C, int64_t K, float* state,
           float* v) {
  // Rows -(K-1)..-1 come from the state, rows 0..T-1 from u; gather them once.
  std::vector<float> history(size_t((T + K - 1) * C));
  std::copy(state, state + (K - 1) * C, history.begin());
  std::copy(u, u + T * C, history.begin() + (K - 1) * C);
#pragma omp parallel for num_threads(threads()) schedule(static) if (T * C * K > 65536)
  for (int64_t t = 0; t < T; ++t) {
    const float* ker = kernel + t * C * K;
    for (int64_t c = 0; c < C; ++c) {
      float acc = 0.0f;
      for (int64_t i = 0; i < K; ++i) acc += ker[c * K + i] * history[(t + i) * C + c];
      v[t * C + c] = silu_f(acc);
    }
  }
  std::copy(history.begin() + T * C, history.begin() + (T + K - 1) * C, state);
}

void gdn_recurrent(const float* q, const float* k, const float* v, const float* g,
                   const float* beta, int64_t T, int64_t H, int64_t dk, int64_t dv, float* S,
                   float* o) {
#pragma omp parallel num_threads(threads()) if (H * dk * dv * T > 32768)
  {
    std::vector<float> delta(static_cast<size_t>(dv));
#pragma omp for schedule(static)
    for (int64_t h = 0; h < H; ++h) {
      float* Sh = S + h * dk * dv;  // [dk, dv]
      for (int64_t t = 0; t < T; ++t) {
        const float* qt = q + (t * H + h) * dk;
        const float* kt = k + (t * H + h) * dk;
        const float* vt = v + (t * H + h) * dv;
        float* ot = o + (t * H + h) * dv;
        const float decay = std::exp(g[t * H + h]);
        const float b = beta[t * H + h];
        // delta = beta * (v - (decay * S)^T k)
        std::fill(delta.begin(), delta.end(), 0.0f);
        for (int64_t i = 0; i < dk; ++i) axpy(delta.data(), kt[i], Sh + i * dv, dv);
        for (int64_t j = 0; j < dv; ++j) delta[j] = b * (vt[j] - decay * delta[j]);
        // S = decay * S + k delta^T;  o = S^T q
        std::fill(ot, ot + dv, 0.0f);
        for (int64_t i = 0; i < dk; ++i) {
          float* row = Sh + i * dv;
          scale_inplace(row, decay, dv);
          axpy(row, kt[i], delta.data(), dv);
          axpy(ot, qt[i], row, dv);
        }
      }
    }
  }
}

void gdn_chunked(const float* q, const float* k, const float* v, const float* g, const float* beta,
                 int64_t T, int64_t H, int64_t dk, int64_t dv, float* S, float* o) {
  // Per chunk of L tokens, with G the cumulative log-decay inside the chunk and S0 the state
  // entering it, the delta rule unrolls to
  //   delta_t = beta_t (v_t - e^{G_t} S0^T k_t - sum_{j<t} e^{G_t-G_j} (k_t.k_j) delta_j)
  //   o_t     = e^{G_t} S0^T q_t + sum_{j<=t} e^{G_t-G_j} (q_t.k_j) delta_j
  //   S_end   = e^{G_L} S0 + sum_j e^{G_L-G_j} k_j delta_j^T
  // a unit lower-triangular solve for delta, then matrix products. Every decay is formed as
  // exp(later - earlier) <= 1, so strong decays never overflow.
  constexpr int64_t kChunk = 256;
#pragma omp parallel num_threads(threads())
  {
    std::vector<double> G(kChunk);
    std::vector<float> decay(size_t(kChunk * kChunk)), kk(size_t(kChunk * kChunk));
    std::vector<float> delta(size_t(kChunk * dv)), qs(size_t(kChunk * dv));
#pragma omp for schedule(static)
    for (int64_t h = 0; h < H; ++h) {
      float* Sh = S + h * dk * dv;  // [dk, dv]
      for (int64_t c0 = 0; c0 < T; c0 += kChunk) {
        const int64_t L = std::min(kChunk, T - c0);
        auto qrow = [&](int64_t t) { return q + ((c0 + t) * H + h) * dk; };
        auto krow = [&](int64_t t) { return k + ((c0 + t) * H + h) * dk; };
        double cumulative = 0.0;
        for (int64_t t = 0; t < L; ++t) {
          cumulative += g[(c0 + t) * H + h];
          G[t] = cumulative;
        }
        for (int64_t t = 0; t < L; ++t)
          for (int64_t j = 0; j <= t; ++j) {
            decay[t * kChunk + j] = float(std::exp(G[t] - G[j]));
            kk[t * kChunk + j] = dot_f32(krow(t), krow(j), dk);
          }
        // delta rows: beta_t (v_t - e^{G_t} S0^T k_t), then forward substitution.
        for (int64_t t = 0; t < L; ++t) {
          float* dt = delta.data() + t * dv;
          std::fill(dt, dt + dv, 0.0f);
          const float* kt = krow(t);
          for (int64_t i = 0; i < dk; ++i) axpy(dt, kt[i], Sh + i * dv, dv);
          const float bt = beta[(c0 + t) * H + h];
          const float eG = float(std::exp(G[t]));
          const float* vt = v + ((c0 + t) * H + h) * dv;
          for (int64_t j = 0; j < dv; ++j) dt[j] = bt * (vt[j] - eG * dt[j]);
          for (int64_t j = 0; j < t; ++j)
            axpy(dt, -bt * decay[t * kChunk + j] * kk[t * kChunk + j], delta.data() + j * dv, dv);
        }
        // Outputs, from S0 (before this chunk's update).
        for (int64_t t = 0; t < L; ++t) {
          float* ot = o + ((c0 + t) * H + h) * dv;
          std::fill(ot, ot + dv, 0.0f);
          const float* qt = qrow(t);
          for (int64_t i = 0; i < dk; ++i) axpy(ot, qt[i], Sh + i * dv, dv);
          scale_inplace(ot, float(std::exp(G[t])), dv);
          for (int64_t j = 0; j <= t; ++j)
            axpy(ot, decay[t * kChunk + j] * dot_f32(qt, krow(j), dk), delta.data() + j * dv, dv);
        }
        // State update.
        scale_inplace(Sh, float(std::exp(G[L - 1])), dk * dv);
        for (int64_t j = 0; j < L; ++j) {
          const float w = float(std::exp(G[L - 1] - G[j]));
          const float* kj = krow(j);
          const float* dj = delta.data() + j * dv;
          for (int64_t i = 0; i < dk; ++i) axpy(Sh + i * dv, w * kj[i], dj, dv);
        }
      }
    }
  }
}

void gated_rmsnorm(float* o, const float* gate, int64_t T, int64_t H, int64_t dv, const float* w,
                   float eps) {
#pragma omp parallel for num_threads(threads()) schedule(static) if (T * H * dv > 65536)
  for (int64_t r = 0; r < T * H; ++r) {
    float* orow = o + r * dv;
    const float* grow = gate + r * dv;
    const float inv = 1.0f / std::sqrt(dot_f32(orow, orow, dv) / float(dv) + eps);
    for (int64_t i = 0; i < dv; ++i) orow[i] = w[i] * (orow[i] * inv) * silu_f(grow[i]);
  }
}

}  // namespace jetlm::cpu

namespace jetlm::cpu {

void jet_gates(const float* b_raw, const float* a_raw, const float* A_log, const float* dt_bias,
               int64_t T, int64_t H, float* beta, float* g) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t i = t * H + h;
      beta[i] = 1.0f / (1.0f + std::exp(-b_raw[i]));
      const float x = a_raw[i] + dt_bias[h];
      // softplus = log(1 + e^x); torch switches to x above 20, where they agree in float32.
      const float softplus = x > 20.0f ? x : std::log1p(std::exp(x));
      g[i] = -std::exp(A_log[h]) * softplus;
    }
}

}  // namespace jetlm::cpu
