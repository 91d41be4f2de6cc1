// matmul: y[T, N] = x[T, K] W^T (+ bias), W row-major [N, K] on the device.
//  - T <= kGemvMaxT: GEMV kernels (split K across a block, or 1-4 rows per warp, by shape), 16-byte
//    streaming loads of the weights, float32 activations, float32 accumulation (decode is bound by
//    reading the weights once). Batch 1 may fuse the input's norm and a residual add
//    (matmul_decode).
//  - larger T: cuBLASLt matmul (plans cached per shape). f32 weights: pure float32 (compute 32F, no
//    TF32). bf16/f16 weights: the activations are
//    rounded to the weight type, float32 accumulation. q8: a block of rows is dequantized to
//    bf16 into scratch, then the bf16 path.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cublasLt.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "backend/cuda/cuda_common.h"
#include "core/env.h"
#include "core/error.h"

namespace jetlm::cuda {

using detail::blocks_for;

namespace {

constexpr int kWarpsPerBlock = 8;

// 16 bytes of weights -> float32 values (8 for bf16/f16, 4 for f32, 16 for int8).
template <typename WT> struct Vec;
template <> struct Vec<float> {
  static constexpr int n = 4;
  __device__ static void unpack(uint4 w, float* out) {
    out[0] = __uint_as_float(w.x); out[1] = __uint_as_float(w.y);
    out[2] = __uint_as_float(w.z); out[3] = __uint_as_float(w.w);
  }
};
template <> struct Vec<__nv_bfloat16> {
  static constexpr int n = 8;
  __device__ static void unpack(uint4 w, float* out) {
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(words[i] << 16);
      out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
    }
  }
};
template <> struct Vec<__half> {
  static constexpr int n = 8;
  __device__ static void unpack(uint4 w, float* out) {
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      __half2 h2 = *reinterpret_cast<const __half2*>(&words[i]);
      const float2 f = __half22float2(h2);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
};
template <> struct Vec<int8_t> {
  static constexpr int n = 16;
  __device__ static void unpack(uint4 w, float* out) {
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int b = 0; b < 4; ++b) out[4 * i + b] = float(int8_t((words[i] >> (8 * b)) & 0xff));
  }
};

template <typename WT> __device__ __forceinline__ float scalar_weight(const WT* w, int64_t i);
template <> __device__ __forceinline__ float scalar_weight(const float* w, int64_t i) { return w[i]; }
template <> __device__ __forceinline__ float scalar_weight(const __nv_bfloat16* w, int64_t i) { return __bfloat162float(w[i]); }
template <> __device__ __forceinline__ float scalar_weight(const __half* w, int64_t i) { return __half2float(w[i]); }
template <> __device__ __forceinline__ float scalar_weight(const int8_t* w, int64_t i) { return float(w[i]); }

// Programmatic dependent launch (sm_90): a GEMV launched with the PDL attribute issues its first
// weight loads (weights do not depend on the kernel before it), then waits for the producer's
// results (x) before touching x or y.
using detail::wait_for_producer;

__device__ __forceinline__ float q8_scale(const uint16_t* scales, int64_t row, int64_t blocks, int64_t col) {
  return __half2float(__ushort_as_half(scales[row * blocks + col / kQ8Block]));
}

// Rows r0 .. r0 + ROWS - 1 of W [N, K] and their zeroed accumulators; rows past N are clamped
// to the last row (computed, not stored), so every lane takes part in the warp shuffles.
template <typename WT, int NT, int ROWS>
__device__ __forceinline__ void init_rows(const WT* __restrict__ W, int64_t N, int64_t K, int64_t r0,
                                          const WT* (&wr)[ROWS], float (&acc)[ROWS][NT]) {
#pragma unroll
  for (int i = 0; i < ROWS; ++i) {
    wr[i] = W + min(r0 + i, N - 1) * K;
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[i][t] = 0.0f;
  }
}

// The vector loop of the GEMVs: acc[i][t] += W[r0 + i, c] x[t, c] over the 16-byte weight
// vectors v0, v0 + STRIDE, ... < v_end of rows wr[i] (STRIDE lanes share the rows; UNROLL x ROWS
// loads in flight per lane, default 8 for ROWS <= 4). `ready()` runs once in every thread, with the
// first weight loads in flight: it waits for the producer of x (PDL) and may build x in shared
// memory (XS: x is a shared-memory pointer).
template <typename WT, int NT, int ROWS, int STRIDE = 32, int UNROLL = 0, bool XS = false, typename Ready>
__device__ __forceinline__ void accumulate_rows(const float* __restrict__ x, int64_t N, int64_t K,
                                                const WT* const (&wr)[ROWS], const uint16_t* __restrict__ scales,
                                                int64_t r0, int64_t v0_first, int64_t v_end, float (&acc)[ROWS][NT],
                                                Ready ready) {
  constexpr bool kQ8 = std::is_same_v<WT, int8_t>;
  constexpr int V = Vec<WT>::n;
  constexpr int kUnroll = UNROLL > 0 ? UNROLL : ROWS >= 4 ? 2 : 8 / ROWS;
  const int64_t q8b = (K + kQ8Block - 1) / kQ8Block;
  uint4 w[kUnroll][ROWS];
  const auto load = [&](int64_t v0) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int i = 0; i < ROWS; ++i)
        if (v0 + STRIDE * u < v_end) w[u][i] = __ldcs(reinterpret_cast<const uint4*>(wr[i]) + v0 + STRIDE * u);
  };
  load(v0_first);
  ready();
  for (int64_t v0 = v0_first; v0 < v_end; v0 += STRIDE * kUnroll) {
    if (v0 != v0_first) load(v0);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + STRIDE * u;
      if (v >= v_end) break;
      const int64_t c0 = v * V;
      float wf[ROWS][V];
#pragma unroll
      for (int i = 0; i < ROWS; ++i) {
        Vec<WT>::unpack(w[u][i], wf[i]);
        if constexpr (kQ8) {
          const float s = q8_scale(scales, min(r0 + i, N - 1), q8b, c0);
#pragma unroll
          for (int j = 0; j < V; ++j) wf[i][j] *= s;
        }
      }
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const float4* xv = reinterpret_cast<const float4*>(x + t * K + c0);
#pragma unroll
        for (int j = 0; j < V / 4; ++j) {
          const float4 xx = XS ? xv[j] : __ldg(xv + j);
#pragma unroll
          for (int i = 0; i < ROWS; ++i)
            acc[i][t] += wf[i][4 * j] * xx.x + wf[i][4 * j + 1] * xx.y + wf[i][4 * j + 2] * xx.z + wf[i][4 * j + 3] * xx.w;
        }
      }
    }
  }
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + __expf(-x)); }

template <int GROUP>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int o = GROUP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Values per thread the norm prologue holds in registers in the 3-blocks-per-SM GEMVs, and the
// longest row that fits them.
constexpr int kOcc3HeldPerThread = 6;
constexpr int64_t kOcc3MaxCols = kOcc3HeldPerThread * 32 * kWarpsPerBlock;

