// Gated delta rule (JetBlock): the recurrent kernel (decode) and the chunked kernels (prefill).
// Shapes: q, k [T, H, dk]; v, o [T, H, dv]; g, beta [T, H]; S [H, dk, dv] float32, in place.
//
// Chunked form (chunks of 64 tokens). With G_t the cumulative log decay inside a chunk (float64
// sums), S0 the state entering it and M[t][j] = beta_t e^{G_t - G_j} (k_t . k_j) for j < t:
//   (I + M) delta = beta v - beta e^{G} K S0     =>  delta = U - W S0,
//   U = (I + M)^{-1} beta V,  W = (I + M)^{-1} beta e^{G} K         (phase 1, all chunks at once)
//   o_t   = e^{G_t} S0^T q_t + sum_{j<=t} e^{G_t - G_j} (q_t . k_j) delta_j
//   S_end = e^{G_L} S0 + sum_j e^{G_L - G_j} k_j delta_j^T          (phase 2, chunk after chunk)
// Every decay factor is exp of (later - earlier) <= 0, so decays of -50 per token never
// overflow; (I + M)^{-1} is applied by forward substitution, column by column, as the CPU does.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <type_traits>

#include <cooperative_groups.h>
#include <mma.h>

#include "backend/cuda/cuda_common.h"
#include "core/env.h"
#include "core/error.h"

namespace jetlm::cuda {

namespace {

// ---- recurrent ----------------------------------------------------------------------------------
// Block = (32 value columns) x (ceil(dk/32) warps); warp w keeps rows 32w..32w+31 of its columns
// of S in registers for all T tokens: the state is read and written once.
// MaxThreads: 256 (dk <= 256, the usual case: room for the 32 state registers per thread without
// spills) or 1024 (dk up to 1024, registers capped at 64).
// Decode with the dynamic conv fused in (CONV): v of (sequence b, channel h*dv + j) is
// silu(sum_i kernel[c, i] hist_i) over the conv state and u, computed by warp 0's lane j (each
// channel belongs to one block) exactly as dconv_step_kernel does, which also shifts the state.
struct ConvStep {
  const float* u = nullptr;       // [B, H*dv] pre-conv values
  const float* kernel = nullptr;  // [B, H*dv, K]
  float* pool = nullptr;          // conv states, [slots, K-1, H*dv]
  int K = 0;
};

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + __expf(-x)); }

template <int MaxThreads, bool CONV = false>
__global__ void __launch_bounds__(MaxThreads) gdn_recurrent_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                                             const float* __restrict__ v, const float* __restrict__ g,
                                                             const float* __restrict__ beta, int64_t T, int64_t H,
                                                             int64_t dk, int64_t dv, float* __restrict__ S,
                                                             float* __restrict__ o, const int32_t* __restrict__ slots,
                                                             ConvStep conv = {}) {
  detail::allow_dependent_launch();
  extern __shared__ float sm[];
  __shared__ float v_s[32];
  const int warps = blockDim.x / 32;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* k_s = sm;                  // [warps * 32]
  float* q_s = k_s + warps * 32;    // [warps * 32]
  float* red1 = q_s + warps * 32;   // [warps][32]
  float* red2 = red1 + warps * 32;  // [warps][32]
  const int64_t h = blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * 32 + lane;
  const bool col_ok = j < dv;
  // Batched decode (gridDim.z = B sequences of T tokens each): sequence b owns rows b*T .. b*T+T-1
  // and its slot's state. (Moving the row pointers instead costs registers and spills.)
  const int64_t b = blockIdx.z;
  float* Sh = S + ((slots ? int64_t(slots[b]) : b) * H + h) * dk * dv;
  float st[32];
#pragma unroll
  for (int r = 0; r < 32; ++r) {
    const int64_t i = int64_t(warp) * 32 + r;
    st[r] = (col_ok && i < dk) ? Sh[i * dv + j] : 0.0f;
  }
  for (int64_t t = b * T; t < (b + 1) * T; ++t) {
    __syncthreads();  // k_s/q_s/red of the previous token consumed
    for (int i = threadIdx.x; i < warps * 32; i += blockDim.x) {
      k_s[i] = i < dk ? k[(t * H + h) * dk + i] : 0.0f;
      q_s[i] = i < dk ? q[(t * H + h) * dk + i] : 0.0f;
    }
    if constexpr (CONV) {
      if (warp == 0 && col_ok) {  // T == 1: t == b
        const int64_t C = H * dv, c = h * dv + j, K = conv.K;
        float* state = conv.pool + (slots ? int64_t(slots[b]) : b) * (K - 1) * C;
        const float* ker = conv.kernel + (b * C + c) * K;
        float hist[kMaxConvTaps];
#pragma unroll
        for (int i = 0; i < kMaxConvTaps; ++i)
          if (i < K - 1) hist[i] = state[i * C + c];
        const float x = conv.u[b * C + c];
        float acc = ker[K - 1] * x;
#pragma unroll
        for (int i = 0; i < kMaxConvTaps; ++i)
          if (i < K - 1) acc += ker[i] * hist[i];
        v_s[lane] = silu_f(acc);
#pragma unroll
        for (int i = 0; i < kMaxConvTaps; ++i)
          if (i < K - 2) state[i * C + c] = hist[i + 1];
        if (K > 1) state[(K - 2) * C + c] = x;
      }
    }
    __syncthreads();
    const float decay = expf(g[t * H + h]);
    const float b = beta[t * H + h];
    const float* kw = k_s + warp * 32;
    const float* qw = q_s + warp * 32;
    float part = 0.0f;
#pragma unroll
    for (int r = 0; r < 32; ++r) part += st[r] * kw[r];
    red1[warp * 32 + lane] = part;
    __syncthreads();
    float kS = 0.0f;
    for (int w = 0; w < warps; ++w) kS += red1[w * 32 + lane];
    const float vj = CONV ? v_s[lane] : (col_ok ? v[(t * H + h) * dv + j] : 0.0f);
    const float delta = col_ok ? b * (vj - decay * kS) : 0.0f;
    float po = 0.0f;
#pragma unroll
    for (int r = 0; r < 32; ++r) {
      st[r] = decay * st[r] + kw[r] * delta;
      po += st[r] * qw[r];
    }
    red2[warp * 32 + lane] = po;
    __syncthreads();
    if (warp == 0 && col_ok) {
      float out = 0.0f;
      for (int w = 0; w < warps; ++w) out += red2[w * 32 + lane];
      o[(t * H + h) * dv + j] = out;
    }
  }
#pragma unroll
  for (int r = 0; r < 32; ++r) {
    const int64_t i = int64_t(warp) * 32 + r;
    if (col_ok && i < dk) Sh[i * dv + j] = st[r];
  }
}

// ---- chunked, phase 1: per (chunk, head), independent of the state ---------------------------------
constexpr int kChunk = 64;
constexpr int kPrepThreads = 256;

struct ChunkWork {
  float* W;  // [nc, H, 64, dk]
  float* U;  // [nc, H, 64, dv]
  float* P;  // [nc, H, 64, 64]   P[t][j] = e^{G_t - G_j} q_t.k_j (j <= t), else 0
  float* E;  // [nc, H, 64, 2]    (e^{G_t}, e^{G_last - G_t})
  // Tensor-core state pass only (null otherwise): decays folded into the operands.
  float* Qg = nullptr;  // [nc, H, 64, dk]  e^{G_t} q_t
  float* Kd = nullptr;  // [nc, H, 64, dk]  e^{G_last - G_t} k_t
  // Split state pass only (null otherwise): what the output kernel needs from the pass.
  float* Sc = nullptr;  // [nc, H, dk, dv]  the state at the chunk's start
  float* Dl = nullptr;  // [nc, H, 64, dv]  delta = U - W S_c
};

// Row strides of the prep kernel's shared tiles: q/k rows padded to a 16-byte multiple (+4 floats
// against bank conflicts) so the dot products read float4s; M rows likewise.
__host__ __device__ inline int64_t prep_ld(int64_t dk) { return (dk + 3) / 4 * 4 + 4; }
constexpr int kPrepLdM = kChunk + 4;

size_t prep_smem(int64_t dk) {
  return sizeof(float) * size_t(2 * kChunk * prep_ld(dk) + 2 * kChunk * kPrepLdM + 3 * kChunk) +
         sizeof(double) * kChunk;
}
// With INVERSE: a [64][68] panel of beta V after the per-token arrays.
size_t prep_smem_inverse(int64_t dk) { return prep_smem(dk) + sizeof(float) * size_t(kChunk * kPrepLdM); }

// acc += A[16 x K] B[K x 16] with three TF32 products per step (a_lo b_hi + a_hi b_lo + a_hi b_hi:
// the split operands keep ~fp32 accuracy). A row-major with stride lda; B in BLayout with stride
// ldb (row-major: B[k][n] at k * ldb + n; col-major: at n * ldb + k). K % 8 == 0.
template <typename BLayout>
__device__ __forceinline__ void mma_3xtf32(nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 8, float>& acc,
                                           const float* A, unsigned lda, const float* B, unsigned ldb, int K) {
  using namespace nvcuda;
  constexpr bool b_row = std::is_same_v<BLayout, wmma::row_major>;
  for (int kk = 0; kk < K; kk += 8) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a_hi, a_lo;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, BLayout> b_hi, b_lo;
    wmma::load_matrix_sync(a_hi, A + kk, lda);
    wmma::load_matrix_sync(b_hi, B + (b_row ? size_t(kk) * ldb : size_t(kk)), ldb);
#pragma unroll
    for (int i = 0; i < a_hi.num_elements; ++i) {
      const float x = a_hi.x[i];
      a_hi.x[i] = wmma::__float_to_tf32(x);
      a_lo.x[i] = wmma::__float_to_tf32(x - a_hi.x[i]);
    }
#pragma unroll
    for (int i = 0; i < b_hi.num_elements; ++i) {
      const float x = b_hi.x[i];
      b_hi.x[i] = wmma::__float_to_tf32(x);
      b_lo.x[i] = wmma::__float_to_tf32(x - b_hi.x[i]);
    }
    wmma::mma_sync(acc, a_lo, b_hi, acc);
    wmma::mma_sync(acc, a_hi, b_lo, acc);
    wmma::mma_sync(acc, a_hi, b_hi, acc);
  }
}

// k_t.k_j and q_t.k_j of a chunk (16 x 16 tiles with ti >= tj; the upper tiles are not needed) on
// tensor cores (mma_3xtf32; M is inverted right after). Rows of k_s / q_s with stride ld (pad
// columns zero); results to KK_s / QK_s with stride kPrepLdM.
__device__ void prep_dots_tc(const float* k_s, const float* q_s, int64_t ld, int64_t dk, float* KK_s, float* QK_s) {
  using namespace nvcuda;
  constexpr int kTri = (kChunk / 16) * (kChunk / 16 + 1) / 2;  // lower tiles per product
  for (int tile = int(threadIdx.x) / 32; tile < 2 * kTri; tile += int(blockDim.x) / 32) {
    const int prod = tile / kTri;
    int tri = tile % kTri, ti = 0;
    while (tri > ti) tri -= ++ti;  // tri -> (ti, tj = tri), tj <= ti
    const int tj = tri;
    const float* A = (prod == 0 ? k_s : q_s) + ti * 16 * ld;
    const float* B = k_s + tj * 16 * ld;  // B[d][j] = k_j[d]: column-major with stride ld
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    mma_3xtf32<wmma::col_major>(acc, A, unsigned(ld), B, unsigned(ld), int((dk + 7) / 8 * 8));
    wmma::store_matrix_sync((prod == 0 ? KK_s : QK_s) + ti * 16 * kPrepLdM + tj * 16, acc, kPrepLdM,
                            wmma::mem_row_major);
  }
}

