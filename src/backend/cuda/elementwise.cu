// Small ops: embedding, norms, rope, activations, dynamic conv, JetBlock gates. All float32 on
// device pointers; one thread per element, or one warp per row for the row reductions.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <type_traits>

#include "backend/cuda/cuda_common.h"
#include "core/env.h"
#include "core/error.h"

namespace jetlm::cuda {

using detail::blocks_for;
using detail::from_float;
using detail::to_float;

namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = 8;  // warp-per-row kernels: 8 warps per block

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + __expf(-x)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float load_weight(const void* data, DType dtype, const uint16_t* scales, int64_t cols,
                                             int64_t r, int64_t c) {
  const int64_t i = r * cols + c;
  switch (dtype) {
    case DType::BF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(data)[i]);
    case DType::F16: return __half2float(static_cast<const __half*>(data)[i]);
    case DType::I8: {
      const int64_t blocks = (cols + kQ8Block - 1) / kQ8Block;
      const float s = __half2float(reinterpret_cast<const __half*>(scales)[r * blocks + c / kQ8Block]);
      return float(static_cast<const int8_t*>(data)[i]) * s;
    }
    default: return static_cast<const float*>(data)[i];
  }
}

__global__ void embedding_kernel(const int32_t* ids, int64_t T, DeviceMatrix E, float* out) {
  detail::allow_dependent_launch();
  const int64_t t = blockIdx.y;
  const int64_t row = ids[t];
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < E.cols; c += int64_t(gridDim.x) * blockDim.x)
    out[t * E.cols + c] = (row >= 0 && row < E.rows) ? load_weight(E.data, E.dtype, E.scales, E.cols, row, c) : NAN;
}

// One block of kNormThreads per row (a warp per row left decode, where R is the batch, latency
// bound at ~40 us per 1536-wide row: each lane walked 48 dependent loads). Block-wide sum of
// squares through the warps' partial sums in shared memory.
constexpr int kNormThreads = 256;

__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[kNormThreads / 32];
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kNormThreads / 32; ++w) total += partial[w];
  return total;
}

// out = x * rsqrt(mean(x^2) + eps) * w; out may alias x (every read of x precedes the barrier).
__global__ void __launch_bounds__(kNormThreads) rmsnorm_kernel(const float* x, int64_t R, int64_t N, const float* w,
                                                               float eps, float* out) {
  const int64_t r = blockIdx.x;
  const float* xr = x + r * N;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < N; i += kNormThreads) ss += xr[i] * xr[i];
  const float inv = rsqrtf(block_sum(ss) / float(N) + eps);
  float* outr = out + r * N;
  for (int64_t i = threadIdx.x; i < N; i += kNormThreads) outr[i] = w[i] * (xr[i] * inv);
}

// The residual step fused with the next norm: x += branch, then out = rmsnorm(x) (one read of x and
// branch, one write of x and out, instead of two kernels and a re-read).
// rounded (optional): out rounded to RT as well (the next GEMM's input, as round_input makes it).
template <typename RT>
__global__ void __launch_bounds__(kNormThreads) add_rmsnorm_kernel(float* x, const float* branch, int64_t R, int64_t N,
                                                                   const float* w, float eps, float* out,
                                                                   RT* rounded) {
  const int64_t r = blockIdx.x;
  float* xr = x + r * N;
  const float* br = branch + r * N;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < N; i += kNormThreads) {
    const float v = xr[i] + br[i];
    xr[i] = v;
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss) / float(N) + eps);
  float* outr = out + r * N;
  for (int64_t i = threadIdx.x; i < N; i += kNormThreads) {
    const float y = w[i] * (xr[i] * inv);
    outr[i] = y;
    if constexpr (!std::is_same_v<RT, float>) rounded[r * N + i] = from_float<RT>(y);
  }
}

__global__ void l2norm_kernel(float* x, int64_t R, int64_t N, float scale) {
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  float* xr = x + r * N;
  float ss = 0;
  for (int64_t i = lane; i < N; i += 32) ss += xr[i] * xr[i];
  ss = warp_sum(ss);
  const float f = scale * rsqrtf(ss + 1e-6f);
  for (int64_t i = lane; i < N; i += 32) xr[i] *= f;
}