// Batch-1 decode: the GEMV's input x [K] normalized by every block into shared memory xs [K] (the
// norm kernel's work without its launch), per group of n.group columns:
// xs[c] = w[c % group] * (x[c] * rsqrt(mean over c's group of x^2 + eps)) (* silu(gate[c])), in
// the order rmsnorm / gated_rmsnorm multiply. Every thread of the block calls it.
// HELD: x and w values per thread kept in registers between the two passes (K <= HELD * threads).
template <int HELD = 16>
__device__ void normalize_input(const float* x, int64_t K, const GemvInputNorm& n, float* xs) {
  __shared__ float partial[kWarpsPerBlock];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t groups = K / n.group;
  // x and w values a thread keeps from the sum pass for the write pass (HELD = 6: K <= 1536 with
  // 256 threads, registers for 3 blocks per SM; longer rows take the two-pass loop below).
  constexpr int kHeld = HELD;
  if (groups == 1 && K <= kHeld * int64_t(blockDim.x)) {
    // One norm over the row. x, w (and gate) are loaded once, all at the same time, and kept in
    // registers: the write pass then waits for no second round trip to memory. The same sums
    // in the same order as the loop below.
    float xv[kHeld], wv[kHeld], gv[kHeld];
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < kHeld; ++i) {
      const int64_t c = threadIdx.x + int64_t(i) * blockDim.x;
      if (c < K) {
        xv[i] = x[c];
        wv[i] = n.w[c];
        gv[i] = n.gate ? n.gate[c] : 0.0f;
      }
    }
#pragma unroll
    for (int i = 0; i < kHeld; ++i)
      if (threadIdx.x + int64_t(i) * blockDim.x < K) ss += xv[i] * xv[i];
    ss = group_sum<32>(ss);
    if (lane == 0) partial[warp] = ss;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < kWarpsPerBlock; ++i) total += partial[i];
    const float inv = rsqrtf(total / float(K) + n.eps);
#pragma unroll
    for (int i = 0; i < kHeld; ++i) {
      const int64_t c = threadIdx.x + int64_t(i) * blockDim.x;
      if (c < K) xs[c] = wv[i] * (xv[i] * inv) * (n.gate ? silu_f(gv[i]) : 1.0f);
    }
  } else if (groups == 1) {  // one norm over a long row: the whole block reduces
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < K; c += blockDim.x) ss += x[c] * x[c];
    ss = group_sum<32>(ss);
    if (lane == 0) partial[warp] = ss;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < kWarpsPerBlock; ++i) total += partial[i];
    const float inv = rsqrtf(total / float(K) + n.eps);
    for (int64_t c = threadIdx.x; c < K; c += blockDim.x)
      xs[c] = n.w[c] * (x[c] * inv) * (n.gate ? silu_f(n.gate[c]) : 1.0f);
  } else {  // a warp per group (head)
    for (int64_t g = warp; g < groups; g += kWarpsPerBlock) {
      const float* xg = x + g * n.group;
      float ss = 0.0f;
      for (int64_t i = lane; i < n.group; i += 32) ss += xg[i] * xg[i];
      const float inv = rsqrtf(group_sum<32>(ss) / float(n.group) + n.eps);
      for (int64_t i = lane; i < n.group; i += 32)
        xs[g * n.group + i] = n.w[i] * (xg[i] * inv) * (n.gate ? silu_f(n.gate[g * n.group + i]) : 1.0f);
    }
  }
  __syncthreads();
}

// The same norm into global memory, one block (the fallback of the fused GEMVs for unaligned rows).
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
input_norm_kernel(const float* __restrict__ x, int64_t K, GemvInputNorm norm, float* __restrict__ out) {
  extern __shared__ float4 x_shared[];
  float* xs = reinterpret_cast<float*>(x_shared);
  normalize_input(x, K, norm, xs);
  for (int64_t c = threadIdx.x; c < K; c += blockDim.x) out[c] = xs[c];
}

void gemv_input_norm(const float* x, int64_t K, const GemvInputNorm& norm, float* out) {
  input_norm_kernel<<<1, 32 * kWarpsPerBlock, sizeof(float) * size_t(K), stream()>>>(x, K, norm, out);
  JETLM_CUDA_CHECK_LAUNCH();
}

// GROUP lanes per ROWS weight rows (GROUP = 32: a warp; 16 or 8: a warp serves 2 or 4 row
// blocks, for short rows): y[t, r] = sum_c x[t, c] W[r, c] for t < NT. Each activation load
// serves ROWS rows (the activations come from L1, whose bandwidth, not HBM, limits NT > 1 with one
// row per warp). `vec`: rows 16-byte aligned and K a multiple of the vector width, so the weights
// stream in 16-byte loads. NORM (NT = 1, vec): x normalized per block first (normalize_input,
// dynamic shared memory of K floats). `accumulate`: y += the product (a residual add).
// SWIGLU: W holds gate and up rows interleaved (row 2i gate_i, row 2i+1 up_i); the group owns both
// rows of each pair and writes y[t, i] = silu(gate_i) * up_i into y [T, N/2] (ROWS even).
// MIN_BLOCKS: resident blocks per SM the registers must allow (3 for the norm-prologue GEMVs: 80
// registers instead of 128, so 396 blocks fit an H100 at once; see norm_occ3).
template <typename WT, int NT, int ROWS, bool SWIGLU = false, int GROUP = 32, int UNROLL = 0, bool NORM = false,
          int MIN_BLOCKS = 1>