// The inverse variant of the prep kernel's last step (tensor-core state pass only: dk, dv
// multiples of 16). Instead of a forward substitution per column of [beta e^G K | beta V] (352
// columns at Jet-Nemotron's sizes, each a chain of 2016 dependent multiply-adds with a shared-memory
// read of M per step; ncu: 165 us per layer at 2048 tokens against 136 with this), the block inverts the
// unit lower triangular I + M once, in 16 x 16 blocks (diagonal blocks by substitution, then
// A_ij = -A_ii sum_{k=j}^{i-1} M_ik A_kj row block by row block), and forms W = A (beta e^G K) and
// U = A (beta V) as mma_3xtf32 products. A_s [64][68] and V_s [64][68] (a 64-column panel of
// beta V, also the scratch of the off-diagonal sums); k_s is scaled in place (no longer needed).
__device__ void prep_inverse_products(const float* M_s, float* A_s, float* V_s, float* k_s, int64_t ld,
                                      const float* b_s, const float* eG_s, const float* __restrict__ v, int64_t t0,
                                      int64_t L, int64_t h, int64_t H, int64_t dk, int64_t dv, float* W, float* U) {
  using namespace nvcuda;
  using Acc = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
  const int tid = int(threadIdx.x), warp = tid / 32;
  constexpr int lda = kPrepLdM;
  if (tid < kChunk) {
    // Column cc of the diagonal block d: rows above cc come out zero (x[j] = 0 for j < cc).
    const int d = tid / 16, cc = tid % 16;
    const float* Md = M_s + 16 * d * lda + 16 * d;
    float x[16];
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      float acc = r == cc ? 1.0f : 0.0f;
#pragma unroll
      for (int j = 0; j < r; ++j) acc -= Md[r * lda + j] * x[j];
      x[r] = acc;
    }
#pragma unroll
    for (int r = 0; r < 16; ++r) A_s[(16 * d + r) * lda + 16 * d + cc] = x[r];
  } else {
    for (int i = tid - kChunk; i < kChunk * kChunk; i += int(blockDim.x) - kChunk) {
      const int r = i / kChunk, c = i % kChunk;
      if (c / 16 > r / 16) A_s[r * lda + c] = 0.0f;  // blocks above the diagonal
    }
    const int ldi = int(ld), dki = int(dk);
    for (int i = tid - kChunk; i < kChunk * dki; i += int(blockDim.x) - kChunk) {
      const int t = i / dki, d = i - t * dki;
      k_s[t * ldi + d] *= b_s[t] * eG_s[t];
    }
  }
  __syncthreads();
  float* T_s = V_s;  // [i][16][16] sums of row block i
  for (int bi = 1; bi < kChunk / 16; ++bi) {
    for (int e = tid; e < bi * 256; e += int(blockDim.x)) {
      const int bj = e / 256, r = (e % 256) / 16, c = e % 16;
      float acc = 0.0f;
      for (int m = 16 * bj; m < 16 * bi; ++m) acc += M_s[(16 * bi + r) * lda + m] * A_s[m * lda + 16 * bj + c];
      T_s[e] = acc;
    }
    __syncthreads();
    for (int e = tid; e < bi * 256; e += int(blockDim.x)) {
      const int bj = e / 256, r = (e % 256) / 16, c = e % 16;
      float acc = 0.0f;
      for (int m = 0; m <= r; ++m) acc += A_s[(16 * bi + r) * lda + 16 * bi + m] * T_s[bj * 256 + m * 16 + c];
      A_s[(16 * bi + r) * lda + 16 * bj + c] = -acc;
    }
    __syncthreads();
  }
  const int warps = int(blockDim.x) / 32;
  // W = A (beta e^G K), stored TF32-rounded (the state pass reads it as a rounded A operand).
  for (int tile = warp; tile < 4 * int(dk / 16); tile += warps) {
    const int r0 = (tile % 4) * 16, n0 = (tile / 4) * 16;
    Acc acc;
    wmma::fill_fragment(acc, 0.0f);
    mma_3xtf32<wmma::row_major>(acc, A_s + r0 * lda, lda, k_s + n0, unsigned(ld), kChunk);
#pragma unroll
    for (int i = 0; i < acc.num_elements; ++i) acc.x[i] = wmma::__float_to_tf32(acc.x[i]);
    wmma::store_matrix_sync(W + r0 * dk + n0, acc, unsigned(dk), wmma::mem_row_major);
  }
  // U = A (beta V), 64 value columns at a time through V_s.
  for (int64_t p0 = 0; p0 < dv; p0 += 64) {
    const int pw = int(min(int64_t(64), dv - p0));  // a multiple of 16
    __syncthreads();  // V_s free (T_s sums, or the last panel, read)
    for (int i = tid; i < kChunk * (pw / 4); i += int(blockDim.x)) {
      const int t = i / (pw / 4), c4 = (i % (pw / 4)) * 4;
      float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (t < L) {
        x = *reinterpret_cast<const float4*>(v + ((t0 + t) * H + h) * dv + p0 + c4);
        const float b = b_s[t];
        x.x *= b; x.y *= b; x.z *= b; x.w *= b;
      }
      *reinterpret_cast<float4*>(V_s + t * lda + c4) = x;
    }
    __syncthreads();
    for (int tile = warp; tile < 4 * (pw / 16); tile += warps) {
      const int r0 = (tile % 4) * 16, n0 = (tile / 4) * 16;
      Acc acc;
      wmma::fill_fragment(acc, 0.0f);
      mma_3xtf32<wmma::row_major>(acc, A_s + r0 * lda, lda, V_s + n0, lda, kChunk);
      wmma::store_matrix_sync(U + r0 * dv + p0 + n0, acc, unsigned(dv), wmma::mem_row_major);
    }
  }
}

// Block = (chunk, head), 2 blocks per SM (128 registers a thread; ~87 KB of shared memory at
// dk 96, +17 KB with INVERSE): the forward substitution keeps its column in registers instead of
// a per-thread column of shared memory (which had held the kernel to one block per SM).
// INVERSE: W and U from the inverse of I + M on tensor cores (prep_inverse_products).
template <bool INVERSE>
__global__ void __launch_bounds__(kPrepThreads, 2) gdn_prep_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                                                const float* __restrict__ v, const float* __restrict__ g,
                                                                const float* __restrict__ beta, int64_t T, int64_t H,
                                                                int64_t dk, int64_t dv, ChunkWork work,
                                                                bool dots_tc) {
  extern __shared__ __align__(128) double smd[];
  const int64_t ld = prep_ld(dk);
  double* G_s = smd;                                           // [64]
  float* k_s = reinterpret_cast<float*>(G_s + kChunk);         // [64][ld] (pad columns zero)
  float* q_s = k_s + kChunk * ld;                              // [64][ld]
  float* M_s = q_s + kChunk * ld;                              // [64][68] (k_t.k_j first, with dots_tc)
  float* QK_s = M_s + kChunk * kPrepLdM;                       // [64][68] q_t.k_j (dots_tc)
  float* b_s = QK_s + kChunk * kPrepLdM;                       // [64] beta
  float* eG_s = b_s + kChunk;                                  // [64] e^{G_t}
  float* eL_s = eG_s + kChunk;                                 // [64] e^{G_last - G_t}
  const int64_t c = blockIdx.x, h = blockIdx.y;
  const int64_t t0 = c * kChunk;
  const int64_t L = min(int64_t(kChunk), T - t0);
  const int tid = threadIdx.x;
  const int64_t blk = c * H + h;

  const int ldi = int(ld);
  for (int i = tid; i < kChunk * ldi; i += blockDim.x) {
    const int t = i / ldi, d = i - t * ldi;
    const bool ok = t < L && d < dk;
    const int64_t off = ok ? ((t0 + t) * H + h) * dk + d : 0;
    detail::cp_async4(k_s + i, k + off, ok);
    detail::cp_async4(q_s + i, q + off, ok);
  }
  detail::cp_async_commit();
  // g through shared memory (eL_s until the cumulative sum is taken): one thread loading the
  // chunk's 64 g values itself waited for each load in turn (~20 us per block).
  if (tid < kChunk) {
    b_s[tid] = tid < L ? beta[(t0 + tid) * H + h] : 0.0f;
    eL_s[tid] = tid < L ? g[(t0 + tid) * H + h] : 0.0f;
  }
  __syncthreads();
  if (tid == 0) {
    double cum = 0.0;  // padded tokens: g = 0, so G stays at the last real token's value
    for (int t = 0; t < kChunk; ++t) {
      if (t < L) cum += double(eL_s[t]);
      G_s[t] = cum;
    }
  }
  detail::cp_async_wait<0>();
  __syncthreads();
  if (tid < kChunk) {
    eG_s[tid] = float(exp(G_s[tid]));
    eL_s[tid] = float(exp(G_s[kChunk - 1] - G_s[tid]));
    work.E[(blk * kChunk + tid) * 2] = eG_s[tid];
    work.E[(blk * kChunk + tid) * 2 + 1] = eL_s[tid];
  }
  const int dki = int(dk);
  // Tensor-core state pass: the operands it reads as A fragments (W, e^G q, e^{G_L-G} k, P) are
  // stored TF32-rounded, so the pass does not round them once per column block.
  const bool tc = work.Qg != nullptr;
  if (tc) {
    __syncthreads();  // eG_s / eL_s written
    float* Qg = work.Qg + blk * kChunk * dk;
    float* Kd = work.Kd + blk * kChunk * dk;
    for (int i = tid; i < kChunk * dki; i += blockDim.x) {
      const int t = i / dki, d = i - t * dki;
      Qg[i] = nvcuda::wmma::__float_to_tf32(eG_s[t] * q_s[t * ld + d]);
      Kd[i] = nvcuda::wmma::__float_to_tf32(eL_s[t] * k_s[t * ld + d]);
    }
  }
  // P and M: a warp shares t (broadcast reads of q_t, k_t), lanes take different j. With dots_tc
  // the dot products come from the tensor cores (M_s / QK_s; each element is read and rewritten
  // by the one thread that owns it).
  if (dots_tc) {
    prep_dots_tc(k_s, q_s, ld, dk, M_s, QK_s);
    __syncthreads();
  }
  float* P = work.P + blk * kChunk * kChunk;
  const int n4 = int((dk + 3) / 4);  // columns past dk are zero
  for (int idx = tid; idx < kChunk * kChunk; idx += blockDim.x) {
    const int t = idx / kChunk, j = idx % kChunk;
    float mval = 0.0f, pval = 0.0f;
    if (j <= t) {
      float kk = 0.0f, qk = 0.0f;
      if (dots_tc) {
        kk = M_s[t * kPrepLdM + j];
        qk = QK_s[t * kPrepLdM + j];
      } else {
        const float4* kt = reinterpret_cast<const float4*>(k_s + t * ld);
        const float4* qt = reinterpret_cast<const float4*>(q_s + t * ld);
        const float4* kj = reinterpret_cast<const float4*>(k_s + j * ld);
        for (int d4 = 0; d4 < n4; ++d4) {
          const float4 a = kt[d4], b = qt[d4], x = kj[d4];
          kk += a.x * x.x + a.y * x.y + a.z * x.z + a.w * x.w;
          qk += b.x * x.x + b.y * x.y + b.z * x.z + b.w * x.w;
        }
      }
      // The difference in float64 (G may be large), its exp (<= 1) in float32.
      const float decay = expf(float(G_s[t] - G_s[j]));
      pval = decay * qk;
      if (j < t) mval = b_s[t] * decay * kk;
    }
    M_s[t * kPrepLdM + j] = mval;
    P[idx] = tc ? nvcuda::wmma::__float_to_tf32(pval) : pval;
  }
  __syncthreads();
  if constexpr (INVERSE) {
    prep_inverse_products(M_s, QK_s, eL_s + kChunk, k_s, ld, b_s, eG_s, v, t0, L, h, H, dk, dv,
                          work.W + blk * kChunk * dk, work.U + blk * kChunk * dv);
  } else {
    // Forward substitution, one column per thread, the column in registers: columns < dk give W,
    // the rest U.
    for (int64_t col = tid; col < dk + dv; col += blockDim.x) {
      float x[kChunk];
      if (col < dk) {
#pragma unroll
        for (int t = 0; t < kChunk; ++t) x[t] = b_s[t] * eG_s[t] * k_s[t * ld + col];
      } else {
#pragma unroll
        for (int t = 0; t < kChunk; ++t) x[t] = t < L ? b_s[t] * v[((t0 + t) * H + h) * dv + (col - dk)] : 0.0f;
      }
#pragma unroll
      for (int t = 1; t < kChunk; ++t) {
        const float* Mt = M_s + t * kPrepLdM;
        float acc = x[t];
#pragma unroll
        for (int j = 0; j < t; ++j) acc -= Mt[j] * x[j];
        x[t] = acc;
      }
      if (col < dk) {
        float* Wb = work.W + blk * kChunk * dk;
#pragma unroll
        for (int t = 0; t < kChunk; ++t) Wb[t * dk + col] = tc ? nvcuda::wmma::__float_to_tf32(x[t]) : x[t];
      } else {
        float* Ub = work.U + blk * kChunk * dv;
#pragma unroll
        for (int t = 0; t < kChunk; ++t) Ub[t * dv + (col - dk)] = x[t];
      }
    }
  }
}