// rounded (optional): o rounded to RT as well (the output projection's input).
template <typename RT>
__global__ void gated_rmsnorm_kernel(float* o, const float* gate, int64_t R, int64_t dv, const float* w, float eps,
                                     RT* rounded) {
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  float* orow = o + r * dv;
  const float* grow = gate + r * dv;
  float ss = 0;
  for (int64_t i = lane; i < dv; i += 32) ss += orow[i] * orow[i];
  ss = warp_sum(ss);
  const float inv = rsqrtf(ss / float(dv) + eps);
  for (int64_t i = lane; i < dv; i += 32) {
    const float y = w[i] * (orow[i] * inv) * silu_f(grow[i]);
    orow[i] = y;
    if constexpr (!std::is_same_v<RT, float>) rounded[r * dv + i] = from_float<RT>(y);
  }
}

// One thread per (t, i < hd/2) pair, looping over heads: angles in float64 (positions reach 256K,
// where float32 angles lose precision), as the CPU backend does.
__global__ void rope_kernel(float* x, int64_t T, int64_t H, int64_t hd, int64_t pos0, double log_theta) {
  const int64_t half = hd / 2;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= T * half) return;
  const int64_t t = idx / half, i = idx % half;
  const double inv_freq = exp(-2.0 * double(i) / double(hd) * log_theta);
  double s, c;
  sincos(double(pos0 + t) * inv_freq, &s, &c);
  const float cf = float(c), sf = float(s);
  for (int64_t h = 0; h < H; ++h) {
    float* row = x + (t * H + h) * hd;
    const float a = row[i], b = row[i + half];
    row[i] = a * cf - b * sf;
    row[i + half] = b * cf + a * sf;
  }
}

__global__ void silu_mul_kernel(const float* gate, const float* up, int64_t n, float* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = silu_f(gate[i]) * up[i];
}

__global__ void silu_kernel(float* x, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = silu_f(x[i]);
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] += x[i];
}

// v[t, c] = silu(sum_i kernel[t, c, i] * hist(t - K + 1 + i, c)), hist(j < 0) from the state.
__global__ void dconv_kernel(const float* u, const float* kernel, int64_t T, int64_t C, int64_t K,
                             const float* state, float* v) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= T * C) return;
  const int64_t t = idx / C, c = idx % C;
  const float* ker = kernel + idx * K;
  float acc = 0;
  for (int64_t i = 0; i < K; ++i) {
    const int64_t j = t - K + 1 + i;
    acc += ker[i] * (j >= 0 ? u[j * C + c] : state[(j + K - 1) * C + c]);
  }
  v[idx] = silu_f(acc);
}

// dconv_kernel for a fixed K (the JetBlock's 4 taps): the thread's K weights in one vector load
// and 32-bit index math. The generic kernel (64-bit division, scalar loads) took 88 us per Jet-2B
// layer at 2048 tokens (ncu, 2026-12-06), ~1.7x its 150 MB at 3 TB/s. The same products in the
// same order: the same bits.
template <int K>
__global__ void dconv_fixed_kernel(const float* __restrict__ u, const float* __restrict__ kernel, int T, int C,
                                   const float* __restrict__ state, float* __restrict__ v) {
  static_assert(K == 4, "one vector load of the taps");
  const int idx = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (idx >= T * C) return;
  const int t = idx / C, c = idx - t * C;
  const float4 w = *reinterpret_cast<const float4*>(kernel + int64_t(idx) * K);
  const float ker[K] = {w.x, w.y, w.z, w.w};
  float acc = 0;
#pragma unroll
  for (int i = 0; i < K; ++i) {
    const int j = t - K + 1 + i;
    acc += ker[i] * (j >= 0 ? u[int64_t(j) * C + c] : state[(j + K - 1) * C + c]);
  }
  v[idx] = silu_f(acc);
}