__global__ void __launch_bounds__(32 * kWarpsPerBlock, MIN_BLOCKS)
gemv_kernel(const float* __restrict__ x, int64_t N, int64_t K, const WT* __restrict__ W,
            const uint16_t* __restrict__ scales, const float* __restrict__ bias, float* __restrict__ y, bool vec,
            GemvInputNorm norm, bool accumulate, GemvSiluRows act) {
  detail::allow_dependent_launch();
  static_assert(GROUP == 8 || GROUP == 16 || GROUP == 32);
  static_assert(!NORM || NT == 1);
  extern __shared__ float4 x_shared[];
  constexpr int kGroupsPerWarp = 32 / GROUP;
  const int lane = threadIdx.x % 32, sub = lane % GROUP;
  const int64_t warp_r0 = (int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32) * kGroupsPerWarp * ROWS;
  // Whole warps only (the groups of a warp shuffle together); with NORM every warp stays for the
  // block's barriers, its rows clamped and not stored.
  if (!NORM && warp_r0 >= N) return;
  const int64_t r0 = warp_r0 + (lane / GROUP) * ROWS;
  constexpr bool kQ8 = std::is_same_v<WT, int8_t>;
  const int64_t q8b = (K + kQ8Block - 1) / kQ8Block;
  const WT* wr[ROWS];
  float acc[ROWS][NT];
  init_rows<WT, NT, ROWS>(W, N, K, r0, wr, acc);
  if constexpr (NORM) {
    float* xs = reinterpret_cast<float*>(x_shared);
    accumulate_rows<WT, 1, ROWS, GROUP, UNROLL, true>(xs, N, K, wr, scales, r0, sub, K / Vec<WT>::n, acc, [&] {
      wait_for_producer();
      normalize_input<MIN_BLOCKS >= 3 ? kOcc3HeldPerThread : 16>(x, K, norm, xs);
    });
  } else if (vec) {
    accumulate_rows<WT, NT, ROWS, GROUP, UNROLL>(x, N, K, wr, scales, r0, sub, K / Vec<WT>::n, acc,
                                                 [] { wait_for_producer(); });
  } else {
    wait_for_producer();
    for (int64_t c = sub; c < K; c += GROUP) {
      float w[ROWS];
#pragma unroll
      for (int i = 0; i < ROWS; ++i) {
        w[i] = scalar_weight(wr[i], c);
        if constexpr (kQ8) w[i] *= q8_scale(scales, min(r0 + i, N - 1), q8b, c);
      }
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const float xx = __ldg(x + t * K + c);
#pragma unroll
        for (int i = 0; i < ROWS; ++i) acc[i][t] += w[i] * xx;
      }
    }
  }
  if constexpr (SWIGLU) {
    static_assert(ROWS % 2 == 0);
#pragma unroll
    for (int i = 0; i < ROWS; i += 2)
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const float gate = group_sum<GROUP>(acc[i][t]) + (bias ? bias[min(r0 + i, N - 1)] : 0.0f);
        const float up = group_sum<GROUP>(acc[i + 1][t]) + (bias ? bias[min(r0 + i + 1, N - 1)] : 0.0f);
        if (sub == 0 && r0 + i + 1 < N) {
          float& out = y[t * (N / 2) + (r0 + i) / 2];
          out = silu_f(gate) * up + (accumulate ? out : 0.0f);
        }
      }
  } else {
#pragma unroll
    for (int i = 0; i < ROWS; ++i)
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const float s = group_sum<GROUP>(acc[i][t]);
        if (sub == 0 && r0 + i < N) {
          float& out = y[t * N + r0 + i];
          const float v = s + (bias ? bias[r0 + i] : 0.0f) + (accumulate ? out : 0.0f);
          out = act.covers(r0 + i) ? silu_f(v) : v;
        }
      }
  }
}

// Few rows, long rows (the 1536-row down and output projections of Jet-Nemotron-2B): one block
// per ROWS rows, its kWarpsPerBlock warps each a contiguous slice of K, the warps' partial sums
// added in shared memory. With one warp per row such matrices filled a fraction of the SMs and
// streamed at ~40% of the bandwidth (ncu, batch-1 decode). Needs the vector path (`vec`).
// NORM and `accumulate` as in gemv_kernel.
template <typename WT, int NT, int ROWS, bool NORM = false>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
gemv_splitk_kernel(const float* __restrict__ x, int64_t N, int64_t K, const WT* __restrict__ W,
                   const uint16_t* __restrict__ scales, const float* __restrict__ bias, float* __restrict__ y,
                   bool /*vec*/, GemvInputNorm norm, bool accumulate, GemvSiluRows act) {
  detail::allow_dependent_launch();
  static_assert(!NORM || NT == 1);
  extern __shared__ float4 x_shared[];
  __shared__ float partial[kWarpsPerBlock][ROWS][NT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t r0 = int64_t(blockIdx.x) * ROWS;
  const WT* wr[ROWS];
  float acc[ROWS][NT];
  init_rows<WT, NT, ROWS>(W, N, K, r0, wr, acc);
  const int64_t nvec = K / Vec<WT>::n;
  // Slices in whole 32-vector strides, so every lane of a warp starts aligned with the others.
  const int64_t per_warp = (nvec + 32 * kWarpsPerBlock - 1) / (32 * kWarpsPerBlock) * 32;
  const int64_t v_begin = warp * per_warp, v_end = min(nvec, v_begin + per_warp);
  if constexpr (NORM) {
    float* xs = reinterpret_cast<float*>(x_shared);
    accumulate_rows<WT, 1, ROWS, 32, 0, true>(xs, N, K, wr, scales, r0, v_begin + lane, v_end, acc, [&] {
      wait_for_producer();
      normalize_input(x, K, norm, xs);
    });
  } else {
    accumulate_rows<WT, NT, ROWS>(x, N, K, wr, scales, r0, v_begin + lane, v_end, acc, [] { wait_for_producer(); });
  }
#pragma unroll
  for (int i = 0; i < ROWS; ++i)
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float s = group_sum<32>(acc[i][t]);
      if (lane == 0) partial[warp][i][t] = s;
    }
  __syncthreads();
  if (threadIdx.x < ROWS * NT) {
    const int i = threadIdx.x / NT, t = threadIdx.x % NT;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarpsPerBlock; ++w) sum += partial[w][i][t];
    if (r0 + i < N) {
      float& out = y[t * N + r0 + i];
      const float v = sum + (bias ? bias[r0 + i] : 0.0f) + (accumulate ? out : 0.0f);
      out = act.covers(r0 + i) ? silu_f(v) : v;
    }
  }
}

using detail::from_float;
using detail::to_float;

// y[T, N/2] = silu(y2[:, even]) * y2[:, odd]: the GEMM path of matmul_swiglu.
// IT: the GEMM's output type (float, or the weights' half type when it writes gate/up rounded).
// OT float, or the next GEMM's rounded input (bf16 / f16: the same rounding as round_input).
// Each thread takes two pairs (four inputs in one vector load; y2 16-byte aligned).
template <typename IT, typename OT>
__global__ void swiglu_pairs_kernel(const IT* __restrict__ y2, int64_t n_half, OT* __restrict__ y) {
  const int64_t i = 2 * (int64_t(blockIdx.x) * blockDim.x + threadIdx.x);
  if (i >= n_half) return;
  if (i + 1 == n_half) {  // odd n_half: the last pair alone
    y[i] = from_float<OT>(silu_f(to_float(y2[2 * i])) * to_float(y2[2 * i + 1]));
    return;
  }
  IT in[4];
  if constexpr (sizeof(IT) == 4) *reinterpret_cast<float4*>(in) = *reinterpret_cast<const float4*>(y2 + 2 * i);
  else *reinterpret_cast<uint2*>(in) = *reinterpret_cast<const uint2*>(y2 + 2 * i);
  y[i] = from_float<OT>(silu_f(to_float(in[0])) * to_float(in[1]));
  y[i + 1] = from_float<OT>(silu_f(to_float(in[2])) * to_float(in[3]));
}

using detail::use_pdl;

bool use_splitk() {
  static const bool on = env_switch("JETLM_GEMV_SPLITK", true);
  return on;
}

template <typename Kernel, typename... Args>
void launch_gemv_kernel(Kernel kernel, unsigned blocks, size_t smem, Args... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(32 * kWarpsPerBlock);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream();
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = use_pdl() ? 1 : 0;
  JETLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, args...));
}

// The norm-prologue GEMVs of batch-1 decode over rows of at most kOcc3MaxCols run at 80 registers
// (their prologue holds 6 values per thread instead of 16), so 3 blocks fit an SM (396 on an H100):
// the stacked JetBlock projection's 277 blocks then run as one wave instead of 264 + 13, and the
// fused gate/up takes 6 rows per warp (374 blocks, one wave) instead of 4 (560 blocks, 1.4 waves).
// Jet-Nemotron-2B batch-1 decode at 4K on an H100: 527 -> 553 tok/s (docs/performance.md).
// A/B switches: JETLM_GEMV_NORM_OCC=1 (the 128-register instantiations, 2 blocks per SM) and
// JETLM_GEMV_SWIGLU_ROWS=4 or 8.
bool norm_occ3() {
  static const bool on = env_int("JETLM_GEMV_NORM_OCC", 3, 1, 3) == 3;
  return on;
}
int swiglu_rows() {
  static const int rows = int(env_int("JETLM_GEMV_SWIGLU_ROWS", 6, 4, 8));
  return rows;
}