// ---- chunked, phase 2: the state pass ---------------------------------------------------------------
// Block = (head, 32 value columns), 256 threads as a 32 x 8 grid of 2x4 micro-tiles. The state
// slice S[dk, 32] stays in shared memory across all chunks. A chunk's inputs (W, q, k, P, U, E)
// arrive by asynchronous copies, the next chunk's in flight while this one computes when two
// stages fit in shared memory.
constexpr int kCols = 32;
constexpr int kStateThreads = 256;

struct StageLayout {
  int64_t w, q, k, p, u, e, size;  // float offsets inside one stage, and its size
};
__host__ __device__ inline StageLayout stage_layout(int64_t dk) {
  StageLayout l{};
  const int64_t rs = dk + 1;  // odd row stride: rows 2 apart fall in different banks
  l.w = 0;
  l.q = l.w + kChunk * rs;
  l.k = l.q + kChunk * rs;
  l.p = l.k + kChunk * rs;
  l.u = l.p + kChunk * (kChunk + 1);
  l.e = l.u + kChunk * kCols;
  l.size = (l.e + 2 * kChunk + 3) / 4 * 4;
  return l;
}
size_t state_smem(int64_t dk, int stages) {
  return sizeof(float) * size_t(dk * kCols + kChunk * kCols + stages * stage_layout(dk).size);
}

__global__ void __launch_bounds__(kStateThreads) gdn_state_kernel(const float* __restrict__ q,
                                                                  const float* __restrict__ k, int64_t T, int64_t H,
                                                                  int64_t dk, int64_t dv, int stages, ChunkWork work,
                                                                  float* __restrict__ S, float* __restrict__ o) {
  extern __shared__ float sm[];
  float* S_s = sm;                   // [dk][32]
  float* D_s = S_s + dk * kCols;     // [64][32] delta
  float* stage0 = D_s + kChunk * kCols;
  const StageLayout lay = stage_layout(dk);
  const int64_t rs = dk + 1;
  const int64_t h = blockIdx.y;
  const int64_t c0 = int64_t(blockIdx.x) * kCols;
  const int tid = threadIdx.x, ty = tid / 8, tx = tid % 8;
  const int64_t nc = (T + kChunk - 1) / kChunk;
  float* Sh = S + h * dk * dv;

  auto load_chunk = [&](int64_t c, float* st) {
    const int64_t blk = c * H + h, t0 = c * kChunk;
    const int64_t L = min(int64_t(kChunk), T - t0);
    const float* W = work.W + blk * kChunk * dk;
    const int dki = int(dk);  // 32-bit index math: a 64-bit division per element costs ~100 instructions
    for (int i = tid; i < kChunk * dki; i += blockDim.x) {
      const int t = i / dki, d = i - t * dki;
      const bool ok = t < L;
      const int64_t g = ok ? ((t0 + t) * H + h) * dk + d : 0;
      detail::cp_async4(st + lay.w + t * rs + d, W + i, true);
      detail::cp_async4(st + lay.q + t * rs + d, q + g, ok);
      detail::cp_async4(st + lay.k + t * rs + d, k + g, ok);
    }
    const float* P = work.P + blk * kChunk * kChunk;
    for (int i = tid; i < kChunk * kChunk; i += blockDim.x)
      detail::cp_async4(st + lay.p + (i / kChunk) * (kChunk + 1) + i % kChunk, P + i, true);
    const float* U = work.U + blk * kChunk * dv;
    for (int i = tid; i < kChunk * kCols; i += blockDim.x) {
      const int t = i / kCols, cc = i % kCols;
      const bool ok = c0 + cc < dv;
      detail::cp_async4(st + lay.u + i, U + (ok ? t * dv + c0 + cc : 0), ok);
    }
    const float* E = work.E + blk * kChunk * 2;
    for (int i = tid; i < 2 * kChunk; i += blockDim.x) detail::cp_async4(st + lay.e + i, E + i, true);
    detail::cp_async_commit();
  };

  for (int64_t i = tid; i < dk * kCols; i += blockDim.x) {
    const int64_t r = i / kCols, cc = i % kCols;
    S_s[i] = c0 + cc < dv ? Sh[r * dv + c0 + cc] : 0.0f;
  }
  load_chunk(0, stage0);

  for (int64_t c = 0; c < nc; ++c) {
    float* st = stage0 + (stages == 2 ? (c & 1) : 0) * lay.size;
    if (stages == 2 && c + 1 < nc) {
      load_chunk(c + 1, stage0 + ((c + 1) & 1) * lay.size);  // released by the last barrier of chunk c-1
      detail::cp_async_wait<1>();
    } else {
      detail::cp_async_wait<0>();
    }
    __syncthreads();
    const int64_t t0 = c * kChunk;
    const int64_t L = min(int64_t(kChunk), T - t0);
    const float* W_s = st + lay.w;
    const float* Q_s = st + lay.q;
    const float* K_s = st + lay.k;
    const float* P_s = st + lay.p;
    const float* U_s = st + lay.u;
    const float* E_s = st + lay.e;
    const int r0 = ty * 2;  // this thread's rows r0, r0+1 and columns tx*4 .. tx*4+3

    // delta = U - W S0
    float acc[2][4];
#pragma unroll
    for (int a = 0; a < 2; ++a)
#pragma unroll
      for (int b = 0; b < 4; ++b) acc[a][b] = U_s[(r0 + a) * kCols + tx * 4 + b];
    for (int64_t i = 0; i < dk; ++i) {
      const float4 sb = *reinterpret_cast<const float4*>(S_s + i * kCols + tx * 4);
      const float x0 = W_s[r0 * rs + i], x1 = W_s[(r0 + 1) * rs + i];
      acc[0][0] -= x0 * sb.x, acc[0][1] -= x0 * sb.y, acc[0][2] -= x0 * sb.z, acc[0][3] -= x0 * sb.w;
      acc[1][0] -= x1 * sb.x, acc[1][1] -= x1 * sb.y, acc[1][2] -= x1 * sb.z, acc[1][3] -= x1 * sb.w;
    }
#pragma unroll
    for (int a = 0; a < 2; ++a)
      *reinterpret_cast<float4*>(D_s + (r0 + a) * kCols + tx * 4) = make_float4(acc[a][0], acc[a][1], acc[a][2], acc[a][3]);
    __syncthreads();  // D_s complete

    // o = e^{G_t} q_t S0 + sum_{j<=t} P[t][j] delta_j
#pragma unroll
    for (int a = 0; a < 2; ++a)
#pragma unroll
      for (int b = 0; b < 4; ++b) acc[a][b] = 0.0f;
    for (int64_t i = 0; i < dk; ++i) {
      const float4 sb = *reinterpret_cast<const float4*>(S_s + i * kCols + tx * 4);
      const float x0 = Q_s[r0 * rs + i], x1 = Q_s[(r0 + 1) * rs + i];
      acc[0][0] += x0 * sb.x, acc[0][1] += x0 * sb.y, acc[0][2] += x0 * sb.z, acc[0][3] += x0 * sb.w;
      acc[1][0] += x1 * sb.x, acc[1][1] += x1 * sb.y, acc[1][2] += x1 * sb.z, acc[1][3] += x1 * sb.w;
    }
#pragma unroll
    for (int a = 0; a < 2; ++a) {
      const float eG = E_s[(r0 + a) * 2];
#pragma unroll
      for (int b = 0; b < 4; ++b) acc[a][b] *= eG;
    }
    for (int j = 0; j <= r0 + 1; ++j) {  // P is lower triangular
      const float4 db = *reinterpret_cast<const float4*>(D_s + j * kCols + tx * 4);
      const float p0 = P_s[r0 * (kChunk + 1) + j], p1 = P_s[(r0 + 1) * (kChunk + 1) + j];
      acc[0][0] += p0 * db.x, acc[0][1] += p0 * db.y, acc[0][2] += p0 * db.z, acc[0][3] += p0 * db.w;
      acc[1][0] += p1 * db.x, acc[1][1] += p1 * db.y, acc[1][2] += p1 * db.z, acc[1][3] += p1 * db.w;
    }
#pragma unroll
    for (int a = 0; a < 2; ++a) {
      const int64_t t = r0 + a;
      if (t >= L) continue;
      float* orow = o + ((t0 + t) * H + h) * dv;
#pragma unroll
      for (int b = 0; b < 4; ++b)
        if (c0 + tx * 4 + b < dv) orow[c0 + tx * 4 + b] = acc[a][b];
    }
    __syncthreads();  // every read of S0 done

    // S = e^{G_last} S0 + sum_t e^{G_last - G_t} k_t delta_t^T (rows ib + r0, ib + r0 + 1)
    const float gL = E_s[(kChunk - 1) * 2];
    for (int64_t ib = 0; ib < dk; ib += 2 * (kStateThreads / 8)) {
      const int64_t i0 = ib + r0;
      if (i0 >= dk) break;
      const bool two = i0 + 1 < dk;
      float sacc[2][4];
      {
        const float4 s0 = *reinterpret_cast<const float4*>(S_s + i0 * kCols + tx * 4);
        sacc[0][0] = gL * s0.x, sacc[0][1] = gL * s0.y, sacc[0][2] = gL * s0.z, sacc[0][3] = gL * s0.w;
        const float4 s1 = two ? *reinterpret_cast<const float4*>(S_s + (i0 + 1) * kCols + tx * 4) : make_float4(0, 0, 0, 0);
        sacc[1][0] = gL * s1.x, sacc[1][1] = gL * s1.y, sacc[1][2] = gL * s1.z, sacc[1][3] = gL * s1.w;
      }
      for (int t = 0; t < kChunk; ++t) {
        const float4 db = *reinterpret_cast<const float4*>(D_s + t * kCols + tx * 4);
        const float eL = E_s[t * 2 + 1];
        const float k0 = eL * K_s[t * rs + i0], k1 = two ? eL * K_s[t * rs + i0 + 1] : 0.0f;
        sacc[0][0] += k0 * db.x, sacc[0][1] += k0 * db.y, sacc[0][2] += k0 * db.z, sacc[0][3] += k0 * db.w;
        sacc[1][0] += k1 * db.x, sacc[1][1] += k1 * db.y, sacc[1][2] += k1 * db.z, sacc[1][3] += k1 * db.w;
      }
      *reinterpret_cast<float4*>(S_s + i0 * kCols + tx * 4) = make_float4(sacc[0][0], sacc[0][1], sacc[0][2], sacc[0][3]);
      if (two)
        *reinterpret_cast<float4*>(S_s + (i0 + 1) * kCols + tx * 4) =
            make_float4(sacc[1][0], sacc[1][1], sacc[1][2], sacc[1][3]);
    }
    __syncthreads();  // S_s updated; this stage's buffers released
    if (stages == 1 && c + 1 < nc) load_chunk(c + 1, stage0);
  }
  for (int64_t i = tid; i < dk * kCols; i += blockDim.x) {
    const int64_t r = i / kCols, cc = i % kCols;
    if (c0 + cc < dv) Sh[r * dv + c0 + cc] = S_s[i];
  }
}