// New state rows r < K-1 = hist(T - (K-1) + r); one thread per channel reads all before writing
// (the shift overlaps itself when T < K-1).
__global__ void dconv_state_kernel(const float* u, int64_t T, int64_t C, int64_t K, float* state) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float rows[kMaxConvTaps];
#pragma unroll
  for (int r = 0; r < kMaxConvTaps - 1; ++r) {
    if (r < K - 1) {
      const int64_t j = T - (K - 1) + r;
      rows[r] = j >= 0 ? u[j * C + c] : state[(j + K - 1) * C + c];
    }
  }
#pragma unroll
  for (int r = 0; r < kMaxConvTaps - 1; ++r)
    if (r < K - 1) state[r * C + c] = rows[r];
}

// beta = sigmoid(b_raw), g = -e^{A_log} softplus(a_raw + dt_bias): the JetBlock's gates of one
// head and token.
__device__ __forceinline__ void jet_gate_values(float b_raw, float a_raw, float A_log, float dt_bias, float* beta,
                                                float* g) {
  *beta = 1.0f / (1.0f + expf(-b_raw));
  const float x = a_raw + dt_bias;
  const float softplus = x > 20.0f ? x : log1pf(expf(x));
  *g = -expf(A_log) * softplus;
}

__global__ void jet_gates_kernel(const float* b_raw, const float* a_raw, const float* A_log, const float* dt_bias,
                                 int64_t T, int64_t H, float* beta, float* g) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= T * H) return;
  const int64_t h = i % H;
  jet_gate_values(b_raw[i], a_raw[i], A_log[h], dt_bias[h], beta + i, g + i);
}

// One q or k head row of the JetBlock's stacked projection (a warp): dst = silu(src) scaled to
// unit L2 norm times `scale`, as silu_kernel then l2norm_kernel compute it (same per-lane order
// and warp_sum).
template <typename FT>
__device__ __forceinline__ void jet_qk_head(const FT* src, float* dst, int64_t dk, int lane, float scale) {
  float ss = 0;
  for (int64_t i = lane; i < dk; i += 32) {
    const float x = silu_f(to_float(src[i]));
    ss += x * x;
  }
  ss = warp_sum(ss);
  const float f = scale * rsqrtf(ss + 1e-6f);
  for (int64_t i = lane; i < dk; i += 32) dst[i] = silu_f(to_float(src[i])) * f;
}

// Head h's gates from its raw b and a (ba: the row's b [H] | a [H]), as jet_gates_kernel.
template <typename FT>
__device__ __forceinline__ void jet_head_gates(const FT* ba, int64_t H, int64_t h, const float* A_log,
                                               const float* dt_bias, float* beta, float* g) {
  jet_gate_values(to_float(ba[h]), to_float(ba[H + h]), A_log[h], dt_bias[h], beta, g);
}

// Element i of a row's u | gate | hidden part (u, gate copied, silu(hidden)).
template <typename FT>
__device__ __forceinline__ void jet_row_rest(const FT* rest, int64_t i, int64_t value_dim, int64_t H, float* u,
                                             float* gate, float* hidden) {
  if (i < value_dim) u[i] = to_float(rest[i]);
  else if (i < 2 * value_dim) gate[i - value_dim] = to_float(rest[i]);
  else hidden[i - 2 * value_dim] = silu_f(to_float(rest[2 * H + i]));
}