GemvLayout layout_from_env(const char* name, GemvLayout fallback) {
  const char* env = std::getenv(name);
  if (!env) return fallback;
  const std::string v = env;
  for (GemvLayout l : {GemvLayout::Auto, GemvLayout::SplitK, GemvLayout::Rows1, GemvLayout::Rows2, GemvLayout::Rows4,
                       GemvLayout::Rows4Deep, GemvLayout::Group16Rows2, GemvLayout::Group8Rows4})
    if (v == gemv_layout_name(l)) return l;
  throw Error(std::string(name) + "=" + v +
              ": expected auto, splitk, rows1, rows2, rows4, rows4deep, g16rows2 or g8rows4");
}

GemvLayout& forced_layout() {
  static GemvLayout layout = layout_from_env("JETLM_GEMV", GemvLayout::Auto);
  return layout;
}

// Single-token GEMV layout by shape: split K for matrices too short to fill the GPU with 4-row
// warps; 4-row warps beyond. Between the sizes where split K pays and where 4-row warps fill
// every SM (~4K to ~17K rows on an H100), JETLM_GEMV_MID and, for short rows (at most 64 16-byte
// vectors), JETLM_GEMV_SHORT pick the layout (A/B runs). Defaults: 4-row warps (cuda_op_bench on
// the H100: the stacked JetBlock projection 8872 x 1536 at 80% of the copy bandwidth vs 71% with
// one row per warp), and for short rows two rows per 16 lanes (the conv generator 12288 x 384 of
// Jet-Nemotron-2B: batch-1 decode 569.9-570.4 vs 560.5-566.6 tok/s with 4-row warps,
// docs/performance.md).
GemvLayout auto_layout(const DeviceMatrix& W, int64_t vectors_per_row) {
  static const GemvLayout mid = layout_from_env("JETLM_GEMV_MID", GemvLayout::Rows4);
  static const GemvLayout short_rows = layout_from_env("JETLM_GEMV_SHORT", GemvLayout::Group16Rows2);
  if (use_splitk() && W.rows < 4 * kWarpsPerBlock * detail::sm_count()) return GemvLayout::SplitK;
  if (W.rows < 4 * 32 * detail::sm_count()) return vectors_per_row <= 64 ? short_rows : mid;
  return GemvLayout::Rows4;
}

// Rows per block of the single-token split-K GEMV: 8 (JETLM_GEMV_SPLITK_ROWS=2 or 4 for A/B runs;
// 8 rows: Jet-Nemotron-2B batch-1 decode 561-566 vs 552-558 tok/s with 4, docs/performance.md).
int splitk_rows() {
  static const int rows = int(env_int("JETLM_GEMV_SPLITK_ROWS", 8, 2, 8));
  return rows;
}

// A gemv_kernel layout as template arguments: ROWS rows per GROUP lanes, UNROLL (0: the default).
template <int ROWS, int GROUP, int UNROLL>
struct RowsLayout {
  static constexpr int rows = ROWS, group = GROUP, unroll = UNROLL;
};

// gemv_kernel for one token with ROWS rows per GROUP lanes; the norm-prologue instantiations with
// registers for 3 blocks per SM (norm_occ3) where that needs no spills (ptxas: at most 8 loads in
// flight per lane and groups of 16 or 32 lanes; the deeper layouts keep their registers).
template <typename WT, bool NORM, int ROWS, int GROUP, int UNROLL>
void launch_single_rows(const float* x, const DeviceMatrix& W, const float* bias, float* y, bool vec,
                        const GemvInputNorm& norm, bool accumulate, const GemvSiluRows& act, size_t smem) {
  const WT* w = static_cast<const WT*>(W.data);
  const unsigned blocks = blocks_for(W.rows, ROWS * (32 / GROUP) * kWarpsPerBlock);
  constexpr bool kOcc3Fits = NORM && (UNROLL == 0 || ROWS * UNROLL <= 8) && GROUP >= 16;
  if constexpr (kOcc3Fits) {
    if (norm_occ3() && W.cols <= kOcc3MaxCols)
      return launch_gemv_kernel(gemv_kernel<WT, 1, ROWS, false, GROUP, UNROLL, NORM, 3>, blocks, smem, x, W.rows,
                                W.cols, w, W.scales, bias, y, vec, norm, accumulate, act);
  }
  launch_gemv_kernel(gemv_kernel<WT, 1, ROWS, false, GROUP, UNROLL, NORM>, blocks, smem, x, W.rows, W.cols, w,
                     W.scales, bias, y, vec, norm, accumulate, act);
}

// One token (NT = 1), not SwiGLU: the layout of forced_layout() or auto_layout(); NORM: the input
// normalized in each block (needs `vec`); `accumulate`: y += the product.
template <typename WT, bool NORM>
void launch_gemv_single(const float* x, const DeviceMatrix& W, const float* bias, float* y, bool vec,
                        const GemvInputNorm& norm, bool accumulate, const GemvSiluRows& act) {
  GemvLayout layout =
      forced_layout() == GemvLayout::Auto ? auto_layout(W, W.cols / Vec<WT>::n) : forced_layout();
  if (layout == GemvLayout::Auto) layout = GemvLayout::Rows4;
  if (layout == GemvLayout::SplitK && !vec) layout = GemvLayout::Rows1;  // split K needs 16-byte vectors
  const size_t smem = NORM ? sizeof(float) * size_t(W.cols) : 0;
  const auto split = [&](auto kernel, int rows_per_block) {
    launch_gemv_kernel(kernel, blocks_for(W.rows, rows_per_block), smem, x, W.rows, W.cols,
                       static_cast<const WT*>(W.data), W.scales, bias, y, vec, norm, accumulate, act);
  };
  const auto rows = [&](auto layout_tag) {
    using Tag = decltype(layout_tag);
    launch_single_rows<WT, NORM, Tag::rows, Tag::group, Tag::unroll>(x, W, bias, y, vec, norm, accumulate, act, smem);
  };
  switch (layout) {
    case GemvLayout::SplitK:
      if (splitk_rows() == 2) return split(gemv_splitk_kernel<WT, 1, 2, NORM>, 2);
      if (splitk_rows() == 4) return split(gemv_splitk_kernel<WT, 1, 4, NORM>, 4);
      return split(gemv_splitk_kernel<WT, 1, 8, NORM>, 8);
    case GemvLayout::Rows1: return rows(RowsLayout<1, 32, 0>{});
    case GemvLayout::Rows2: return rows(RowsLayout<2, 32, 4>{});
    case GemvLayout::Rows4Deep: return rows(RowsLayout<4, 32, 4>{});
    case GemvLayout::Group16Rows2: return rows(RowsLayout<2, 16, 4>{});
    case GemvLayout::Group8Rows4: return rows(RowsLayout<4, 8, 2>{});
    default: return rows(RowsLayout<4, 32, 0>{});
  }
}