// ---- chunked, phase 2 on tensor cores (TF32 WMMA m16n16k8, float32 accumulation) -----------------
// Block = (head, 16 value columns), 4 warps; warp w owns chunk rows 16w..16w+15. The state slice
// S[dk, 16] stays in shared memory. Per chunk:
//   delta = U - W S;   o = (e^G q) S + P delta;   S = e^{G_L} S + (e^{G_L - G} k)^T delta.
// Only S carries from chunk to chunk, so a chunk's inputs are copied to shared memory
// asynchronously while the previous chunk computes, in two groups: A = {W, U} (first needed,
// loaded as soon as the previous delta is done) and B = {e^G q, P, e^{G_L - G} k}. Reading the
// fragments straight from L2 instead put ~50 dependent L2 round trips on every chunk's critical
// path (680 us per Jet-2B layer at 2048 tokens).
// Needs dk % 16 == 0 and dv % 16 == 0 (gdn_chunked_tc falls back otherwise).
constexpr int kTcCols = 16;
constexpr int kTcLd = kTcCols + 4;  // shared rows of 20 floats (a 16-byte multiple, staggered banks)
constexpr int kTcLdP = kChunk + 4;

// Shared-memory floats of the state pass: S [dk][20], delta [64][20], U [64][20],
// W / e^G q / e^{G_L-G} k [64][dk+4] each, P [64][68]. Every tile starts 32-byte aligned (WMMA).
size_t state_tc_floats(int64_t dk) {
  return size_t(dk * kTcLd + 2 * kChunk * kTcLd + 3 * kChunk * (dk + 4) + kChunk * kTcLdP);
}

template <typename Frag>
__device__ __forceinline__ void to_tf32(Frag& f) {
#pragma unroll
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = nvcuda::wmma::__float_to_tf32(f.x[i]);
}

using TcAcc = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 8, float>;

// acc += A[16 x K] B[K x 16] with TF32 operands: A in `Layout` with leading dimension lda (a_step
// floats between consecutive k: 1 row-major, lda column-major), B row-major with ldb; K % 8 == 0.
// A_ROUNDED: A already holds TF32-rounded values (the prep kernel rounds W, e^G q, e^{G_L-G} k and
// P when it writes them), so only B is converted here.
template <typename Layout, bool A_ROUNDED = false>
__device__ __forceinline__ void mma_tf32(TcAcc& acc, const float* A, unsigned lda, int a_step, const float* B,
                                         unsigned ldb, int K) {
  using namespace nvcuda;
#pragma unroll 4
  for (int kk = 0; kk < K; kk += 8) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, Layout> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b;
    wmma::load_matrix_sync(a, A + kk * a_step, lda);
    wmma::load_matrix_sync(b, B + kk * ldb, ldb);
    if constexpr (!A_ROUNDED) to_tf32(a);
    to_tf32(b);
    wmma::mma_sync(acc, a, b, acc);
  }
}

// Asynchronous copy of a [rows, cols] float tile (cols % 4 == 0, both row strides 16-byte
// multiples) by the whole block. The (row, column) walk is stepped, not divided: 64-bit divisions
// here once cost more instructions than the chunk's matrix products.
__device__ __forceinline__ void copy_tile_async(float* dst, int dst_ld, const float* src, int src_ld, int rows,
                                                int cols) {
  const int per_row = cols / 4, step = int(blockDim.x);
  const int row_step = step / per_row, col_step = (step % per_row) * 4;
  int r = int(threadIdx.x) / per_row, c = (int(threadIdx.x) % per_row) * 4;
  while (r < rows) {
    detail::cp_async16(dst + r * dst_ld + c, src + int64_t(r) * src_ld + c);
    r += row_step;
    c += col_step;
    if (c >= cols) {
      c -= cols;
      ++r;
    }
  }
}

// A state pass's first group of chunk c: W [64][dk] and the block's 16 columns of U (from column
// c0), then one commit, also past the last chunk (an empty group).
__device__ __forceinline__ void load_w_u_async(float* W_s, int ldk, float* U_s, const ChunkWork& work, int64_t c,
                                               int64_t nc, int64_t H, int64_t h, int64_t dk, int64_t dv,
                                               int64_t c0) {
  if (c < nc) {
    const int64_t blk = c * H + h;
    copy_tile_async(W_s, ldk, work.W + blk * kChunk * dk, int(dk), kChunk, int(dk));
    copy_tile_async(U_s, kTcLd, work.U + blk * kChunk * dv + c0, int(dv), kChunk, kTcCols);
  }
  detail::cp_async_commit();
}

// The block's 16-column slice of a head's state Sh [dk][dv] to S_s [dk][20] before the first
// chunk, and back after the last.
__device__ __forceinline__ void load_state_slice(float* S_s, const float* Sh, int64_t dk, int64_t dv, int64_t c0) {
  for (int64_t i = threadIdx.x; i < dk * kTcCols; i += blockDim.x)
    S_s[(i / kTcCols) * kTcLd + i % kTcCols] = Sh[(i / kTcCols) * dv + c0 + i % kTcCols];
}
__device__ __forceinline__ void store_state_slice(float* Sh, const float* S_s, int64_t dk, int64_t dv, int64_t c0) {
  for (int64_t i = threadIdx.x; i < dk * kTcCols; i += blockDim.x)
    Sh[(i / kTcCols) * dv + c0 + i % kTcCols] = S_s[(i / kTcCols) * kTcLd + i % kTcCols];
}

// A chunk's starting state (S_s, 16 columns) to Sc [dk][dv], for the output kernel.
__device__ __forceinline__ void store_start_state(float* Sc, const float* S_s, int dk, int64_t dv) {
  for (int i = threadIdx.x; i < dk * (kTcCols / 4); i += blockDim.x) {
    const int r = i / (kTcCols / 4), c4 = (i % (kTcCols / 4)) * 4;
    *reinterpret_cast<float4*>(Sc + int64_t(r) * dv + c4) = *reinterpret_cast<const float4*>(S_s + r * kTcLd + c4);
  }
}

// SPLIT_O: the pass only carries the state: it writes each chunk's starting state (work.Sc) and
// delta (work.Dl) and leaves o to gdn_output_tc_kernel, which runs all chunks in parallel. Its
// per-chunk critical path loses the two o products and the e^G q and P copies.
template <bool SPLIT_O>
__global__ void __launch_bounds__(128) gdn_state_tc_kernel(int64_t T, int64_t H, int64_t dk, int64_t dv,
                                                           ChunkWork work, float* __restrict__ S,
                                                           float* __restrict__ o) {
  using namespace nvcuda;
  extern __shared__ __align__(128) float smt[];
  const int ldk = int(dk) + 4, dki = int(dk);
  float* S_s = smt;                    // [dk][20]
  float* D_s = S_s + dk * kTcLd;       // [64][20] delta, then the output rows
  float* U_s = D_s + kChunk * kTcLd;   // [64][20] this block's 16 columns of U
  float* W_s = U_s + kChunk * kTcLd;   // [64][dk+4]
  float* Qg_s = W_s + kChunk * ldk;    // [64][dk+4]
  float* Kd_s = Qg_s + kChunk * ldk;   // [64][dk+4]
  float* P_s = Kd_s + kChunk * ldk;    // [64][68]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t h = blockIdx.y, c0 = int64_t(blockIdx.x) * kTcCols;
  const int64_t nc = (T + kChunk - 1) / kChunk;
  float* Sh = S + h * dk * dv;
  // Every call commits one group, empty past the last chunk, so the waits below count alike.
  auto load_a = [&](int64_t c) { load_w_u_async(W_s, ldk, U_s, work, c, nc, H, h, dk, dv, c0); };
  auto load_b = [&](int64_t c) {
    if (c < nc) {
      const int64_t blk = c * H + h;
      if constexpr (!SPLIT_O) copy_tile_async(Qg_s, ldk, work.Qg + blk * kChunk * dk, dki, kChunk, dki);
      copy_tile_async(Kd_s, ldk, work.Kd + blk * kChunk * dk, dki, kChunk, dki);
      if constexpr (!SPLIT_O) copy_tile_async(P_s, kTcLdP, work.P + blk * kChunk * kChunk, kChunk, kChunk, kChunk);
    }
    detail::cp_async_commit();
  };
  load_a(0);
  load_b(0);
  load_state_slice(S_s, Sh, dk, dv, c0);
  using FragC = TcAcc;
  const int r0 = warp * 16;
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t blk = c * H + h, t0 = c * kChunk;
    const int64_t L = min(int64_t(kChunk), T - t0);
    const float gL = work.E[(blk * kChunk + kChunk - 1) * 2];  // e^{G_last}: G is flat past the last token
    detail::cp_async_wait<1>();
    __syncthreads();  // group A of this chunk landed (and S_s / D_s are free)
    if constexpr (SPLIT_O) {  // the chunk's starting state, for the output kernel
      store_start_state(work.Sc + blk * dk * dv + c0, S_s, dki, dv);
    }

    // delta rows r0.. = U - W S
    FragC ws, u;
    wmma::fill_fragment(ws, 0.0f);
    mma_tf32<wmma::row_major, true>(ws, W_s + r0 * ldk, unsigned(ldk), 1, S_s, kTcLd, dki);
    wmma::load_matrix_sync(u, U_s + r0 * kTcLd, kTcLd, wmma::mem_row_major);
#pragma unroll
    for (int i = 0; i < u.num_elements; ++i) u.x[i] -= ws.x[i];
    wmma::store_matrix_sync(D_s + r0 * kTcLd, u, kTcLd, wmma::mem_row_major);
    if constexpr (SPLIT_O)
      wmma::store_matrix_sync(work.Dl + (blk * kChunk + r0) * dv + c0, u, unsigned(dv), wmma::mem_row_major);
    __syncthreads();  // every row of delta written; W_s / U_s free
    load_a(c + 1);
    detail::cp_async_wait<1>();
    __syncthreads();  // group B of this chunk landed

    // o rows r0.. = (e^G q) S + P delta (P is lower triangular: columns j < r0 + 16 only)
    FragC oc;
    if constexpr (!SPLIT_O) {
      wmma::fill_fragment(oc, 0.0f);
      mma_tf32<wmma::row_major, true>(oc, Qg_s + r0 * ldk, unsigned(ldk), 1, S_s, kTcLd, dki);
      mma_tf32<wmma::row_major, true>(oc, P_s + r0 * kTcLdP, kTcLdP, 1, D_s, kTcLd, r0 + 16);
      __syncthreads();  // every read of S done
    }

    // S = e^{G_L} S + Kd^T delta: row tiles of 16 state rows, round-robin over the warps.
    for (int i0 = r0; i0 < dki; i0 += 64) {
      FragC sc;
      wmma::load_matrix_sync(sc, S_s + i0 * kTcLd, kTcLd, wmma::mem_row_major);
#pragma unroll
      for (int i = 0; i < sc.num_elements; ++i) sc.x[i] *= gL;
      // A[i][t] = Kd[t][i]: Kd read column-major.
      mma_tf32<wmma::col_major, true>(sc, Kd_s + i0, unsigned(ldk), ldk, D_s, kTcLd, kChunk);
      wmma::store_matrix_sync(S_s + i0 * kTcLd, sc, kTcLd, wmma::mem_row_major);
    }
    __syncthreads();  // every read of delta done; Qg_s / Kd_s / P_s free
    load_b(c + 1);
    if constexpr (SPLIT_O) continue;
    // The warp's own 16 output rows go through its rows of D_s (no other warp touches them
    // until the next chunk's first barrier).
    wmma::store_matrix_sync(D_s + r0 * kTcLd, oc, kTcLd, wmma::mem_row_major);
    __syncwarp();
#pragma unroll
    for (int i = lane; i < 16 * (kTcCols / 4); i += 32) {
      const int t = int(r0) + i / (kTcCols / 4), c4 = (i % (kTcCols / 4)) * 4;
      if (t < L)
        *reinterpret_cast<float4*>(o + ((t0 + t) * H + h) * dv + c0 + c4) =
            *reinterpret_cast<const float4*>(D_s + t * kTcLd + c4);
    }
  }
  detail::cp_async_wait<0>();
  __syncthreads();
  store_state_slice(Sh, S_s, dk, dv, c0);
}