// Blocks 0..H-1: head h's q (warp 0) and k (warp 1) rows, silu then L2 norm, as silu_kernel then
// l2norm_kernel compute them (same per-lane order and warp_sum); thread 64 its gates, as
// jet_gates_kernel. Blocks from H on: the u/gate copies and silu(hidden), one element per thread.
template <typename FT>
__global__ void jet_decode_prep_kernel(const FT* __restrict__ fused, int64_t N, int64_t H, int64_t dk, int64_t dv,
                                       int64_t gh, float q_scale, const float* __restrict__ A_log,
                                       const float* __restrict__ dt_bias,
                                       float* __restrict__ q, float* __restrict__ k, float* __restrict__ u,
                                       float* __restrict__ gate, float* __restrict__ hidden, float* __restrict__ beta,
                                       float* __restrict__ g) {
  detail::allow_dependent_launch();
  const int64_t b = blockIdx.y;
  const FT* row = fused + b * N;
  const int64_t key_dim = H * dk, value_dim = H * dv;
  if (int64_t(blockIdx.x) < H) {
    const int64_t h = blockIdx.x;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (warp < 2)
      jet_qk_head(row + warp * key_dim + h * dk, (warp == 0 ? q : k) + (b * H + h) * dk, dk, lane,
                  warp == 0 ? q_scale : 1.0f);
    else if (threadIdx.x == 64)
      jet_head_gates(row + 2 * key_dim + 2 * value_dim, H, h, A_log, dt_bias, beta + b * H + h, g + b * H + h);
    return;
  }
  const int64_t i = (int64_t(blockIdx.x) - H) * blockDim.x + threadIdx.x;
  if (i < 2 * value_dim + gh)
    jet_row_rest(row + 2 * key_dim, i, value_dim, H, u + b * value_dim, gate + b * value_dim, hidden + b * gh);
}

// jet_decode_prep_kernel's work for many rows (prefill): one block per row, every warp on q/k
// head rows (w, w + 8, ...), threads < H on the gates, then the whole block on the copies and
// silu(hidden). The same per-element arithmetic in the same orders: the same bits.
template <typename FT>
__global__ void __launch_bounds__(kThreads) jet_prefill_prep_kernel(
    const FT* __restrict__ fused, int64_t N, int64_t H, int64_t dk, int64_t dv, int64_t gh, float q_scale,
    const float* __restrict__ A_log, const float* __restrict__ dt_bias, float* __restrict__ q, float* __restrict__ k,
    float* __restrict__ u, float* __restrict__ gate, float* __restrict__ hidden, float* __restrict__ beta,
    float* __restrict__ g) {
  const int64_t b = blockIdx.x;
  const FT* row = fused + b * N;
  const int64_t key_dim = H * dk, value_dim = H * dv;
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  for (int64_t hr = warp; hr < 2 * H; hr += kThreads / 32) {  // hr < H: q head hr; else k head hr - H
    const bool is_q = hr < H;
    const int64_t h = is_q ? hr : hr - H;
    jet_qk_head(row + (is_q ? 0 : key_dim) + h * dk, (is_q ? q : k) + (b * H + h) * dk, dk, lane,
                is_q ? q_scale : 1.0f);
  }
  for (int64_t h = threadIdx.x; h < H; h += kThreads)
    jet_head_gates(row + 2 * key_dim + 2 * value_dim, H, h, A_log, dt_bias, beta + b * H + h, g + b * H + h);
  for (int64_t i = threadIdx.x; i < 2 * value_dim + gh; i += kThreads)
    jet_row_rest(row + 2 * key_dim, i, value_dim, H, u + b * value_dim, gate + b * value_dim, hidden + b * gh);
}

// Rows from which jet_decode_prep takes the one-block-per-row layout (prefill chunks); on by
// default, JETLM_PREP_ROWS=0 keeps the decode layout. H100, Jet-2B prefill of 4,096 tokens
// (2026-12-08, alternating): 72,813 / 72,416 vs 71,885 / 71,780 tok/s (+1.1%); the same bits
// (JetDecodePrepEqualsTheSeparateOps).
constexpr int64_t kPrepRowsMin = 64;
bool prefill_prep_rows() { return env_switch("JETLM_PREP_ROWS", true); }  // read per launch: tests switch it