template <typename WT>
bool vec_ok(const DeviceMatrix& W, const float* x) {
  return W.cols % Vec<WT>::n == 0 && (reinterpret_cast<uintptr_t>(W.data) % 16) == 0 &&
         (reinterpret_cast<uintptr_t>(x) % 16) == 0;
}

// matmul_swiglu for one token: one gate/up pair per warp on matrices too small to fill the GPU
// with 4-row warps, 6 rows (3 pairs; swiglu_rows) per warp beyond; NORM: the input normalized in
// each block.
template <typename WT, bool NORM>
void launch_gemv_swiglu_single(const float* x, const DeviceMatrix& W, float* y, bool vec, const GemvInputNorm& norm) {
  const WT* w = static_cast<const WT*>(W.data);
  const size_t smem = NORM ? sizeof(float) * size_t(W.cols) : 0;
  if (W.rows < 4 * 32 * detail::sm_count()) {
    launch_gemv_kernel(gemv_kernel<WT, 1, 2, true, 32, 0, NORM>, blocks_for(W.rows, 2 * kWarpsPerBlock), smem, x,
                       W.rows, W.cols, w, W.scales, nullptr, y, vec, norm, false, GemvSiluRows{});
    return;
  }
  const auto launch = [&](auto kernel, int rows_per_warp) {
    launch_gemv_kernel(kernel, blocks_for(W.rows, rows_per_warp * kWarpsPerBlock), smem, x, W.rows, W.cols, w,
                       W.scales, nullptr, y, vec, norm, false, GemvSiluRows{});
  };
  // 3 blocks per SM only with the norm prologue (norm_occ3); 8 rows per warp keep their registers
  // (q8 would spill at 80).
  const int rows = swiglu_rows();
  if constexpr (NORM) {
    if (norm_occ3() && W.cols <= kOcc3MaxCols) {
      if (rows == 6) return launch(gemv_kernel<WT, 1, 6, true, 32, 1, NORM, 3>, 6);
      if (rows != 8) return launch(gemv_kernel<WT, 1, 4, true, 32, 0, NORM, 3>, 4);
    }
  }
  if (rows == 6) return launch(gemv_kernel<WT, 1, 6, true, 32, 1, NORM>, 6);
  if (rows == 8) return launch(gemv_kernel<WT, 1, 8, true, 32, 1, NORM>, 8);
  launch(gemv_kernel<WT, 1, 4, true, 32, 0, NORM>, 4);
}

// matmul / matmul_swiglu for T = NT <= kGemvMaxT tokens (bias: matmul only).
template <typename WT, int NT, bool SWIGLU>
void launch_gemv_t(const float* x, const DeviceMatrix& W, const float* bias, float* y) {
  const bool vec = vec_ok<WT>(W, x);
  const WT* w = static_cast<const WT*>(W.data);
  const GemvInputNorm no_norm{};
  if constexpr (NT == 1 && !SWIGLU) {
    launch_gemv_single<WT, false>(x, W, bias, y, vec, no_norm, false, GemvSiluRows{});
  } else if constexpr (NT == 1) {
    launch_gemv_swiglu_single<WT, false>(x, W, y, vec, no_norm);
  } else {
    // Matrices with fewer rows than 4-row warps need to fill the GPU: split K across a block's warps
    // (JETLM_GEMV_SPLITK=0: 4-row warps, for A/B runs).
    if (!SWIGLU && vec && use_splitk() && W.rows < 4 * kWarpsPerBlock * detail::sm_count()) {
      launch_gemv_kernel(gemv_splitk_kernel<WT, NT, 4>, blocks_for(W.rows, 4), 0, x, W.rows, W.cols, w, W.scales,
                         bias, y, vec, no_norm, false, GemvSiluRows{});
      return;
    }
    launch_gemv_kernel(gemv_kernel<WT, NT, 4, SWIGLU>, blocks_for(W.rows, 4 * kWarpsPerBlock), 0, x, W.rows, W.cols,
                       w, W.scales, bias, y, vec, no_norm, false, GemvSiluRows{});
  }
}

// Calls f with a value of the weight's element type: float, bf16, f16, or int8 for q8.
template <typename F>
void with_weight_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::F32: return f(float{});
    case DType::BF16: return f(__nv_bfloat16{});
    case DType::F16: return f(__half{});
    default: return f(int8_t{});
  }
}

template <typename WT, bool SWIGLU = false>
void launch_gemv(const float* x, int64_t T, const DeviceMatrix& W, const float* bias, float* y) {
  switch (T) {
    case 1: return launch_gemv_t<WT, 1, SWIGLU>(x, W, bias, y);
    case 2: return launch_gemv_t<WT, 2, SWIGLU>(x, W, bias, y);
    case 3: return launch_gemv_t<WT, 3, SWIGLU>(x, W, bias, y);
    case 4: return launch_gemv_t<WT, 4, SWIGLU>(x, W, bias, y);
    case 5: return launch_gemv_t<WT, 5, SWIGLU>(x, W, bias, y);
    case 6: return launch_gemv_t<WT, 6, SWIGLU>(x, W, bias, y);
    case 7: return launch_gemv_t<WT, 7, SWIGLU>(x, W, bias, y);
    case 8: return launch_gemv_t<WT, 8, SWIGLU>(x, W, bias, y);
    default: JETLM_ASSERT(false, "GEMV is for T <= kGemvMaxT");
  }
}
static_assert(kGemvMaxT == 8);

template <typename HT>
__global__ void to_half_kernel(const float* __restrict__ x, int64_t n, HT* __restrict__ out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    if constexpr (std::is_same_v<HT, __half>) out[i] = __float2half_rn(x[i]);
    else out[i] = __float2bfloat16_rn(x[i]);
  }
}

__global__ void dequant_q8_kernel(const int8_t* __restrict__ W, const uint16_t* __restrict__ scales, int64_t rows,
                                  int64_t K, __nv_bfloat16* __restrict__ out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * K) return;
  const int64_t r = i / K, c = i % K;
  out[i] = __float2bfloat16_rn(float(W[i]) * q8_scale(scales, r, (K + kQ8Block - 1) / kQ8Block, c));
}


// One cuBLASLt plan per GEMM shape: descriptors and the heuristic's algorithm are made once.
// `bias`: the plan adds a float32 bias per output column in the epilogue (one pass less over y);
// `ok` false when cuBLASLt has no algorithm with that epilogue (the caller adds the bias itself).
struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;
  cublasLtMatmulAlgo_t candidates[8]{};  // the heuristic's best few, best first (autotune)
  int n_candidates = 0;
  bool tuned = false;
};

// Prefill GEMMs whose row count is a multiple of kAutotuneRows (full prefill chunks: the shapes
// that repeat) time the heuristic's candidates once, on their first call outside graph capture,
// and keep the fastest; other shapes (a prompt's last partial chunk) keep the heuristic's first
// choice, so arbitrary prompt lengths do not each pay for a tuning. JETLM_GEMM_AUTOTUNE=0: never.
constexpr int64_t kAutotuneRows = 256;
constexpr int kAutotuneCandidates = int(sizeof(LtPlan::candidates) / sizeof(cublasLtMatmulAlgo_t));