// The split state pass on raw mma.sync (m16n8k8, TF32 operands, float32 accumulators), the
// default (JETLM_GDN_STATE_MMA=0: the WMMA pass). Why: ncu of gdn_state_tc_kernel<true> (190 us
// per Jet-2B layer at 2048 tokens) found 35% IMADs, 10% generic loads and 5% HMMAs among its
// instructions, 40% fixed-latency stalls: WMMA's fragment loads from shared memory compile to
// generic loads with per-element address arithmetic, and each warp runs up to 28 dependent
// tensor-core steps per chunk at ~6 warps per SM. Here the same block (head, 16 value columns)
// has 8 warps; each takes one 16 x 8 tile of delta (K = dk) and one or two 16 x 8 tiles of the
// state update (K = 64, interleaved in one loop), loading its fragments from shared memory by
// index. The products are the same TF32 products (W, e^{G_L-G} k pre-rounded by the prep kernel,
// S and delta rounded here), accumulated per 8-wide k step as the WMMA pass does.
// Fragments of m16n8k8 .tf32 (g = lane / 4, c = lane % 4): A a0 (g, c), a1 (g+8, c), a2 (g, c+4),
// a3 (g+8, c+4); B b0 (k c, n g), b1 (k c+4, n g); C c0 (g, 2c), c1 (g, 2c+1), c2 (g+8, 2c),
// c3 (g+8, 2c+1).
constexpr int kMmaWarps = 8;
size_t state_mma_floats(int64_t dk) { return size_t(dk * kTcLd + 2 * kChunk * kTcLd + 2 * kChunk * (dk + 4)); }

__device__ __forceinline__ void mma_tf32_16x8x8(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ uint32_t tf32_bits(float x) { return __float_as_uint(nvcuda::wmma::__float_to_tf32(x)); }

__global__ void __launch_bounds__(32 * kMmaWarps) gdn_state_mma_kernel(int64_t T, int64_t H, int64_t dk, int64_t dv,
                                                                        ChunkWork work, float* __restrict__ S) {
  extern __shared__ __align__(128) float smm[];
  const int ldk = int(dk) + 4, dki = int(dk);
  float* S_s = smm;                   // [dk][20]
  float* D_s = S_s + dk * kTcLd;      // [64][20] delta
  float* U_s = D_s + kChunk * kTcLd;  // [64][20]
  float* W_s = U_s + kChunk * kTcLd;  // [64][dk+4]
  float* Kd_s = W_s + kChunk * ldk;   // [64][dk+4]
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32, g = lane / 4, cq = lane % 4;
  const int64_t h = blockIdx.y, c0 = int64_t(blockIdx.x) * kTcCols;
  const int64_t nc = (T + kChunk - 1) / kChunk;
  float* Sh = S + h * dk * dv;
  // Every call commits one group, empty past the last chunk, so the waits below count alike.
  auto load_a = [&](int64_t c) { load_w_u_async(W_s, ldk, U_s, work, c, nc, H, h, dk, dv, c0); };
  auto load_b = [&](int64_t c) {
    if (c < nc) copy_tile_async(Kd_s, ldk, work.Kd + (c * H + h) * kChunk * dk, dki, kChunk, dki);
    detail::cp_async_commit();
  };
  load_a(0);
  load_b(0);
  load_state_slice(S_s, Sh, dk, dv, c0);
  // Delta tile of this warp: rows 16 * (warp / 2), columns 8 * (warp % 2). State tiles: t and t + 8
  // of (dk / 16 row tiles) x 2, t = warp.
  const int drow = 16 * (warp / 2), dcol = 8 * (warp % 2);
  const int state_tiles = 2 * (dki / 16);
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t blk = c * H + h;
    const float gL = work.E[(blk * kChunk + kChunk - 1) * 2];  // e^{G_last}
    detail::cp_async_wait<1>();
    __syncthreads();  // W, U landed; S_s holds the chunk's starting state
    store_start_state(work.Sc + blk * dk * dv + c0, S_s, dki, dv);
    {  // delta = U - W S
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int k0 = 0; k0 < dki; k0 += 8) {
        const float* Wr = W_s + (drow + g) * ldk + k0 + cq;
        const uint32_t a[4] = {__float_as_uint(Wr[0]), __float_as_uint(Wr[8 * ldk]), __float_as_uint(Wr[4]),
                               __float_as_uint(Wr[8 * ldk + 4])};
        const float* Sr = S_s + (k0 + cq) * kTcLd + dcol + g;
        const uint32_t b[2] = {tf32_bits(Sr[0]), tf32_bits(Sr[4 * kTcLd])};
        mma_tf32_16x8x8(acc, a, b);
      }
      const int r = drow + g, col = dcol + 2 * cq;
      const float2 u0 = *reinterpret_cast<const float2*>(U_s + r * kTcLd + col);
      const float2 u1 = *reinterpret_cast<const float2*>(U_s + (r + 8) * kTcLd + col);
      const float2 d0 = make_float2(u0.x - acc[0], u0.y - acc[1]), d1 = make_float2(u1.x - acc[2], u1.y - acc[3]);
      *reinterpret_cast<float2*>(D_s + r * kTcLd + col) = d0;
      *reinterpret_cast<float2*>(D_s + (r + 8) * kTcLd + col) = d1;
      float* Dl = work.Dl + (blk * kChunk + r) * dv + c0 + col;
      *reinterpret_cast<float2*>(Dl) = d0;
      *reinterpret_cast<float2*>(Dl + 8 * dv) = d1;
    }
    __syncthreads();  // delta complete; W_s / U_s free
    load_a(c + 1);
    detail::cp_async_wait<1>();
    __syncthreads();  // Kd landed
    {  // S = e^{G_L} S + Kd^T delta, the warp's two tiles in one k loop
      float acc[2][4];
      int srow[2], scol[2];
      const bool one = warp < state_tiles, two = warp + kMmaWarps < state_tiles;
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int tile = min(warp + j * kMmaWarps, state_tiles - 1);
        srow[j] = 16 * (tile / 2) + g;
        scol[j] = 8 * (tile % 2) + 2 * cq;
        const float2 s0 = *reinterpret_cast<const float2*>(S_s + srow[j] * kTcLd + scol[j]);
        const float2 s1 = *reinterpret_cast<const float2*>(S_s + (srow[j] + 8) * kTcLd + scol[j]);
        acc[j][0] = s0.x * gL; acc[j][1] = s0.y * gL; acc[j][2] = s1.x * gL; acc[j][3] = s1.y * gL;
      }
      for (int k0 = 0; k0 < kChunk; k0 += 8) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          if (j == 1 && !two) break;
          // A[i][t] = Kd[t][i]: row i = state row, column t = chunk row.
          const float* Kr = Kd_s + (k0 + cq) * ldk + srow[j];
          const uint32_t a[4] = {__float_as_uint(Kr[0]), __float_as_uint(Kr[8]), __float_as_uint(Kr[4 * ldk]),
                                 __float_as_uint(Kr[4 * ldk + 8])};
          const float* Dr = D_s + (k0 + cq) * kTcLd + (scol[j] - 2 * cq) + g;
          const uint32_t b[2] = {tf32_bits(Dr[0]), tf32_bits(Dr[4 * kTcLd])};
          mma_tf32_16x8x8(acc[j], a, b);
        }
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        if (!(j == 0 ? one : two)) break;
        *reinterpret_cast<float2*>(S_s + srow[j] * kTcLd + scol[j]) = make_float2(acc[j][0], acc[j][1]);
        *reinterpret_cast<float2*>(S_s + (srow[j] + 8) * kTcLd + scol[j]) = make_float2(acc[j][2], acc[j][3]);
      }
    }
    __syncthreads();  // every read of delta, Kd and S done
    load_b(c + 1);
  }
  detail::cp_async_wait<0>();
  __syncthreads();
  store_state_slice(Sh, S_s, dk, dv, c0);
}

// The output of the split pass, all chunks in parallel: block = (chunk, head, 64 value columns),
// 4 warps, warp w rows 16w..16w+15: o = (e^G q) S_c + P delta_c with S_c, delta_c the pass's
// per-chunk state and delta. The same TF32 products in the same order as the fused pass, so o
// has the same bits.
constexpr int kOutCols = 64;
constexpr int kOutLd = kOutCols + 4;
size_t output_tc_floats(int64_t dk) {
  return size_t(kChunk * (dk + 4) + kChunk * kTcLdP + dk * kOutLd + 2 * kChunk * kOutLd);
}

// An output block's inputs, copied to shared memory and waited for: e^G q [64][dk+4] and P [64][68]
// of chunk-head `blk`, and `cols` columns from col0 of its starting state [dk][sd_ld] and delta
// [64][sd_ld].
__device__ __forceinline__ void load_output_tiles(float* Qg_s, float* P_s, float* S_s, float* D_s, int sd_ld,
                                                  const ChunkWork& work, int64_t blk, int dk, int dv, int64_t col0,
                                                  int cols) {
  copy_tile_async(Qg_s, dk + 4, work.Qg + blk * kChunk * dk, dk, kChunk, dk);
  copy_tile_async(P_s, kTcLdP, work.P + blk * kChunk * kChunk, kChunk, kChunk, kChunk);
  copy_tile_async(S_s, sd_ld, work.Sc + blk * dk * dv + col0, dv, dk, cols);
  copy_tile_async(D_s, sd_ld, work.Dl + blk * kChunk * dv + col0, dv, kChunk, cols);
  detail::cp_async_commit();
  detail::cp_async_wait<0>();
  __syncthreads();
}

__global__ void __launch_bounds__(128) gdn_output_tc_kernel(int64_t T, int64_t H, int64_t dk, int64_t dv,
                                                            ChunkWork work, float* __restrict__ o) {
  using namespace nvcuda;
  extern __shared__ __align__(128) float smo[];
  const int ldk = int(dk) + 4, dki = int(dk), dvi = int(dv);
  float* Qg_s = smo;                       // [64][dk+4]
  float* P_s = Qg_s + kChunk * ldk;        // [64][68]
  float* S_s = P_s + kChunk * kTcLdP;      // [dk][68]
  float* D_s = S_s + dk * kOutLd;          // [64][68]
  float* O_s = D_s + kChunk * kOutLd;      // [64][68]
  const int64_t c = blockIdx.x, h = blockIdx.y, col0 = int64_t(blockIdx.z) * kOutCols;
  const int cols = int(min(int64_t(kOutCols), dv - col0));  // a multiple of 16
  const int64_t blk = c * H + h, t0 = c * kChunk;
  const int64_t L = min(int64_t(kChunk), T - t0);
  load_output_tiles(Qg_s, P_s, S_s, D_s, kOutLd, work, blk, dki, dvi, col0, cols);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r0 = warp * 16;
  for (int ct = 0; ct < cols / 16; ++ct) {
    TcAcc oc;
    wmma::fill_fragment(oc, 0.0f);
    mma_tf32<wmma::row_major, true>(oc, Qg_s + r0 * ldk, unsigned(ldk), 1, S_s + ct * 16, kOutLd, dki);
    mma_tf32<wmma::row_major, true>(oc, P_s + r0 * kTcLdP, kTcLdP, 1, D_s + ct * 16, kOutLd, r0 + 16);
    wmma::store_matrix_sync(O_s + r0 * kOutLd + ct * 16, oc, kOutLd, wmma::mem_row_major);
  }
  __syncwarp();
  for (int i = lane; i < 16 * (cols / 4); i += 32) {  // the warp's own rows
    const int t = r0 + i / (cols / 4), c4 = (i % (cols / 4)) * 4;
    if (t < L)
      *reinterpret_cast<float4*>(o + ((t0 + t) * H + h) * dv + col0 + c4) =
          *reinterpret_cast<const float4*>(O_s + t * kOutLd + c4);
  }
}

