// Prefill attention on tensor cores: flash-attention (online softmax over 64-key tiles) with bf16
// Q, K, P, V operands of WMMA m16n16k16 and float32 accumulation, softmax and output.
//
// Block = 4 warps and 64 rows of one KV head (row r: token r / group, head kh*group + r % group,
// so each K/V tile is loaded once for the whole GQA group); warp w owns rows 16w..16w+15. Per tile:
// S = Q K^T (WMMA, to shared float32), the row max/sum update in float32 (two lanes per row),
// O rescaled in shared memory, O += P V (WMMA accumulating through shared memory, which keeps the
// per-row rescale independent of the fragment layout). K/V rows are read through a KvLayout, so
// prefill reads the paged pool in place instead of gathering it.
//
// Head dims 64 and 128 take attention_fa_kernel instead: the same rows, tiles and roundings with
// the scores, probabilities and output in registers (mma.sync) and double-buffered K/V tiles.
#include <cuda_bf16.h>
#include <mma.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "backend/cuda/cuda_common.h"
#include "core/env.h"
#include "core/error.h"

namespace jetlm::cuda {

namespace {

using namespace nvcuda;

constexpr int kBR = 64;  // rows per block
constexpr int kBC = 64;  // keys per tile
constexpr int kThreadsTc = 128;

struct TcParams {
  const float* q;
  float* o;
  KvLayout kv;
  int64_t slot, T, S, Hq, Hkv, hd, qpos0, kpos0, window, group, R;
  float scale_log2;
};

__device__ __forceinline__ int64_t tc_kv_offset(const KvLayout& L, int64_t slot, int64_t s) {
  int64_t row;
  if (L.ring > 0) {
    row = slot * L.ring + s % L.ring;
  } else {
    row = int64_t(L.page_table[slot * L.pages_per_seq + s / L.page_size]) * L.page_size + s % L.page_size;
  }
  return row * L.row;
}

template <int HDP>
struct TcLayout {
  static constexpr int LDQ = HDP + 8;  // bf16 rows of q/k/v (16-byte multiple, staggers banks)
  static constexpr int LDS = kBC + 4;  // float scores
  static constexpr int LDP = kBC + 8;  // bf16 probabilities
  static constexpr int LDO = HDP + 4;  // float output accumulator
  static constexpr size_t q_off = 0;
  static constexpr size_t k_off = q_off + size_t(kBR) * LDQ * 2;
  static constexpr size_t v_off = k_off + size_t(kBC) * LDQ * 2;
  static constexpr size_t s_off = v_off + size_t(kBC) * LDQ * 2;
  static constexpr size_t p_off = s_off + size_t(kBR) * LDS * 4;
  static constexpr size_t o_off = p_off + size_t(kBR) * LDP * 2;
  static constexpr size_t m_off = o_off + size_t(kBR) * LDO * 4;
  static constexpr size_t bytes = m_off + size_t(2 * kBR) * 4;
};

__device__ __forceinline__ int64_t row_key_begin(const TcParams& p, int64_t t) {
  return p.window > 0 ? max(int64_t(0), p.qpos0 + t - p.window + 1 - p.kpos0) : int64_t(0);
}
__device__ __forceinline__ int64_t row_key_end(const TcParams& p, int64_t t) {
  return min(p.S, p.qpos0 + t - p.kpos0 + 1);
}

template <int HDP>
__global__ void __launch_bounds__(kThreadsTc) attention_tc_kernel(TcParams p) {
  using Lay = TcLayout<HDP>;
  extern __shared__ __align__(128) unsigned char smem[];
  __nv_bfloat16* q_s = reinterpret_cast<__nv_bfloat16*>(smem + Lay::q_off);
  __nv_bfloat16* k_s = reinterpret_cast<__nv_bfloat16*>(smem + Lay::k_off);
  __nv_bfloat16* v_s = reinterpret_cast<__nv_bfloat16*>(smem + Lay::v_off);
  float* s_s = reinterpret_cast<float*>(smem + Lay::s_off);
  __nv_bfloat16* p_s = reinterpret_cast<__nv_bfloat16*>(smem + Lay::p_off);
  float* o_s = reinterpret_cast<float*>(smem + Lay::o_off);
  float* m_s = reinterpret_cast<float*>(smem + Lay::m_off);
  float* l_s = m_s + kBR;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t kh = blockIdx.y;
  const int64_t r0 = int64_t(blockIdx.x) * kBR;

  for (int i = threadIdx.x; i < kBR * HDP; i += blockDim.x) {
    const int row = i / HDP, d = i % HDP;
    const int64_t r = r0 + row;
    float val = 0.0f;
    if (r < p.R && d < p.hd) {
      const int64_t t = r / p.group, h = kh * p.group + r % p.group;
      val = p.q[(t * p.Hq + h) * p.hd + d] * p.scale_log2;
    }
    q_s[row * Lay::LDQ + d] = __float2bfloat16_rn(val);
  }
  for (int i = threadIdx.x; i < kBR * HDP; i += blockDim.x) o_s[(i / HDP) * Lay::LDO + i % HDP] = 0.0f;
  for (int i = threadIdx.x; i < kBR; i += blockDim.x) {
    m_s[i] = -INFINITY;
    l_s[i] = 0.0f;
  }

  const int64_t t_first = r0 / p.group, t_last = min(p.T - 1, (r0 + kBR - 1) / p.group);
  const int64_t lo = row_key_begin(p, t_first), hi = max(lo, row_key_end(p, t_last));
  // Two lanes per row of this warp: row (16 warp + lane / 2), key columns (lane % 2) * 32 ...
  const int my_row = warp * 16 + lane / 2, half = lane % 2;
  const int64_t my_r = r0 + my_row;
  const int64_t my_t = my_r / p.group;
  const int64_t my_begin = my_r < p.R ? row_key_begin(p, my_t) : 0;
  const int64_t my_end = my_r < p.R ? row_key_end(p, my_t) : 0;

  for (int64_t s0 = lo; s0 < hi; s0 += kBC) {
    __syncthreads();  // previous tile's k_s/v_s consumed (and q_s/o_s initialised on the first)
    if (p.hd % 4 == 0 && p.kv.dtype == DType::BF16) {
      // bf16 cache: 8-byte loads copied as they are.
      constexpr int Q4 = HDP / 4;
      const __nv_bfloat16* kc = static_cast<const __nv_bfloat16*>(p.kv.k);
      const __nv_bfloat16* vc = static_cast<const __nv_bfloat16*>(p.kv.v);
      for (int i = threadIdx.x; i < kBC * Q4; i += blockDim.x) {
        const int j = i / Q4, d = (i % Q4) * 4;
        const int64_t s = s0 + j;
        uint2 kk = make_uint2(0u, 0u), vv = kk;
        if (s < hi && d < p.hd) {
          const int64_t off = tc_kv_offset(p.kv, p.slot, s) + kh * p.hd + d;
          kk = *reinterpret_cast<const uint2*>(kc + off);
          vv = *reinterpret_cast<const uint2*>(vc + off);
        }
        *reinterpret_cast<uint2*>(k_s + j * Lay::LDQ + d) = kk;
        *reinterpret_cast<uint2*>(v_s + j * Lay::LDQ + d) = vv;
      }
    } else if (p.hd % 4 == 0) {
      // float4 loads: one page-table lookup per 4 values, coalesced along the head dim.
      constexpr int Q4 = HDP / 4;
      for (int i = threadIdx.x; i < kBC * Q4; i += blockDim.x) {
        const int j = i / Q4, d = (i % Q4) * 4;
        const int64_t s = s0 + j;
        float4 kk = make_float4(0.f, 0.f, 0.f, 0.f), vv = kk;
        if (s < hi && d < p.hd) {
          const int64_t off = tc_kv_offset(p.kv, p.slot, s) + kh * p.hd + d;
          kk = *reinterpret_cast<const float4*>(static_cast<const float*>(p.kv.k) + off);
          vv = *reinterpret_cast<const float4*>(static_cast<const float*>(p.kv.v) + off);
        }
        __nv_bfloat162* kd = reinterpret_cast<__nv_bfloat162*>(k_s + j * Lay::LDQ + d);
        __nv_bfloat162* vd = reinterpret_cast<__nv_bfloat162*>(v_s + j * Lay::LDQ + d);
        kd[0] = __floats2bfloat162_rn(kk.x, kk.y);
        kd[1] = __floats2bfloat162_rn(kk.z, kk.w);
        vd[0] = __floats2bfloat162_rn(vv.x, vv.y);
        vd[1] = __floats2bfloat162_rn(vv.z, vv.w);
      }
    } else {
      for (int i = threadIdx.x; i < kBC * HDP; i += blockDim.x) {
        const int j = i / HDP, d = i % HDP;
        const int64_t s = s0 + j;
        float kv_k = 0.0f, kv_v = 0.0f;
        if (s < hi && d < p.hd) {
          const int64_t off = tc_kv_offset(p.kv, p.slot, s) + kh * p.hd + d;
          if (p.kv.dtype == DType::BF16) {
            kv_k = __bfloat162float(static_cast<const __nv_bfloat16*>(p.kv.k)[off]);
            kv_v = __bfloat162float(static_cast<const __nv_bfloat16*>(p.kv.v)[off]);
          } else {
            kv_k = static_cast<const float*>(p.kv.k)[off];
            kv_v = static_cast<const float*>(p.kv.v)[off];
          }
        }
        k_s[j * Lay::LDQ + d] = __float2bfloat16_rn(kv_k);
        v_s[j * Lay::LDQ + d] = __float2bfloat16_rn(kv_v);
      }
    }
    __syncthreads();

    // S = Q K^T for this warp's 16 rows.
#pragma unroll
    for (int c = 0; c < kBC / 16; ++c) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int k = 0; k < HDP / 16; ++k) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
        wmma::load_matrix_sync(a, q_s + warp * 16 * Lay::LDQ + k * 16, Lay::LDQ);
        wmma::load_matrix_sync(b, k_s + c * 16 * Lay::LDQ + k * 16, Lay::LDQ);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(s_s + warp * 16 * Lay::LDS + c * 16, acc, Lay::LDS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax for my row over my 32 columns.
    float* srow = s_s + my_row * Lay::LDS + half * 32;
    float mx = -INFINITY;
    for (int j = 0; j < 32; ++j) {
      const int64_t s = s0 + half * 32 + j;
      if (s >= my_begin && s < my_end) mx = fmaxf(mx, srow[j]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_old = m_s[my_row];
    const float m_new = fmaxf(m_old, mx);
    const float corr = m_new == -INFINITY ? 1.0f : exp2f(m_old - m_new);
    float sum = 0.0f;
    __nv_bfloat16* prow = p_s + my_row * Lay::LDP + half * 32;
    for (int j = 0; j < 32; ++j) {
      const int64_t s = s0 + half * 32 + j;
      const float pr = (s >= my_begin && s < my_end) ? exp2f(srow[j] - m_new) : 0.0f;
      sum += pr;
      prow[j] = __float2bfloat16_rn(pr);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    float* orow = o_s + my_row * Lay::LDO;
    for (int d = half; d < HDP; d += 2) orow[d] *= corr;
    __syncwarp();
    if (half == 0) {
      l_s[my_row] = l_s[my_row] * corr + sum;
      m_s[my_row] = m_new;
    }

    // O += P V.
#pragma unroll
    for (int c = 0; c < HDP / 16; ++c) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, o_s + warp * 16 * Lay::LDO + c * 16, Lay::LDO, wmma::mem_row_major);
#pragma unroll
      for (int k = 0; k < kBC / 16; ++k) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
        wmma::load_matrix_sync(a, p_s + warp * 16 * Lay::LDP + k * 16, Lay::LDP);
        wmma::load_matrix_sync(b, v_s + k * 16 * Lay::LDQ + c * 16, Lay::LDQ);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(o_s + warp * 16 * Lay::LDO + c * 16, acc, Lay::LDO, wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kBR * HDP; i += blockDim.x) {
    const int row = i / HDP, d = i % HDP;
    const int64_t r = r0 + row;
    if (r >= p.R || d >= p.hd) continue;
    const int64_t t = r / p.group, h = kh * p.group + r % p.group;
    p.o[(t * p.Hq + h) * p.hd + d] = o_s[row * Lay::LDO + d] / l_s[row];
  }
}

// ---- flash-attention 2 on mma.sync (head dims 64 and 128) ----------------------------------------
// The same rows, tiles and numerics as attention_tc_kernel (bf16 q scaled by log2(e)/sqrt(hd), bf16
// K/V and probabilities, float32 scores, softmax and accumulation), but every warp keeps its 16
// rows' Q fragments, the tile's scores [16, 64] and its output [16, hd] in registers
// (mma.sync m16n8k16): the scores' accumulator layout is the probabilities' A-fragment layout, so
// softmax and P V need no shared-memory round trip, and the rescale by the new row maximum is a
// multiply of the thread's own accumulators. K/V tiles are double-buffered: the next tile's
// loads (cp.async for a bf16 cache) fly while this one is used. Q is staged once through the
// second stage's K buffer before the loop starts.
template <int HD>
struct FaLayout {
  static constexpr int LD = HD + 8;  // bf16 per row: 16-byte rows whose 8-row groups hit distinct banks (ldmatrix)
  static constexpr int kTile = kBC * LD;  // one K or V tile, elements
  static constexpr size_t bytes = size_t(4) * kTile * sizeof(__nv_bfloat16);  // 2 stages x (K, V)
  static_assert(kBR == kBC, "Q is staged in a K tile buffer");
};

template <int HD>
__device__ __forceinline__ void fa_load_tile(const TcParams& p, int64_t kh, int64_t s0, int64_t hi,
                                             __nv_bfloat16* k_s, __nv_bfloat16* v_s) {
  constexpr int LD = FaLayout<HD>::LD, CH = HD / 8;  // 16-byte chunks (8 bf16) per key row
  for (int i = threadIdx.x; i < kBC * CH; i += blockDim.x) {
    const int j = i / CH, c = (i % CH) * 8;
    const int64_t s = s0 + j;
    const bool ok = s < hi;  // keys past the block's last are zeros (their V rows meet p = 0)
    const int64_t off = ok ? tc_kv_offset(p.kv, p.slot, s) + kh * HD + c : 0;
    if (p.kv.dtype == DType::BF16) {
      detail::cp_async16_zfill(k_s + j * LD + c, static_cast<const __nv_bfloat16*>(p.kv.k) + off, ok);
      detail::cp_async16_zfill(v_s + j * LD + c, static_cast<const __nv_bfloat16*>(p.kv.v) + off, ok);
    } else {
      uint4 kw = make_uint4(0u, 0u, 0u, 0u), vw = kw;
      if (ok) {
        const float4* kf = reinterpret_cast<const float4*>(static_cast<const float*>(p.kv.k) + off);
        const float4* vf = reinterpret_cast<const float4*>(static_cast<const float*>(p.kv.v) + off);
        const float4 k0 = kf[0], k1 = kf[1], v0 = vf[0], v1 = vf[1];
        kw = make_uint4(detail::pack_bf16x2(k0.x, k0.y), detail::pack_bf16x2(k0.z, k0.w),
                        detail::pack_bf16x2(k1.x, k1.y), detail::pack_bf16x2(k1.z, k1.w));
        vw = make_uint4(detail::pack_bf16x2(v0.x, v0.y), detail::pack_bf16x2(v0.z, v0.w),
                        detail::pack_bf16x2(v1.x, v1.y), detail::pack_bf16x2(v1.z, v1.w));
      }
      *reinterpret_cast<uint4*>(k_s + j * LD + c) = kw;
      *reinterpret_cast<uint4*>(v_s + j * LD + c) = vw;
    }
  }
}

template <int HD>
__global__ void __launch_bounds__(kThreadsTc, 2) attention_fa_kernel(TcParams p) {
  static_assert(HD == 64 || HD == 128);
  using Lay = FaLayout<HD>;
  constexpr int LD = Lay::LD;
  constexpr float kNegInf = -INFINITY;
  extern __shared__ __align__(128) unsigned char smem[];
  __nv_bfloat16* tiles = reinterpret_cast<__nv_bfloat16*>(smem);  // stage s: K at 2s, V at 2s+1 (tiles)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, c = lane % 4;
  const int64_t kh = blockIdx.y;
  // Under the causal mask the last row blocks see the most keys: they start first.
  const int64_t r0 = int64_t(gridDim.x - 1 - blockIdx.x) * kBR;
  const int64_t t_first = r0 / p.group, t_last = min(p.T - 1, (r0 + kBR - 1) / p.group);
  const int64_t lo = row_key_begin(p, t_first), hi = max(lo, row_key_end(p, t_last));
  // Keys every row of the block may see: tiles inside need no mask.
  const int64_t full_lo = row_key_begin(p, t_last), full_hi = row_key_end(p, t_first);

  // Q rows (scaled, rounded to bf16) through stage 1's K buffer into registers. Rows past R are
  // zeros; they take the last token's mask and are not written.
  __nv_bfloat16* q_s = tiles + 2 * Lay::kTile;
  for (int i = threadIdx.x; i < kBR * HD / 4; i += blockDim.x) {
    const int row = i / (HD / 4), d = (i % (HD / 4)) * 4;
    const int64_t r = r0 + row;
    float4 val = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < p.R) {
      const int64_t t = r / p.group, h = kh * p.group + r % p.group;
      val = *reinterpret_cast<const float4*>(p.q + (t * p.Hq + h) * HD + d);
    }
    *reinterpret_cast<uint2*>(q_s + row * LD + d) =
        make_uint2(detail::pack_bf16x2(val.x * p.scale_log2, val.y * p.scale_log2),
                   detail::pack_bf16x2(val.z * p.scale_log2, val.w * p.scale_log2));
  }
  fa_load_tile<HD>(p, kh, lo, hi, tiles, tiles + Lay::kTile);
  detail::cp_async_commit();
  __syncthreads();
  uint32_t qf[HD / 16][4];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk)
    detail::ldmatrix_x4(qf[kk], q_s + (warp * 16 + lane % 16) * LD + kk * 16 + (lane / 16) * 8);

  // This thread's rows: a = warp row g, b = g + 8.
  const int64_t ra = r0 + warp * 16 + g, rb = ra + 8;
  const int64_t ta = min(ra / p.group, p.T - 1), tb = min(rb / p.group, p.T - 1);
  const int64_t beg_a = row_key_begin(p, ta), end_a = row_key_end(p, ta);
  const int64_t beg_b = row_key_begin(p, tb), end_b = row_key_end(p, tb);
  float o[HD / 8][4];
#pragma unroll
  for (int dt = 0; dt < HD / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
  float m_a = kNegInf, m_b = kNegInf, l_a = 0.0f, l_b = 0.0f;  // l: this thread's share of the row sum

  const int64_t ntiles = (hi - lo + kBC - 1) / kBC;
  for (int64_t it = 0; it < ntiles; ++it) {
    const int64_t s0 = lo + it * kBC;
    __syncthreads();  // every warp is done with the stage the next load overwrites (first: with q_s)
    if (it + 1 < ntiles) {
      __nv_bfloat16* next = tiles + 2 * ((it + 1) & 1) * Lay::kTile;
      fa_load_tile<HD>(p, kh, s0 + kBC, hi, next, next + Lay::kTile);
    }
    detail::cp_async_commit();  // possibly empty: the wait below always leaves one group in flight
    detail::cp_async_wait<1>();
    __syncthreads();  // this tile is in shared memory
    const __nv_bfloat16* k_s = tiles + 2 * (it & 1) * Lay::kTile;
    const __nv_bfloat16* v_s = k_s + Lay::kTile;

    // Scores [16 rows, 64 keys] = Q K^T: n-tiles of 8 keys, B fragments by ldmatrix from K rows.
    float sc[kBC / 8][4];
#pragma unroll
    for (int nt = 0; nt < kBC / 8; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
      for (int j = 0; j < kBC / 16; ++j) {
        uint32_t b[4];  // keys 16j + 0..7 (dims lo, hi), keys 16j + 8..15 (dims lo, hi)
        detail::ldmatrix_x4(b, k_s + (j * 16 + (lane / 16) * 8 + lane % 8) * LD + kk * 16 + ((lane / 8) % 2) * 8);
        detail::mma_bf16_16816(sc[2 * j], qf[kk], b[0], b[1]);
        detail::mma_bf16_16816(sc[2 * j + 1], qf[kk], b[2], b[3]);
      }
    }
    if (!(s0 >= full_lo && s0 + kBC <= full_hi)) {
#pragma unroll
      for (int nt = 0; nt < kBC / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t key = s0 + nt * 8 + 2 * c + e;
          if (key < beg_a || key >= end_a) sc[nt][e] = kNegInf;
          if (key < beg_b || key >= end_b) sc[nt][2 + e] = kNegInf;
        }
    }
    // Online softmax: a row's 64 scores lie in the 4 lanes of its quad.
    float mx_a = kNegInf, mx_b = kNegInf;
#pragma unroll
    for (int nt = 0; nt < kBC / 8; ++nt) {
      mx_a = fmaxf(mx_a, fmaxf(sc[nt][0], sc[nt][1]));
      mx_b = fmaxf(mx_b, fmaxf(sc[nt][2], sc[nt][3]));
    }
#pragma unroll
    for (int x = 1; x <= 2; x *= 2) {
      mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, x));
      mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, x));
    }
    const float new_a = fmaxf(m_a, mx_a), new_b = fmaxf(m_b, mx_b);
    // A row with no key yet keeps max -inf: subtract 0 then (its scores are -inf, so p = 0).
    const float corr_a = new_a == kNegInf ? 1.0f : exp2f(m_a - new_a);
    const float corr_b = new_b == kNegInf ? 1.0f : exp2f(m_b - new_b);
    const float base_a = new_a == kNegInf ? 0.0f : new_a, base_b = new_b == kNegInf ? 0.0f : new_b;
    m_a = new_a, m_b = new_b;
    float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
    for (int nt = 0; nt < kBC / 8; ++nt) {
      sc[nt][0] = exp2f(sc[nt][0] - base_a), sc[nt][1] = exp2f(sc[nt][1] - base_a);
      sc[nt][2] = exp2f(sc[nt][2] - base_b), sc[nt][3] = exp2f(sc[nt][3] - base_b);
      sum_a += sc[nt][0] + sc[nt][1];
      sum_b += sc[nt][2] + sc[nt][3];
    }
    l_a = l_a * corr_a + sum_a;
    l_b = l_b * corr_b + sum_b;
#pragma unroll
    for (int dt = 0; dt < HD / 8; ++dt) {
      o[dt][0] *= corr_a, o[dt][1] *= corr_a;
      o[dt][2] *= corr_b, o[dt][3] *= corr_b;
    }
    // O += P V: P's A fragment for keys 16kk.. is score n-tiles 2kk and 2kk+1; V's B fragments
    // by transposing ldmatrix from V rows.
#pragma unroll
    for (int kk = 0; kk < kBC / 16; ++kk) {
      const uint32_t a[4] = {detail::pack_bf16x2(sc[2 * kk][0], sc[2 * kk][1]),
                             detail::pack_bf16x2(sc[2 * kk][2], sc[2 * kk][3]),
                             detail::pack_bf16x2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                             detail::pack_bf16x2(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
      for (int dn = 0; dn < HD / 16; ++dn) {
        uint32_t b[4];  // dims 16dn + 0..7 (keys lo, hi), dims 16dn + 8..15 (keys lo, hi)
        detail::ldmatrix_x4<true>(b, v_s + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * LD + dn * 16 + (lane / 16) * 8);
        detail::mma_bf16_16816(o[2 * dn], a, b[0], b[1]);
        detail::mma_bf16_16816(o[2 * dn + 1], a, b[2], b[3]);
      }
    }
  }
#pragma unroll
  for (int x = 1; x <= 2; x *= 2) {
    l_a += __shfl_xor_sync(0xffffffffu, l_a, x);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, x);
  }
  if (ra < p.R) {
    float* out = p.o + ((ra / p.group) * p.Hq + kh * p.group + ra % p.group) * HD;
#pragma unroll
    for (int dt = 0; dt < HD / 8; ++dt)
      *reinterpret_cast<float2*>(out + dt * 8 + 2 * c) = make_float2(o[dt][0] / l_a, o[dt][1] / l_a);
  }
  if (rb < p.R) {
    float* out = p.o + ((rb / p.group) * p.Hq + kh * p.group + rb % p.group) * HD;
#pragma unroll
    for (int dt = 0; dt < HD / 8; ++dt)
      *reinterpret_cast<float2*>(out + dt * 8 + 2 * c) = make_float2(o[dt][2] / l_b, o[dt][3] / l_b);
  }
}

template <int HD>
void launch_fa(const TcParams& p) {
  constexpr size_t bytes = FaLayout<HD>::bytes;
  detail::allow_dynamic_smem(reinterpret_cast<const void*>(attention_fa_kernel<HD>), bytes);
  const dim3 grid(unsigned((p.R + kBR - 1) / kBR), unsigned(p.Hkv));
  attention_fa_kernel<HD><<<grid, kThreadsTc, bytes, stream()>>>(p);
  JETLM_CUDA_CHECK_LAUNCH();
}

// JETLM_ATTN_PREFILL=registers|wmma picks the kernel for head dims 64 and 128 (A/B runs). The
// register kernel is the default: 4.2-4.6x the WMMA kernel's TFLOP/s on the H100 (docs/performance.md).
constexpr bool kRegisterPrefillByDefault = true;
bool prefill_attention_in_registers() {
  return env_choice("JETLM_ATTN_PREFILL", kRegisterPrefillByDefault ? "registers" : "wmma", {"registers", "wmma"}) ==
         "registers";
}

template <int HDP>
void launch_tc(const TcParams& p) {
  constexpr size_t bytes = TcLayout<HDP>::bytes;
  detail::allow_dynamic_smem(reinterpret_cast<const void*>(attention_tc_kernel<HDP>), bytes);
  const dim3 grid(unsigned((p.R + kBR - 1) / kBR), unsigned(p.Hkv));
  attention_tc_kernel<HDP><<<grid, kThreadsTc, bytes, stream()>>>(p);
  JETLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention_prefill_tc(const float* q, const KvLayout& kv, int64_t slot, int64_t T, int64_t S, int64_t Hq,
                          int64_t Hkv, int64_t hd, int64_t qpos0, int64_t kpos0, int64_t window, float* o) {
  JETLM_ASSERT(Hkv > 0 && Hq % Hkv == 0, "attention_prefill_tc: Hq must be a multiple of Hkv");
  JETLM_ASSERT(hd >= 1 && hd <= kAttentionTcMaxHeadDim, "attention_prefill_tc: head dim up to 128");
  if (T == 0) return;
  JETLM_ASSERT(std::min(S, qpos0 - kpos0 + 1) > (window > 0 ? std::max<int64_t>(0, qpos0 - window + 1 - kpos0) : 0),
               "attention_prefill_tc: a query sees no key");
  TcParams p{};
  p.q = q;
  p.o = o;
  p.kv = kv;
  p.slot = slot;
  p.T = T, p.S = S, p.Hq = Hq, p.Hkv = Hkv, p.hd = hd, p.qpos0 = qpos0, p.kpos0 = kpos0, p.window = window;
  p.group = Hq / Hkv;
  p.R = T * p.group;
  p.scale_log2 = float(1.4426950408889634 / std::sqrt(double(hd)));
  JETLM_ASSERT((p.R + kBR - 1) / kBR < (int64_t(1) << 31) && Hkv <= 65535);
  // The register kernel reads 16-byte runs of K/V rows: hd 64 or 128 and aligned pools.
  const bool aligned = reinterpret_cast<uintptr_t>(kv.k) % 16 == 0 && reinterpret_cast<uintptr_t>(kv.v) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(q) % 16 == 0 && reinterpret_cast<uintptr_t>(o) % 8 == 0;
  if ((hd == 64 || hd == 128) && aligned && prefill_attention_in_registers()) {
    if (hd == 64) launch_fa<64>(p);
    else launch_fa<128>(p);
    return;
  }
  if (hd <= 32) launch_tc<32>(p);
  else if (hd <= 64) launch_tc<64>(p);
  else launch_tc<128>(p);
}

}  // namespace jetlm::cuda