template <typename FT>
void launch_jet_decode_prep(const FT* fused, int64_t B, int64_t H, int64_t dk, int64_t dv, int64_t gh, float q_scale,
                            const float* A_log, const float* dt_bias, float* q, float* k, float* u, float* gate,
                            float* hidden, float* beta, float* g) {
  JETLM_ASSERT(H >= 1 && dk >= 1 && dv >= 1 && gh >= 0 && B <= 65535);
  if (B == 0) return;
  const int64_t N = 2 * H * dk + 2 * H * dv + 2 * H + gh;
  if (B >= kPrepRowsMin && prefill_prep_rows()) {
    jet_prefill_prep_kernel<FT><<<unsigned(B), kThreads, 0, stream()>>>(fused, N, H, dk, dv, gh, q_scale, A_log,
                                                                        dt_bias, q, k, u, gate, hidden, beta, g);
  } else {
    const int64_t rest_blocks = (2 * H * dv + gh + kThreads - 1) / kThreads;
    const dim3 grid{unsigned(H + rest_blocks), unsigned(B)};
    jet_decode_prep_kernel<FT><<<grid, kThreads, 0, stream()>>>(fused, N, H, dk, dv, gh, q_scale, A_log, dt_bias, q,
                                                                k, u, gate, hidden, beta, g);
  }
  JETLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

void jet_decode_prep(const float* fused, int64_t B, int64_t H, int64_t dk, int64_t dv, int64_t gh, float q_scale,
                     const float* A_log, const float* dt_bias, float* q, float* k, float* u, float* gate,
                     float* hidden, float* beta, float* g) {
  launch_jet_decode_prep(fused, B, H, dk, dv, gh, q_scale, A_log, dt_bias, q, k, u, gate, hidden, beta, g);
}

void jet_decode_prep(const void* fused, DType fused_type, int64_t B, int64_t H, int64_t dk, int64_t dv, int64_t gh,
                     float q_scale, const float* A_log, const float* dt_bias, float* q, float* k, float* u,
                     float* gate, float* hidden, float* beta, float* g) {
  switch (fused_type) {
    case DType::F32:
      return launch_jet_decode_prep(static_cast<const float*>(fused), B, H, dk, dv, gh, q_scale, A_log, dt_bias, q, k,
                                    u, gate, hidden, beta, g);
    case DType::BF16:
      return launch_jet_decode_prep(static_cast<const __nv_bfloat16*>(fused), B, H, dk, dv, gh, q_scale, A_log,
                                    dt_bias, q, k, u, gate, hidden, beta, g);
    case DType::F16:
      return launch_jet_decode_prep(static_cast<const __half*>(fused), B, H, dk, dv, gh, q_scale, A_log, dt_bias, q,
                                    k, u, gate, hidden, beta, g);
    default: JETLM_ASSERT(false, "jet_decode_prep: fused rows must be float32, bf16 or f16");
  }
}

void embedding(const int32_t* ids, int64_t T, const DeviceMatrix& E, float* out) {
  JETLM_ASSERT(T >= 0 && E.cols > 0);
  JETLM_ASSERT(E.dtype != DType::I8 || E.scales != nullptr, "q8 matrix without scales");
  if (T == 0) return;
  JETLM_ASSERT(T <= 65535, "embedding: at most 65535 tokens per call");
  dim3 grid(blocks_for(E.cols, kThreads), unsigned(T));
  embedding_kernel<<<grid, kThreads, 0, stream()>>>(ids, T, E, out);
  JETLM_CUDA_CHECK_LAUNCH();
}

void rmsnorm(const float* x, int64_t R, int64_t N, const float* w, float eps, float* out) {
  if (R == 0) return;
  JETLM_ASSERT(R < (int64_t(1) << 31));
  rmsnorm_kernel<<<unsigned(R), kNormThreads, 0, stream()>>>(x, R, N, w, eps, out);
  JETLM_CUDA_CHECK_LAUNCH();
}

void add_rmsnorm(float* x, const float* branch, int64_t R, int64_t N, const float* w, float eps, float* out,
                 void* out_rounded, DType rounded_type) {
  if (R == 0) return;
  JETLM_ASSERT(R < (int64_t(1) << 31));
  JETLM_ASSERT(!out_rounded || rounded_type == DType::BF16 || rounded_type == DType::F16,
               "add_rmsnorm: the rounded output is bf16 or f16");
  if (!out_rounded)
    add_rmsnorm_kernel<float><<<unsigned(R), kNormThreads, 0, stream()>>>(x, branch, R, N, w, eps, out, nullptr);
  else if (rounded_type == DType::F16)
    add_rmsnorm_kernel<<<unsigned(R), kNormThreads, 0, stream()>>>(x, branch, R, N, w, eps, out,
                                                                   static_cast<__half*>(out_rounded));
  else
    add_rmsnorm_kernel<<<unsigned(R), kNormThreads, 0, stream()>>>(x, branch, R, N, w, eps, out,
                                                                   static_cast<__nv_bfloat16*>(out_rounded));
  JETLM_CUDA_CHECK_LAUNCH();
}

void l2norm_rows(float* x, int64_t R, int64_t N, float scale) {
  if (R == 0) return;
  l2norm_kernel<<<blocks_for(R, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream()>>>(x, R, N, scale);
  JETLM_CUDA_CHECK_LAUNCH();
}

void gated_rmsnorm(float* o, const float* gate, int64_t T, int64_t H, int64_t dv, const float* w, float eps,
                   void* o_rounded, DType rounded_type) {
  const int64_t R = T * H;
  if (R == 0) return;
  JETLM_ASSERT(!o_rounded || rounded_type == DType::BF16 || rounded_type == DType::F16,
               "gated_rmsnorm: the rounded output is bf16 or f16");
  const unsigned blocks = blocks_for(R, kRowsPerBlock), threads = 32 * kRowsPerBlock;
  if (!o_rounded)
    gated_rmsnorm_kernel<float><<<blocks, threads, 0, stream()>>>(o, gate, R, dv, w, eps, nullptr);
  else if (rounded_type == DType::F16)
    gated_rmsnorm_kernel<<<blocks, threads, 0, stream()>>>(o, gate, R, dv, w, eps, static_cast<__half*>(o_rounded));
  else
    gated_rmsnorm_kernel<<<blocks, threads, 0, stream()>>>(o, gate, R, dv, w, eps,
                                                           static_cast<__nv_bfloat16*>(o_rounded));
  JETLM_CUDA_CHECK_LAUNCH();
}

void rope(float* x, int64_t T, int64_t H, int64_t hd, int64_t pos0, double theta) {
  JETLM_ASSERT(hd % 2 == 0, "rope needs an even head dim");
  const int64_t n = T * (hd / 2);
  if (n == 0) return;
  rope_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(x, T, H, hd, pos0, std::log(theta));
  JETLM_CUDA_CHECK_LAUNCH();
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  if (n == 0) return;
  silu_mul_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(gate, up, n, out);
  JETLM_CUDA_CHECK_LAUNCH();
}

void silu(float* x, int64_t n) {
  if (n == 0) return;
  silu_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(x, n);
  JETLM_CUDA_CHECK_LAUNCH();
}

void add(float* y, const float* x, int64_t n) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(y, x, n);
  JETLM_CUDA_CHECK_LAUNCH();
}

void dconv(const float* u, const float* kernel, int64_t T, int64_t C, int64_t K, float* state, float* v) {
  JETLM_ASSERT(K >= 1 && K <= kMaxConvTaps, "dconv: 1 <= K <= kMaxConvTaps");
  if (T == 0 || C == 0) return;
  if (K == 4 && T * C < (int64_t(1) << 31) && reinterpret_cast<uintptr_t>(kernel) % 16 == 0) {
    dconv_fixed_kernel<4><<<blocks_for(T * C, kThreads), kThreads, 0, stream()>>>(u, kernel, int(T), int(C), state, v);
  } else {
    dconv_kernel<<<blocks_for(T * C, kThreads), kThreads, 0, stream()>>>(u, kernel, T, C, K, state, v);
  }
  JETLM_CUDA_CHECK_LAUNCH();
  if (K > 1) {
    dconv_state_kernel<<<blocks_for(C, kThreads), kThreads, 0, stream()>>>(u, T, C, K, state);
    JETLM_CUDA_CHECK_LAUNCH();
  }
}

void jet_gates(const float* b_raw, const float* a_raw, const float* A_log, const float* dt_bias, int64_t T,
               int64_t H, float* beta, float* g) {
  if (T * H == 0) return;
  jet_gates_kernel<<<blocks_for(T * H, kThreads), kThreads, 0, stream()>>>(b_raw, a_raw, A_log, dt_bias, T, H,
                                                                           beta, g);
  JETLM_CUDA_CHECK_LAUNCH();
}

}  // namespace jetlm::cuda