// gdn_output_tc_kernel on raw mma.sync (m16n8k8, TF32), the default (JETLM_GDN_OUTPUT_MMA=0: the
// WMMA kernel). H100, 2026-12-08: the whole delta rule at T = 2048 (12 x 96 x 256) 346 vs 384 us;
// Jet-2B prefill of 4,096 tokens 74,135 / 74,191 vs 71,885 / 71,780 tok/s (+3.2%). Why: the WMMA output kernel
// (97 us per Jet-2B layer at 2048 tokens, ncu on the H100) has the WMMA state pass's instruction
// mix (generic fragment loads with per-element address arithmetic), which the mma.sync state pass
// replaced for +3.9% of the whole prefill. Block = (chunk, head, 64 value columns), 8 warps: warp
// w owns rows 16 (w / 2) .. +15 and the four 16 x 8 tiles of columns 32 (w % 2) .. +31, so each A
// fragment serves four products. The products and their order are the WMMA kernel's (e^G q S over
// dk, then P delta over the chunk rows up to the tile's last), accumulated per 8-wide k step.
// S_c and delta rows have 72 floats (72 % 32 == 8): the B fragments' 32 lanes (k = lane % 4,
// n = lane / 4) then hit 32 different banks.
constexpr int kOutMmaLd = kOutCols + 8;
size_t output_mma_floats(int64_t dk) {
  return size_t(kChunk * (dk + 4) + kChunk * kTcLdP + dk * kOutMmaLd + kChunk * kOutMmaLd);
}

__global__ void __launch_bounds__(32 * kMmaWarps) gdn_output_mma_kernel(int64_t T, int64_t H, int64_t dk, int64_t dv,
                                                                         ChunkWork work, float* __restrict__ o) {
  extern __shared__ __align__(128) float smom[];
  const int ldk = int(dk) + 4, dki = int(dk), dvi = int(dv);
  float* Qg_s = smom;                  // [64][dk+4], TF32-rounded by the prep kernel
  float* P_s = Qg_s + kChunk * ldk;    // [64][68], TF32-rounded by the prep kernel
  float* S_s = P_s + kChunk * kTcLdP;  // [dk][72] the chunk's starting state, this block's columns
  float* D_s = S_s + dk * kOutMmaLd;   // [64][72] the chunk's delta, this block's columns
  const int64_t c = blockIdx.x, h = blockIdx.y, col0 = int64_t(blockIdx.z) * kOutCols;
  const int cols = int(min(int64_t(kOutCols), dv - col0));  // a multiple of 16
  const int64_t blk = c * H + h, t0 = c * kChunk;
  const int64_t L = min(int64_t(kChunk), T - t0);
  load_output_tiles(Qg_s, P_s, S_s, D_s, kOutMmaLd, work, blk, dki, dvi, col0, cols);
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32, g = lane / 4, cq = lane % 4;
  const int r0 = 16 * (warp / 2), n_base = 32 * (warp % 2);
  const int tiles = max(0, min(4, (cols - n_base) / 8));  // this warp's 16 x 8 tiles inside `cols`
  if (tiles == 0) return;  // no barrier follows
  float acc[4][4] = {};
  // acc[n] += A[r0.., k0..k0+K) B[k0.., n_base + 8n..]: A row-major (lda), B row-major [k][72].
  const auto products = [&](const float* A, int lda, const float* B, int K) {
    for (int k0 = 0; k0 < K; k0 += 8) {
      const float* Ar = A + (r0 + g) * lda + k0 + cq;
      const uint32_t a[4] = {__float_as_uint(Ar[0]), __float_as_uint(Ar[8 * lda]), __float_as_uint(Ar[4]),
                             __float_as_uint(Ar[8 * lda + 4])};
      const float* Br = B + (k0 + cq) * kOutMmaLd + n_base + g;
#pragma unroll
      for (int n = 0; n < 4; ++n) {
        if (n >= tiles) break;
        const uint32_t b[2] = {tf32_bits(Br[8 * n]), tf32_bits(Br[4 * kOutMmaLd + 8 * n])};
        mma_tf32_16x8x8(acc[n], a, b);
      }
    }
  };
  products(Qg_s, ldk, S_s, dki);             // (e^G q) S_c
  products(P_s, kTcLdP, D_s, r0 + 16);       // + P delta_c (P lower triangular: columns < r0 + 16)
  const int64_t row_lo = t0 + r0 + g, col = col0 + n_base + 2 * cq;
#pragma unroll
  for (int n = 0; n < 4; ++n) {
    if (n >= tiles) break;
    if (r0 + g < L)
      *reinterpret_cast<float2*>(o + (row_lo * H + h) * dv + col + 8 * n) = make_float2(acc[n][0], acc[n][1]);
    if (r0 + g + 8 < L)
      *reinterpret_cast<float2*>(o + ((row_lo + 8) * H + h) * dv + col + 8 * n) = make_float2(acc[n][2], acc[n][3]);
  }
}

// Batch decode of one head per block, with the JetBlock's gated output norm fused in: the block
// holds all dv columns of head h (ceil(dv / 32) column groups x ceil(dk / 32) row warps), so the norm's
// sum over the head needs no second kernel. Per column the arithmetic is gdn_recurrent_kernel's
// (CONV, T = 1) and the norm is gated_rmsnorm's, in the same orders: the result has the same bits
// as gdn_step_dconv followed by gated_rmsnorm. Grid (H, B).
// o_norm[b, h, j] = w[j] * (o[b, h, j] * rsqrt(mean_j o^2 + eps)) * silu(gate[b, h, j]).
// DV > 0: dv as a constant (the state rows' stride then folds into the load and store addresses;
// with a runtime stride the 32 row addresses alone overflowed the registers of 768 threads).
template <int MaxThreads, int DV>
__global__ void __launch_bounds__(MaxThreads) gdn_step_norm_kernel(const float* __restrict__ q,
                                                                   const float* __restrict__ k,
                                                                   const float* __restrict__ g,
                                                                   const float* __restrict__ beta, int64_t H, int64_t dk,
                                                                   int64_t dv_arg, float* __restrict__ S,
                                                                   const int32_t* __restrict__ slots, ConvStep conv,
                                                                   const float* __restrict__ gate,
                                                                   const float* __restrict__ norm_w, float eps,
                                                                   float* __restrict__ o) {
  detail::allow_dependent_launch();
  extern __shared__ float sm[];
  const int64_t dv = DV > 0 ? int64_t(DV) : dv_arg;
  const int row_warps = int((dk + 31) / 32);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int cg = warp / row_warps, rw = warp % row_warps;
  const int warps = blockDim.x / 32;
  float* k_s = sm;                        // [row_warps * 32]
  float* q_s = k_s + row_warps * 32;      // [row_warps * 32]
  float* v_s = q_s + row_warps * 32;      // [dv]
  float* red1 = v_s + dv;                 // [warps][32]
  float* red2 = red1 + warps * 32;        // [warps][32]
  float* o_s = red2 + warps * 32;         // [dv]
  const int64_t h = blockIdx.x, b = blockIdx.y;
  const int64_t j = int64_t(cg) * 32 + lane;
  const bool col_ok = j < dv;
  const int64_t slot = slots ? int64_t(slots[b]) : b;
  // Column j of the head's state, rows rw*32 .. (32-bit offsets: fewer registers than 32 pointers).
  float* Sj = S + (slot * H + h) * dk * dv + (col_ok ? j : 0);
  const int rows = col_ok ? max(0, min(32, int(dk) - rw * 32)) : 0, ldv = int(dv);
  float st[32];
#pragma unroll
  for (int r = 0; r < 32; ++r) st[r] = r < rows ? Sj[(rw * 32 + r) * ldv] : 0.0f;
  for (int i = threadIdx.x; i < row_warps * 32; i += blockDim.x) {
    k_s[i] = i < dk ? k[(b * H + h) * dk + i] : 0.0f;
    q_s[i] = i < dk ? q[(b * H + h) * dk + i] : 0.0f;
  }
  if (rw == 0 && col_ok) {  // the conv step of channel (h, j), as gdn_recurrent_kernel's warp 0
    const int64_t C = H * dv, c = h * dv + j, K = conv.K;
    float* state = conv.pool + slot * (K - 1) * C;
    const float* ker = conv.kernel + (b * C + c) * K;
    float hist[kMaxConvTaps];
#pragma unroll
    for (int i = 0; i < kMaxConvTaps; ++i)
      if (i < K - 1) hist[i] = state[i * C + c];
    const float x = conv.u[b * C + c];
    float acc = ker[K - 1] * x;
#pragma unroll
    for (int i = 0; i < kMaxConvTaps; ++i)
      if (i < K - 1) acc += ker[i] * hist[i];
    v_s[j] = silu_f(acc);
#pragma unroll
    for (int i = 0; i < kMaxConvTaps; ++i)
      if (i < K - 2) state[i * C + c] = hist[i + 1];
    if (K > 1) state[(K - 2) * C + c] = x;
  }
  __syncthreads();
  const float decay = expf(g[b * H + h]);
  const float bt = beta[b * H + h];
  const float* kw = k_s + rw * 32;
  const float* qw = q_s + rw * 32;
  // k and q come from shared memory 4 rows at a time: with all 32 of each held at once next to the
  // 32 state values, the registers of 768 threads overflowed into local memory.
  float part = 0.0f;
#pragma unroll
  for (int r0 = 0; r0 < 32; r0 += 4) {
    const float4 k4 = *reinterpret_cast<const float4*>(kw + r0);
    part += st[r0] * k4.x;
    part += st[r0 + 1] * k4.y;
    part += st[r0 + 2] * k4.z;
    part += st[r0 + 3] * k4.w;
    asm volatile("" ::: "memory");
  }
  red1[warp * 32 + lane] = part;
  __syncthreads();
  float kS = 0.0f;
  for (int w = 0; w < row_warps; ++w) kS += red1[(cg * row_warps + w) * 32 + lane];
  const float vj = col_ok ? v_s[j] : 0.0f;
  const float delta = col_ok ? bt * (vj - decay * kS) : 0.0f;
  float po = 0.0f;
#pragma unroll
  for (int r0 = 0; r0 < 32; r0 += 4) {
    const float4 k4 = *reinterpret_cast<const float4*>(kw + r0);
    const float4 q4 = *reinterpret_cast<const float4*>(qw + r0);
    const float kr[4] = {k4.x, k4.y, k4.z, k4.w}, qr[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      st[r0 + r] = decay * st[r0 + r] + kr[r] * delta;
      po += st[r0 + r] * qr[r];
    }
    asm volatile("" ::: "memory");
  }
  red2[warp * 32 + lane] = po;
  __syncthreads();
  if (rw == 0 && col_ok) {
    float out = 0.0f;
    for (int w = 0; w < row_warps; ++w) out += red2[(cg * row_warps + w) * 32 + lane];
    o_s[j] = out;
  }
#pragma unroll
  for (int r = 0; r < 32; ++r)
    if (r < rows) Sj[(rw * 32 + r) * ldv] = st[r];
  __syncthreads();
  if (rw == 0) {  // every column group's first warp forms the same head sum (gated_rmsnorm's order)
    float ss = 0.0f;
    for (int64_t i = lane; i < dv; i += 32) ss += o_s[i] * o_s[i];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    const float inv = rsqrtf(ss / float(dv) + eps);
    if (col_ok) o[(b * H + h) * dv + j] = norm_w[j] * (o_s[j] * inv) * silu_f(gate[(b * H + h) * dv + j]);
  }
}