bool gemm_autotune() {
  static const bool on = env_switch("JETLM_GEMM_AUTOTUNE", true);
  return on;
}

constexpr size_t kLtWorkspace = size_t(32) << 20;

cublasLtHandle_t lt_handle() {
  static cublasLtHandle_t handle = [] {
    cublasLtHandle_t h = nullptr;
    JETLM_CUBLAS_CHECK(cublasLtCreate(&h));
    return h;
  }();
  return handle;
}

std::mutex& lt_mutex() {
  static std::mutex m;
  return m;
}

// Call with lt_mutex() held (the plan's descriptor also carries the bias pointer of a call).
// out_type: D's type (float32, or the operands' half type: rounded once after the float32 sum).
LtPlan& lt_plan(cudaDataType_t type, int64_t T, int64_t N, int64_t K, int64_t ldc, bool accumulate, bool bias,
                cudaDataType_t out_type) {
  static std::map<std::tuple<int, int64_t, int64_t, int64_t, int64_t, int, int>, LtPlan> plans;
  const auto key = std::make_tuple(int(type), T, N, K, ldc, int(accumulate) * 2 + int(bias), int(out_type));
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  LtPlan p;
  // Column-major view: D[N, T] = W^T (W stored as K x N, ld K, transposed) x X (K x T, ld K).
  JETLM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  JETLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a));
  JETLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b));
  if (bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_32F;
    JETLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
    JETLM_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
  }
  JETLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, type, uint64_t(K), uint64_t(N), K));
  JETLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, type, uint64_t(K), uint64_t(T), K));
  JETLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, out_type, uint64_t(N), uint64_t(T), ldc));
  cublasLtMatmulPreference_t pref = nullptr;
  JETLM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  JETLM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                          &kLtWorkspace, sizeof kLtWorkspace));
  cublasLtMatmulHeuristicResult_t results[kAutotuneCandidates]{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_handle(), p.op, p.a, p.b, p.c, p.c, pref,
                                                           kAutotuneCandidates, results, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS && !(bias && st == CUBLAS_STATUS_NOT_SUPPORTED)) JETLM_CUBLAS_CHECK(st);
  p.ok = st == CUBLAS_STATUS_SUCCESS && found > 0;
  if (!p.ok && !bias)
    throw Error("cuBLASLt has no algorithm for a " + std::to_string(T) + "x" + std::to_string(N) + "x" +
                std::to_string(K) + " GEMM");
  p.algo = results[0].algo;
  for (int i = 0; p.ok && i < found; ++i)
    if (results[i].state == CUBLAS_STATUS_SUCCESS) p.candidates[p.n_candidates++] = results[i].algo;
  return plans.emplace(key, p).first->second;
}

__global__ void bias_rows_kernel(const float* __restrict__ bias, int64_t T, int64_t N, int64_t ldc,
                                 float* __restrict__ y) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < T * N) y[(i / N) * ldc + i % N] = bias[i % N];
}

// Row-major y[T, N] (ldc) = x[T, K] W[N, K]^T (+ bias[N]), through cuBLASLt. y is float32, or of
// the operands' half type when out_type says so (the float32 sum rounded once; no bias then).
void gemm(const void* x, const void* W, cudaDataType_t type, int64_t T, int64_t N, int64_t K, const float* bias,
          void* y, int64_t ldc, cudaDataType_t out_type = CUDA_R_32F) {
  static void* workspace = [] {
    void* w = nullptr;
    JETLM_CUDA_CHECK(cudaMalloc(&w, kLtWorkspace));
    return w;
  }();
  JETLM_ASSERT(out_type == CUDA_R_32F || out_type == type, "gemm: output float32 or the operands' type");
  std::lock_guard<std::mutex> lock(lt_mutex());
  // A float32 bias in the epilogue of a half-precision D is an invalid cuBLASLt configuration
  // (CUBLAS_STATUS_INVALID_VALUE on the H200), and the bias rows below with beta = 1 gave results
  // off by more than one rounding at 384 x 1536 on the H100 (op test; split K summed in D's
  // precision would explain it).
  JETLM_ASSERT(bias == nullptr || out_type == CUDA_R_32F, "gemm: a bias needs the float32 output");
  const LtPlan* p = &lt_plan(type, T, N, K, ldc, false, bias != nullptr, out_type);
  float beta = 0.0f;
  if (bias && p->ok) {
    JETLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  } else if (bias) {
    // No epilogue algorithm: y = bias rows, then y += x W^T.
    bias_rows_kernel<<<blocks_for(T * N, 256), 256, 0, stream()>>>(bias, T, N, ldc, static_cast<float*>(y));
    JETLM_CUDA_CHECK_LAUNCH();
    p = &lt_plan(type, T, N, K, ldc, true, false, out_type);
    beta = 1.0f;
  }
  const float one = 1.0f;
  if (beta == 0.0f && !p->tuned) {
    LtPlan& plan = const_cast<LtPlan&>(*p);
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    JETLM_CUDA_CHECK(cudaStreamIsCapturing(stream(), &capture));
    // Not while a CUDA graph is captured (nothing runs then); such plans keep the first choice.
    if (capture == cudaStreamCaptureStatusNone) {
      if (gemm_autotune() && T % kAutotuneRows == 0 && plan.n_candidates > 1) {
        // Each candidate once to warm up, then three timed runs; y is rewritten by the real call.
        cudaEvent_t start, stop;
        JETLM_CUDA_CHECK(cudaEventCreate(&start));
        JETLM_CUDA_CHECK(cudaEventCreate(&stop));
        float best_ms = INFINITY;
        for (int i = 0; i < plan.n_candidates; ++i) {
          const cublasLtMatmulAlgo_t& algo = plan.candidates[i];
          if (cublasLtMatmul(lt_handle(), plan.op, &one, W, plan.a, x, plan.b, &beta, y, plan.c, y, plan.c, &algo,
                             workspace, kLtWorkspace, stream()) != CUBLAS_STATUS_SUCCESS)
            continue;
          JETLM_CUDA_CHECK(cudaEventRecord(start, stream()));
          bool ok = true;
          for (int r = 0; r < 3 && ok; ++r)
            ok = cublasLtMatmul(lt_handle(), plan.op, &one, W, plan.a, x, plan.b, &beta, y, plan.c, y, plan.c, &algo,
                                workspace, kLtWorkspace, stream()) == CUBLAS_STATUS_SUCCESS;
          JETLM_CUDA_CHECK(cudaEventRecord(stop, stream()));
          JETLM_CUDA_CHECK(cudaEventSynchronize(stop));
          float ms = 0;
          JETLM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
          if (ok && ms < best_ms) {
            best_ms = ms;
            plan.algo = algo;
          }
        }
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
      }
      plan.tuned = true;
    }
  }
  JETLM_CUBLAS_CHECK(cublasLtMatmul(lt_handle(), p->op, &one, W, p->a, x, p->b, &beta, y, p->c, y, p->c, &p->algo,
                                    workspace, kLtWorkspace, stream()));
}