// ---- the JetBlock's whole decode step from its stacked projection, one cluster per head ----------
// gdn_step_norm_kernel gives a head to one block: 12 blocks for Jet-Nemotron-2B, each streaming its
// head's 96 KB of state through one SM (8.6 us on an H100 against ~1 us for the bytes). Here a head
// is a cluster of ceil(dv/32) blocks, one per 32 value columns, whose ceil(dk/32) warps keep the
// column's state rows in registers; the gated norm's sum over the head's dv outputs is read across
// the cluster from each block's shared memory (distributed shared memory, sm_90).
// Inputs come straight from the row of the stacked projection (fused [B, N]: q, k, u, gate, b, a,
// hidden; q and k already through silu in the GEMV's epilogue), so jet_decode_prep's launch and
// copies go too: every block forms its head's l2-normalized q and k and gates itself (as
// jet_decode_prep: the same per-lane sums), rank r of the cluster the conv step of its 32 channels.
// The state loads are issued before the wait for the producer (PDL): the state is this layer's own.
// The result has the bits of jet_decode_prep + gdn_step_dconv + gated_rmsnorm.
struct JetStepParams {
  const float* fused;  // [B, N]
  int64_t N, H, dk, dv;
  float q_scale;
  const float* A_log;    // [H]
  const float* dt_bias;  // [H]
  const float* kernels;  // [B, H*dv, K] generated conv kernels
  float* conv_pool;      // [slots, K-1, H*dv]
  int K;
  float* S;              // [slots, H, dk, dv]
  const int32_t* slots;  // [B] or null (sequence b in slot b)
  const float* norm_w;   // [dv]
  float eps;
  float* o;  // [B, H, dv] normalized, gated
};

template <int MaxThreads>
__global__ void __launch_bounds__(MaxThreads) jet_step_cluster_kernel(JetStepParams p) {
  namespace cg = cooperative_groups;
  detail::allow_dependent_launch();
  extern __shared__ float sm[];
  __shared__ float o_s[32];
  __shared__ float v_s[32];
  __shared__ float gates[2];  // beta, g
  const cg::cluster_group cluster = cg::this_cluster();
  const int rank = int(cluster.block_rank()), groups = int(cluster.num_blocks());
  const int64_t H = p.H, dk = p.dk, dv = p.dv;
  const int64_t h = blockIdx.x / groups, b = blockIdx.y;
  const int row_warps = int(blockDim.x / 32);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* k_s = sm;                    // [row_warps * 32]
  float* q_s = k_s + row_warps * 32;  // [row_warps * 32]
  float* red1 = q_s + row_warps * 32; // [row_warps][32]
  float* red2 = red1 + row_warps * 32;
  const int64_t j = int64_t(rank) * 32 + lane;
  const bool col_ok = j < dv;
  const int64_t slot = p.slots ? int64_t(p.slots[b]) : b;
  float* Sj = p.S + (slot * H + h) * dk * dv + (col_ok ? j : 0);
  const int rows = col_ok ? max(0, min(32, int(dk) - warp * 32)) : 0, ldv = int(dv);
  float st[32];
#pragma unroll
  for (int r = 0; r < 32; ++r) st[r] = r < rows ? Sj[(warp * 32 + r) * ldv] : 0.0f;
  detail::wait_for_producer();

  const int64_t kd = H * dk, vd = H * dv, C = vd;
  const float* row = p.fused + b * p.N;
  for (int which = warp; which < 2; which += row_warps) {  // warp 0: q, warp 1: k (l2norm, as prep)
    const float* src = row + which * kd + h * dk;
    float* dst = which == 0 ? q_s : k_s;
    float ss = 0.0f;
    for (int64_t i = lane; i < dk; i += 32) ss += src[i] * src[i];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    const float f = (which == 0 ? p.q_scale : 1.0f) * rsqrtf(ss + 1e-6f);
    for (int64_t i = lane; i < int64_t(row_warps) * 32; i += 32) dst[i] = i < dk ? src[i] * f : 0.0f;
  }
  if (threadIdx.x == 0) {
    const float b_raw = row[2 * kd + 2 * vd + h], a_raw = row[2 * kd + 2 * vd + H + h];
    gates[0] = 1.0f / (1.0f + expf(-b_raw));
    const float x = a_raw + p.dt_bias[h];
    const float softplus = x > 20.0f ? x : log1pf(expf(x));
    gates[1] = -expf(p.A_log[h]) * softplus;
  }
  if (warp == 0 && col_ok) {  // the conv step of channel (h, j), as gdn_recurrent_kernel's
    const int64_t c = h * dv + j, K = p.K;
    float* state = p.conv_pool + slot * (K - 1) * C;
    const float* ker = p.kernels + (b * C + c) * K;
    float hist[kMaxConvTaps];
#pragma unroll
    for (int i = 0; i < kMaxConvTaps; ++i)
      if (i < K - 1) hist[i] = state[i * C + c];
    const float x = row[2 * kd + c];
    float acc = ker[K - 1] * x;
#pragma unroll
    for (int i = 0; i < kMaxConvTaps; ++i)
      if (i < K - 1) acc += ker[i] * hist[i];
    v_s[lane] = silu_f(acc);
#pragma unroll
    for (int i = 0; i < kMaxConvTaps; ++i)
      if (i < K - 2) state[i * C + c] = hist[i + 1];
    if (K > 1) state[(K - 2) * C + c] = x;
  }
  __syncthreads();
  const float bt = gates[0], decay = expf(gates[1]);
  const float* kw = k_s + warp * 32;
  const float* qw = q_s + warp * 32;
  float part = 0.0f;
#pragma unroll
  for (int r = 0; r < 32; ++r) part += st[r] * kw[r];
  red1[warp * 32 + lane] = part;
  __syncthreads();
  float kS = 0.0f;
  for (int w = 0; w < row_warps; ++w) kS += red1[w * 32 + lane];
  const float delta = col_ok ? bt * (v_s[lane] - decay * kS) : 0.0f;
  float po = 0.0f;
#pragma unroll
  for (int r = 0; r < 32; ++r) {
    st[r] = decay * st[r] + kw[r] * delta;
    po += st[r] * qw[r];
  }
  red2[warp * 32 + lane] = po;
#pragma unroll
  for (int r = 0; r < 32; ++r)
    if (r < rows) Sj[(warp * 32 + r) * ldv] = st[r];
  __syncthreads();
  if (warp == 0) {
    float out = 0.0f;
    for (int w = 0; w < row_warps; ++w) out += red2[w * 32 + lane];
    o_s[lane] = col_ok ? out : 0.0f;
  }
  cluster.sync();  // every block's o_s written and visible across the cluster
  if (warp == 0) {
    // gated_rmsnorm's per-lane order: lane sums o[lane], o[lane + 32], ... = o_s[lane] of rank 0, 1, ...
    float ss = 0.0f;
    for (int r = 0; r < groups; ++r) {
      const float* other = cluster.map_shared_rank(o_s, r);
      if (int64_t(r) * 32 + lane < dv) ss += other[lane] * other[lane];
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    const float inv = rsqrtf(ss / float(dv) + p.eps);
    if (col_ok) {
      const float gate = row[2 * kd + vd + h * dv + j];
      p.o[(b * H + h) * dv + j] = p.norm_w[j] * (o_s[lane] * inv) * silu_f(gate);
    }
  }
  cluster.sync();  // no block leaves while another may still read its o_s
}

}  // namespace

void gdn_recurrent(const float* q, const float* k, const float* v, const float* g, const float* beta, int64_t T,
                   int64_t H, int64_t dk, int64_t dv, float* S, float* o) {
  JETLM_ASSERT(dk >= 1 && dk <= kGdnRecurrentMaxDk && dv >= 1 && H >= 1 && H <= 65535, "gdn_recurrent: dk <= 1024");
  if (T == 0) return;
  const int warps = int((dk + 31) / 32);
  const size_t smem = sizeof(float) * size_t(4 * warps * 32);
  const dim3 grid(unsigned((dv + 31) / 32), unsigned(H));
  if (warps <= 8)
    gdn_recurrent_kernel<256><<<grid, 32 * warps, smem, stream()>>>(q, k, v, g, beta, T, H, dk, dv, S, o, nullptr);
  else
    gdn_recurrent_kernel<1024><<<grid, 32 * warps, smem, stream()>>>(q, k, v, g, beta, T, H, dk, dv, S, o, nullptr);
  JETLM_CUDA_CHECK_LAUNCH();
}

void gdn_step(const float* q, const float* k, const float* v, const float* g, const float* beta, int64_t B,
              int64_t H, int64_t dk, int64_t dv, float* state_pool, const int32_t* slots, float* o) {
  JETLM_ASSERT(dk >= 1 && dk <= kGdnRecurrentMaxDk && dv >= 1 && H >= 1 && H <= 65535 && B <= 65535,
               "gdn_step: dk <= 1024");
  if (B == 0) return;
  const int warps = int((dk + 31) / 32);
  const size_t smem = sizeof(float) * size_t(4 * warps * 32);
  const dim3 grid(unsigned((dv + 31) / 32), unsigned(H), unsigned(B));
  if (warps <= 8)
    gdn_recurrent_kernel<256><<<grid, 32 * warps, smem, stream()>>>(q, k, v, g, beta, 1, H, dk, dv, state_pool, o, slots);
  else
    gdn_recurrent_kernel<1024><<<grid, 32 * warps, smem, stream()>>>(q, k, v, g, beta, 1, H, dk, dv, state_pool, o, slots);
  JETLM_CUDA_CHECK_LAUNCH();
}

void gdn_step_dconv(const float* q, const float* k, const float* u, const float* kernel, int64_t K, float* conv_pool,
                    const float* g, const float* beta, int64_t B, int64_t H, int64_t dk, int64_t dv, float* state_pool,
                    const int32_t* slots, float* o) {
  JETLM_ASSERT(dk >= 1 && dk <= kGdnRecurrentMaxDk && dv >= 1 && H >= 1 && H <= 65535 && B <= 65535,
               "gdn_step_dconv: dk <= 1024");
  JETLM_ASSERT(K >= 1 && K <= kMaxConvTaps, "gdn_step_dconv: 1 <= K <= kMaxConvTaps");
  if (B == 0) return;
  const int warps = int((dk + 31) / 32);
  const size_t smem = sizeof(float) * size_t(4 * warps * 32);
  const dim3 grid(unsigned((dv + 31) / 32), unsigned(H), unsigned(B));
  const ConvStep conv{u, kernel, conv_pool, int(K)};
  if (warps <= 8)
    gdn_recurrent_kernel<256, true><<<grid, 32 * warps, smem, stream()>>>(q, k, nullptr, g, beta, 1, H, dk, dv,
                                                                          state_pool, o, slots, conv);
  else
    gdn_recurrent_kernel<1024, true><<<grid, 32 * warps, smem, stream()>>>(q, k, nullptr, g, beta, 1, H, dk, dv,
                                                                           state_pool, o, slots, conv);
  JETLM_CUDA_CHECK_LAUNCH();
}

bool gdn_step_norm_fits(int64_t dk, int64_t dv) {
  return dk >= 1 && dv >= 1 && ((dk + 31) / 32) * ((dv + 31) / 32) <= 32;
}