void round_to(const float* x, int64_t n, DType weight_type, void* out) {
  if (weight_type == DType::F16) {
    to_half_kernel<__half><<<blocks_for(n, 256), 256, 0, stream()>>>(x, n, static_cast<__half*>(out));
  } else {
    to_half_kernel<__nv_bfloat16><<<blocks_for(n, 256), 256, 0, stream()>>>(x, n, static_cast<__nv_bfloat16*>(out));
  }
  JETLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

const char* gemv_layout_name(GemvLayout layout) {
  switch (layout) {
    case GemvLayout::Auto: return "auto";
    case GemvLayout::SplitK: return "splitk";
    case GemvLayout::Rows1: return "rows1";
    case GemvLayout::Rows2: return "rows2";
    case GemvLayout::Rows4: return "rows4";
    case GemvLayout::Rows4Deep: return "rows4deep";
    case GemvLayout::Group16Rows2: return "g16rows2";
    case GemvLayout::Group8Rows4: return "g8rows4";
  }
  return "?";
}

void set_gemv_layout(GemvLayout layout) { forced_layout() = layout; }

bool gemm_rounds_input(int64_t T, const DeviceMatrix& W) { return T > kGemvMaxT && W.dtype != DType::F32; }

void round_input(const float* x, int64_t n, const DeviceMatrix& W, void* out) {
  JETLM_ASSERT(W.dtype != DType::F32, "round_input: float32 weights take float32 activations");
  if (n > 0) round_to(x, n, W.dtype, out);
}

namespace {

cudaDataType_t half_type_of(const DeviceMatrix& W) { return W.dtype == DType::F16 ? CUDA_R_16F : CUDA_R_16BF; }

// matmul_rounded with y float32 (out_type CUDA_R_32F) or rounded to the weights' half type.
void matmul_rounded_to(const void* xh, int64_t T, const DeviceMatrix& W, const float* bias, void* y,
                       cudaDataType_t out_type) {
  JETLM_ASSERT(gemm_rounds_input(T, W), "matmul_rounded: for the GEMM of half-precision or q8 weights only");
  JETLM_ASSERT(W.dtype == DType::BF16 || W.dtype == DType::F16 || (W.dtype == DType::I8 && W.scales != nullptr),
               "matmul_rounded: unsupported weight dtype");
  const int64_t N = W.rows, K = W.cols;
  JETLM_ASSERT(N < (int64_t(1) << 31) && K < (int64_t(1) << 31) && T < (int64_t(1) << 31));
  if (W.dtype != DType::I8) return gemm(xh, W.data, half_type_of(W), T, N, K, bias, y, N, out_type);
  // q8: dequantize blocks of rows (about 32 MB of bf16 at a time) and multiply each.
  const int64_t block_rows = std::max<int64_t>(1, std::min<int64_t>(N, (int64_t(16) << 20) / K));
  auto* wb = static_cast<__nv_bfloat16*>(detail::workspace(1, size_t(block_rows * K) * 2));
  const size_t out_size = out_type == CUDA_R_32F ? 4 : 2;
  for (int64_t r0 = 0; r0 < N; r0 += block_rows) {
    const int64_t rows = std::min(block_rows, N - r0);
    dequant_q8_kernel<<<blocks_for(rows * K, 256), 256, 0, stream()>>>(
        static_cast<const int8_t*>(W.data) + r0 * K, W.scales + r0 * q8_blocks(K), rows, K, wb);
    JETLM_CUDA_CHECK_LAUNCH();
    gemm(xh, wb, CUDA_R_16BF, T, rows, K, bias ? bias + r0 : nullptr, static_cast<uint8_t*>(y) + size_t(r0) * out_size,
         N, out_type);
  }
}

// x rounded to W's half type in workspace slot 0 (the GEMM input of matmul).
const void* rounded_input(const float* x, int64_t T, const DeviceMatrix& W) {
  void* xh = detail::workspace(0, size_t(T * W.cols) * 2);
  round_to(x, T * W.cols, W.dtype, xh);
  return xh;
}

}  // namespace

void matmul_rounded(const void* xh, int64_t T, const DeviceMatrix& W, const float* bias, float* y) {
  matmul_rounded_to(xh, T, W, bias, y, CUDA_R_32F);
}

DType gemm_half_type(const DeviceMatrix& W) { return W.dtype == DType::F16 ? DType::F16 : DType::BF16; }

void matmul_half_out(const float* x, const void* x_rounded, int64_t T, const DeviceMatrix& W, void* y) {
  JETLM_ASSERT(gemm_rounds_input(T, W), "matmul_half_out: for the GEMM of half-precision or q8 weights only");
  if (T == 0) return;
  matmul_rounded_to(x_rounded ? x_rounded : rounded_input(x, T, W), T, W, nullptr, y,
                    W.dtype == DType::F16 ? CUDA_R_16F : CUDA_R_16BF);
}

void matmul(const float* x, int64_t T, const DeviceMatrix& W, const float* bias, float* y) {
  JETLM_ASSERT(W.dtype == DType::F32 || W.dtype == DType::BF16 || W.dtype == DType::F16 ||
               (W.dtype == DType::I8 && W.scales != nullptr), "matmul: unsupported weight dtype");
  JETLM_ASSERT(W.rows > 0 && W.cols > 0 && T >= 0);
  if (T == 0) return;
  if (T <= kGemvMaxT)
    return with_weight_type(W.dtype, [&](auto type) { launch_gemv<decltype(type)>(x, T, W, bias, y); });
  const int64_t N = W.rows, K = W.cols;
  JETLM_ASSERT(N < (int64_t(1) << 31) && K < (int64_t(1) << 31) && T < (int64_t(1) << 31));
  if (W.dtype == DType::F32) return gemm(x, W.data, CUDA_R_32F, T, N, K, bias, y, N);
  // Half-precision operands: x rounded to the weight type once.
  matmul_rounded(rounded_input(x, T, W), T, W, bias, y);
}

namespace {

// y (OT) = silu(y2 even) * y2 odd over n_half pairs.
template <typename IT, typename OT>
void swiglu_pairs(const IT* y2, int64_t n_half, OT* y) {
  swiglu_pairs_kernel<IT, OT><<<blocks_for((n_half + 1) / 2, 256), 256, 0, stream()>>>(y2, n_half, y);
  JETLM_CUDA_CHECK_LAUNCH();
}

template <typename IT>
void swiglu_pairs_to(const IT* y2, int64_t n_half, DType weight_type, float* y, void* y_rounded) {
  if (!y_rounded) return swiglu_pairs(y2, n_half, y);
  JETLM_ASSERT(weight_type != DType::F32, "matmul_swiglu: float32 weights have no rounded output");
  if (weight_type == DType::F16) swiglu_pairs(y2, n_half, static_cast<__half*>(y_rounded));
  else swiglu_pairs(y2, n_half, static_cast<__nv_bfloat16*>(y_rounded));
}

}  // namespace

void matmul_swiglu(const float* x, int64_t T, const DeviceMatrix& W, float* y, const void* x_rounded,
                   void* y_rounded, bool half_gate_up) {
  JETLM_ASSERT(W.rows % 2 == 0, "matmul_swiglu: W must hold gate/up row pairs");
  JETLM_ASSERT(!(x_rounded || y_rounded) || gemm_rounds_input(T, W),
               "matmul_swiglu: rounded input/output only on the GEMM path of half-precision or q8 weights");
  JETLM_ASSERT(W.dtype == DType::F32 || W.dtype == DType::BF16 || W.dtype == DType::F16 ||
               (W.dtype == DType::I8 && W.scales != nullptr), "matmul_swiglu: unsupported weight dtype");
  if (T == 0) return;
  if (T <= kGemvMaxT)
    return with_weight_type(W.dtype, [&](auto type) { launch_gemv<decltype(type), true>(x, T, W, nullptr, y); });
  // GEMM into scratch (workspace slot 12), then the pairs.
  const int64_t n_half = T * (W.rows / 2);
  if (half_gate_up && gemm_rounds_input(T, W)) {
    void* y2 = detail::workspace(12, 2 * size_t(T * W.rows));
    matmul_half_out(x, x_rounded, T, W, y2);
    if (gemm_half_type(W) == DType::F16) swiglu_pairs_to(static_cast<const __half*>(y2), n_half, W.dtype, y, y_rounded);
    else swiglu_pairs_to(static_cast<const __nv_bfloat16*>(y2), n_half, W.dtype, y, y_rounded);
    return;
  }
  auto* y2 = static_cast<float*>(detail::workspace(12, sizeof(float) * size_t(T * W.rows)));
  if (x_rounded) matmul_rounded(x_rounded, T, W, nullptr, y2);
  else matmul(x, T, W, nullptr, y2);
  swiglu_pairs_to(static_cast<const float*>(y2), n_half, W.dtype, y, y_rounded);
}

bool gemv_fuses_norm(int64_t K) { return K > 0 && sizeof(float) * size_t(K) <= kGemvNormMaxBytes; }

namespace {

void check_fusion(const char* op, const float* x, const DeviceMatrix& W, const GemvInputNorm* norm) {
  JETLM_ASSERT(W.dtype == DType::F32 || W.dtype == DType::BF16 || W.dtype == DType::F16 ||
               (W.dtype == DType::I8 && W.scales != nullptr), std::string(op) + ": unsupported weight dtype");
  JETLM_ASSERT(W.rows > 0 && W.cols > 0, std::string(op) + ": empty weight matrix");
  if (!norm) return;
  JETLM_ASSERT(gemv_fuses_norm(W.cols), std::string(op) + ": the fused input norm holds at most " +
                                            std::to_string(kGemvNormMaxBytes / 4) + " columns, got " +
                                            std::to_string(W.cols));
  JETLM_ASSERT(norm->w && norm->group > 0 && W.cols % norm->group == 0,
               std::string(op) + ": the norm needs weights and a group size dividing K = " + std::to_string(W.cols));
  (void)x;
}

}  // namespace

void matmul_decode(const float* x, const DeviceMatrix& W, const float* bias, float* y, const GemvInputNorm* norm,
                   bool accumulate, const GemvSiluRows& silu_rows) {
  check_fusion("matmul_decode", x, W, norm);
  with_weight_type(W.dtype, [&](auto type) {
    using WT = decltype(type);
    const bool vec = vec_ok<WT>(W, x);
    if (norm && vec) return launch_gemv_single<WT, true>(x, W, bias, y, vec, *norm, accumulate, silu_rows);
    if (norm) {  // rows not 16-byte aligned: the norm kernel, then the plain GEMV
      float* xn = static_cast<float*>(detail::workspace(13, sizeof(float) * size_t(W.cols)));
      gemv_input_norm(x, W.cols, *norm, xn);
      return launch_gemv_single<WT, false>(xn, W, bias, y, vec_ok<WT>(W, xn), GemvInputNorm{}, accumulate, silu_rows);
    }
    launch_gemv_single<WT, false>(x, W, bias, y, vec, GemvInputNorm{}, accumulate, silu_rows);
  });
}

void matmul_swiglu_decode(const float* x, const DeviceMatrix& W, float* y, const GemvInputNorm& norm) {
  JETLM_ASSERT(W.rows % 2 == 0, "matmul_swiglu_decode: W must hold gate/up row pairs");
  check_fusion("matmul_swiglu_decode", x, W, &norm);
  with_weight_type(W.dtype, [&](auto type) {
    using WT = decltype(type);
    if (vec_ok<WT>(W, x)) return launch_gemv_swiglu_single<WT, true>(x, W, y, true, norm);
    float* xn = static_cast<float*>(detail::workspace(13, sizeof(float) * size_t(W.cols)));
    gemv_input_norm(x, W.cols, norm, xn);
    launch_gemv<WT, true>(xn, 1, W, nullptr, y);
  });
}

double measure_bf16_gemm_tflops(int64_t n) {
  // n x n x n bf16 GEMM with float32 output: the tensor-core peak the prefill roofline divides by.
  Buffer<uint16_t> a(size_t(n * n)), b(size_t(n * n));
  Buffer<float> c(size_t(n * n));
  fill_bytes(a.data(), 0x3c, a.size() * 2);
  fill_bytes(b.data(), 0x3c, b.size() * 2);
  cudaEvent_t e0, e1;
  JETLM_CUDA_CHECK(cudaEventCreate(&e0));
  JETLM_CUDA_CHECK(cudaEventCreate(&e1));
  double best = 0;
  for (int rep = 0; rep < 6; ++rep) {
    JETLM_CUDA_CHECK(cudaEventRecord(e0, stream()));
    gemm(a.data(), b.data(), CUDA_R_16BF, n, n, n, nullptr, c.data(), n);
    JETLM_CUDA_CHECK(cudaEventRecord(e1, stream()));
    JETLM_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    JETLM_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (rep > 0) best = std::max(best, 2.0 * double(n) * double(n) * double(n) / (double(ms) * 1e-3) / 1e12);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return best;
}

double measure_read_bandwidth_gb_s(size_t bytes) {
  // Device-to-device copy: every byte is read once and written once.
  Buffer<uint8_t> src(bytes), dst(bytes);
  fill_bytes(src.data(), 1, bytes);
  cudaEvent_t e0, e1;
  JETLM_CUDA_CHECK(cudaEventCreate(&e0));
  JETLM_CUDA_CHECK(cudaEventCreate(&e1));
  double best = 0;
  for (int rep = 0; rep < 6; ++rep) {
    JETLM_CUDA_CHECK(cudaEventRecord(e0, stream()));
    JETLM_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, stream()));
    JETLM_CUDA_CHECK(cudaEventRecord(e1, stream()));
    JETLM_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    JETLM_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (rep > 0) best = std::max(best, 2.0 * double(bytes) / (double(ms) * 1e-3) / 1e9);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return best;
}

namespace detail {

// PDL on by default where the device supports it (sm_90+); JETLM_PDL=0 turns it off (A/B runs).
bool use_pdl() {
  static const bool on = [] {
    if (!env_switch("JETLM_PDL", true)) return false;
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return false;
    return major >= 9;
  }();
  return on;
}

}  // namespace detail

}  // namespace jetlm::cuda