void gdn_step_dconv_norm(const float* q, const float* k, const float* u, const float* kernel, int64_t K,
                         float* conv_pool, const float* g, const float* beta, int64_t B, int64_t H, int64_t dk,
                         int64_t dv, float* state_pool, const int32_t* slots, const float* gate, const float* norm_w,
                         float eps, float* o) {
  JETLM_ASSERT(gdn_step_norm_fits(dk, dv), "gdn_step_dconv_norm: needs ceil(dk/32) * ceil(dv/32) <= 32 warps");
  JETLM_ASSERT(K >= 1 && K <= kMaxConvTaps && H <= 65535 && B <= 65535);
  if (B == 0) return;
  const int row_warps = int((dk + 31) / 32), warps = row_warps * int((dv + 31) / 32);
  const size_t smem = sizeof(float) * size_t(2 * row_warps * 32 + 2 * dv + 2 * warps * 32);
  const dim3 grid{unsigned(H), unsigned(B)};
  const ConvStep conv{u, kernel, conv_pool, int(K)};
  const auto launch = [&](auto kernel) {
    kernel<<<grid, 32 * warps, smem, stream()>>>(q, k, g, beta, H, dk, dv, state_pool, slots, conv, gate, norm_w, eps,
                                                 o);
  };
  if (dv == 256) launch(warps <= 24 ? gdn_step_norm_kernel<768, 256> : gdn_step_norm_kernel<1024, 256>);
  else launch(warps <= 24 ? gdn_step_norm_kernel<768, 0> : gdn_step_norm_kernel<1024, 0>);
  JETLM_CUDA_CHECK_LAUNCH();
}

bool jet_decode_step_fits(int64_t dk, int64_t dv) {
  // 8 blocks: the portable cluster size; clusters need sm_90.
  return dk >= 1 && dk <= kGdnRecurrentMaxDk && dv >= 1 && (dv + 31) / 32 <= 8 && detail::compute_major() >= 9;
}

void jet_decode_step(const float* fused, int64_t B, int64_t H, int64_t dk, int64_t dv, int64_t N, float q_scale,
                     const float* A_log, const float* dt_bias, const float* kernels, int64_t K, float* conv_pool,
                     float* state_pool, const int32_t* slots, const float* norm_w, float eps, float* o) {
  JETLM_ASSERT(jet_decode_step_fits(dk, dv), "jet_decode_step: needs dk <= 1024 and dv <= 256");
  JETLM_ASSERT(K >= 1 && K <= kMaxConvTaps && H >= 1 && B <= 65535);
  JETLM_ASSERT(N >= 2 * H * dk + 2 * H * dv + 2 * H,
               "jet_decode_step: the fused row is shorter than q, k, u, gate, b, a");
  if (B == 0) return;
  const int groups = int((dv + 31) / 32), row_warps = int((dk + 31) / 32);
  JETLM_ASSERT(int64_t(groups) * H <= 2147483647);
  const JetStepParams p{fused, N, H, dk, dv, q_scale, A_log, dt_bias, kernels, conv_pool, int(K), state_pool, slots,
                        norm_w, eps, o};
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(H * groups), unsigned(B));
  cfg.blockDim = dim3(unsigned(32 * row_warps));
  cfg.dynamicSmemBytes = sizeof(float) * size_t(4 * row_warps * 32);
  cfg.stream = stream();
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = unsigned(groups);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = detail::use_pdl() ? 2 : 1;
  if (row_warps <= 8) JETLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, jet_step_cluster_kernel<256>, p));
  else JETLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, jet_step_cluster_kernel<1024>, p));
}

void gdn_chunked(const float* q, const float* k, const float* v, const float* g, const float* beta, int64_t T,
                 int64_t H, int64_t dk, int64_t dv, float* S, float* o) {
  JETLM_ASSERT(dk >= 1 && dv >= 1 && H >= 1 && H <= 65535);
  if (T == 0) return;
  const size_t smem1 = prep_smem(dk);
  const int stages = state_smem(dk, 2) <= detail::max_shared_per_block() ? 2 : 1;
  const size_t smem2 = state_smem(dk, stages);
  if (dk > kGdnChunkedMaxDk || std::max(smem1, smem2) > detail::max_shared_per_block()) {
    gdn_recurrent(q, k, v, g, beta, T, H, dk, dv, S, o);  // the same function, token by token
    return;
  }
  const int64_t nc = (T + kChunk - 1) / kChunk;
  JETLM_ASSERT(nc < (int64_t(1) << 31));
  const size_t per = size_t(nc * H * kChunk);
  ChunkWork work;
  work.W = static_cast<float*>(detail::workspace(4, sizeof(float) * per * size_t(dk)));
  work.U = static_cast<float*>(detail::workspace(5, sizeof(float) * per * size_t(dv)));
  work.P = static_cast<float*>(detail::workspace(6, sizeof(float) * per * kChunk));
  work.E = static_cast<float*>(detail::workspace(7, sizeof(float) * per * 2));
  detail::allow_dynamic_smem(reinterpret_cast<const void*>(gdn_prep_kernel<false>), smem1);
  detail::allow_dynamic_smem(reinterpret_cast<const void*>(gdn_state_kernel), smem2);
  gdn_prep_kernel<false><<<dim3(unsigned(nc), unsigned(H)), kPrepThreads, smem1, stream()>>>(q, k, v, g, beta, T, H, dk, dv,
                                                                                     work, false);
  JETLM_CUDA_CHECK_LAUNCH();
  gdn_state_kernel<<<dim3(unsigned((dv + kCols - 1) / kCols), unsigned(H)), kStateThreads, smem2, stream()>>>(
      q, k, T, H, dk, dv, stages, work, S, o);
  JETLM_CUDA_CHECK_LAUNCH();
}

// A/B switches of the chunked delta rule, "1" or "0": JETLM_GDN_PREP_TC (the prep kernel's dot
// products on tensor cores) and JETLM_GDN_SPLIT (the output split from the state pass). Both on
// by default: 447.7 vs 464.4 us for the old pair at 2048 tokens on the H100 (docs/performance.md).
// JETLM_GDN_PREP_INV: W and U from the inverse of I + M (prep_inverse_products) instead of the
// per-column substitution, on by default: prep 165 -> 136 us per Jet-Nemotron-2B layer at 2048
// tokens (ncu, H100), the delta rule 444 -> 420 us, prefill +1.9% (docs/performance.md).
constexpr bool kPrepDotsTcByDefault = true;
constexpr bool kSplitOutputByDefault = true;
constexpr bool kPrepInverseByDefault = true;
bool gdn_prep_dots_tc() { return env_switch("JETLM_GDN_PREP_TC", kPrepDotsTcByDefault); }
bool gdn_split_output() { return env_switch("JETLM_GDN_SPLIT", kSplitOutputByDefault); }
bool gdn_prep_inverse() { return env_switch("JETLM_GDN_PREP_INV", kPrepInverseByDefault); }
// The split state pass on raw mma.sync (gdn_state_mma_kernel) by default; JETLM_GDN_STATE_MMA=0:
// the WMMA pass. Jet-2B prefill at 4K on the H100: 71,323 / 71,646 vs 68,833 / 68,809 tok/s
// (+3.9%, 2026-12-07, docs/performance.md); the same float64 errors as the WMMA pass.
bool gdn_state_mma() { return env_switch("JETLM_GDN_STATE_MMA", true); }
// gdn_output_mma_kernel by default; JETLM_GDN_OUTPUT_MMA=0: gdn_output_tc_kernel (see there).
bool gdn_output_mma() { return env_switch("JETLM_GDN_OUTPUT_MMA", true); }


void gdn_chunked_tc(const float* q, const float* k, const float* v, const float* g, const float* beta, int64_t T,
                    int64_t H, int64_t dk, int64_t dv, float* S, float* o) {
  JETLM_ASSERT(dk >= 1 && dv >= 1 && H >= 1 && H <= 65535);
  if (T == 0) return;
  const bool inverse = gdn_prep_inverse();
  const size_t smem1 = inverse ? prep_smem_inverse(dk) : prep_smem(dk), smem2 = sizeof(float) * state_tc_floats(dk);
  if (dk % 16 != 0 || dv % 16 != 0 || dk > kGdnChunkedMaxDk ||
      std::max(smem1, smem2) > detail::max_shared_per_block())
    return gdn_chunked(q, k, v, g, beta, T, H, dk, dv, S, o);  // the float32 kernels (same function)
  const int64_t nc = (T + kChunk - 1) / kChunk;
  JETLM_ASSERT(nc < (int64_t(1) << 31));
  const size_t per = size_t(nc * H * kChunk);
  ChunkWork work;
  work.W = static_cast<float*>(detail::workspace(4, sizeof(float) * per * size_t(dk)));
  work.U = static_cast<float*>(detail::workspace(5, sizeof(float) * per * size_t(dv)));
  work.P = static_cast<float*>(detail::workspace(6, sizeof(float) * per * kChunk));
  work.E = static_cast<float*>(detail::workspace(7, sizeof(float) * per * 2));
  work.Qg = static_cast<float*>(detail::workspace(10, sizeof(float) * per * size_t(dk)));
  work.Kd = static_cast<float*>(detail::workspace(11, sizeof(float) * per * size_t(dk)));
  const auto prep = inverse ? gdn_prep_kernel<true> : gdn_prep_kernel<false>;
  detail::allow_dynamic_smem(reinterpret_cast<const void*>(prep), smem1);
  prep<<<dim3(unsigned(nc), unsigned(H)), kPrepThreads, smem1, stream()>>>(q, k, v, g, beta, T, H, dk, dv, work,
                                                                           gdn_prep_dots_tc());
  JETLM_CUDA_CHECK_LAUNCH();
  const dim3 state_grid(unsigned(dv / kTcCols), unsigned(H));
  const size_t smem3 = sizeof(float) * output_tc_floats(dk);
  if (!gdn_split_output() || smem3 > detail::max_shared_per_block()) {
    detail::allow_dynamic_smem(reinterpret_cast<const void*>(gdn_state_tc_kernel<false>), smem2);
    gdn_state_tc_kernel<false><<<state_grid, 128, smem2, stream()>>>(T, H, dk, dv, work, S, o);
    JETLM_CUDA_CHECK_LAUNCH();
    return;
  }
  work.Sc = static_cast<float*>(detail::workspace(15, sizeof(float) * size_t(nc * H) * size_t(dk * dv)));
  work.Dl = static_cast<float*>(detail::workspace(16, sizeof(float) * per * size_t(dv)));
  if (gdn_state_mma() && dk <= 16 * kMmaWarps) {  // at most two state tiles per warp
    const size_t smem_mma = sizeof(float) * state_mma_floats(dk);
    detail::allow_dynamic_smem(reinterpret_cast<const void*>(gdn_state_mma_kernel), smem_mma);
    gdn_state_mma_kernel<<<state_grid, 32 * kMmaWarps, smem_mma, stream()>>>(T, H, dk, dv, work, S);
  } else {
    detail::allow_dynamic_smem(reinterpret_cast<const void*>(gdn_state_tc_kernel<true>), smem2);
    gdn_state_tc_kernel<true><<<state_grid, 128, smem2, stream()>>>(T, H, dk, dv, work, S, o);
  }
  JETLM_CUDA_CHECK_LAUNCH();
  const dim3 out_grid(unsigned(nc), unsigned(H), unsigned((dv + kOutCols - 1) / kOutCols));
  const size_t smem_out_mma = sizeof(float) * output_mma_floats(dk);
  if (gdn_output_mma() && smem_out_mma <= detail::max_shared_per_block()) {
    detail::allow_dynamic_smem(reinterpret_cast<const void*>(gdn_output_mma_kernel), smem_out_mma);
    gdn_output_mma_kernel<<<out_grid, 32 * kMmaWarps, smem_out_mma, stream()>>>(T, H, dk, dv, work, o);
  } else {
    detail::allow_dynamic_smem(reinterpret_cast<const void*>(gdn_output_tc_kernel), smem3);
    gdn_output_tc_kernel<<<out_grid, 128, smem3, stream()>>>(T, H, dk, dv, work, o);
  }
  JETLM_CUDA_CHECK_LAUNCH();
}

}  // namespace jetlm::cuda
