// Ops of the batched GPU engine (cuda_model.cpp): per-row RoPE positions, KV writes and reads
// through the paged pool or the SWA ring, split-KV decode attention over a batch of sequences of
// different lengths, the batched dynamic-conv step, and sampling on the device.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "backend/cuda/cuda_common.h"
#include "core/env.h"
#include "core/error.h"

namespace jetlm::cuda {

using detail::blocks_for;

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + __expf(-x)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Offset (in floats) of the K/V row of (slot, pos) inside a KvLayout's arrays.
__device__ __forceinline__ int64_t kv_offset(const KvLayout& L, int64_t slot, int64_t pos) {
  int64_t row;
  if (L.ring > 0) {
    row = slot * L.ring + pos % L.ring;
  } else {
    const int64_t page = L.page_table[slot * L.pages_per_seq + pos / L.page_size];
    row = page * L.page_size + pos % L.page_size;
  }
  return row * L.row;
}

// ---- rope with a position per row ----------------------------------------------------------------
__global__ void rope_at_kernel(float* x, int64_t T, int64_t H, int64_t hd, const int32_t* positions,
                               double log_theta) {
  const int64_t half = hd / 2;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= T * half) return;
  const int64_t t = idx / half, i = idx % half;
  const double inv_freq = exp(-2.0 * double(i) / double(hd) * log_theta);
  double s, c;
  sincos(double(positions[t]) * inv_freq, &s, &c);
  const float cf = float(c), sf = float(s);
  for (int64_t h = 0; h < H; ++h) {
    float* row = x + (t * H + h) * hd;
    const float a = row[i], b = row[i + half];
    row[i] = a * cf - b * sf;
    row[i + half] = b * cf + a * sf;
  }
}

// ---- KV writes / reads ------------------------------------------------------------------------------
// Cache elements: float32 or bf16 (KT); arithmetic is float32 either way (detail::to_float /
// from_float convert).

// Row t of k/v goes to (slot, pos) = (slots ? slots[t] : slot0, positions ? positions[t] : pos0 + t).
// Ring layouts only take rows t >= first (earlier rows would be overwritten by later ones anyway,
// and two threads must not race on one ring row).
template <typename KT>
__global__ void kv_append_kernel(KvLayout L, const float* k, const float* v, int64_t T, const int32_t* slots,
                                 int64_t slot0, const int32_t* positions, int64_t pos0, int64_t first) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= T * L.row) return;
  const int64_t t = idx / L.row, c = idx % L.row;
  if (t < first) return;
  const int64_t slot = slots ? slots[t] : slot0;
  const int64_t pos = positions ? positions[t] : pos0 + t;
  const int64_t off = kv_offset(L, slot, pos) + c;
  static_cast<KT*>(L.k)[off] = detail::from_float<KT>(k[idx]);
  static_cast<KT*>(L.v)[off] = detail::from_float<KT>(v[idx]);
}

template <typename KT>
__global__ void kv_gather_kernel(KvLayout L, int64_t slot, int64_t pos_lo, int64_t n, float* k_out, float* v_out) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n * L.row) return;
  const int64_t t = idx / L.row, c = idx % L.row;
  const int64_t off = kv_offset(L, slot, pos_lo + t) + c;
  k_out[idx] = detail::to_float(static_cast<const KT*>(L.k)[off]);
  v_out[idx] = detail::to_float(static_cast<const KT*>(L.v)[off]);
}

// The decode step's attention inputs from the rows of the fused projection, one launch instead of
// split_columns + rope_at (q) + rope_at (k) + kv_append: fused [B, (Hq + 2 Hkv) hd] = q | k | v;
// q roped into q_out [B, Hq, hd]; k roped and v stored at (slots[b], positions[b]). A thread per
// (head, pair) instead of rope_at's loop over heads (batch 1 has 64 pairs); the angle math and
// the rotation are rope_at's, so the bits are the separate ops'.
template <typename KT>
__global__ void qkv_rope_append_kernel(const float* __restrict__ fused, int64_t Hq, int64_t Hkv, int64_t hd,
                                       const int32_t* __restrict__ positions, double log_theta, KvLayout L,
                                       const int32_t* __restrict__ slots, float* __restrict__ q_out) {
  detail::allow_dependent_launch();
  const int64_t b = blockIdx.x, half = hd / 2;
  const float* row = fused + b * (Hq + 2 * Hkv) * hd;
  const int64_t pos = positions[b];
  const int64_t off = kv_offset(L, slots[b], pos);
  for (int64_t idx = threadIdx.x; idx < (Hq + Hkv) * half; idx += blockDim.x) {
    const int64_t h = idx / half, i = idx % half;
    const double inv_freq = exp(-2.0 * double(i) / double(hd) * log_theta);
    double s, c;
    sincos(double(pos) * inv_freq, &s, &c);
    const float cf = float(c), sf = float(s);
    const float a = row[h * hd + i], bv = row[h * hd + i + half];
    const float ra = a * cf - bv * sf, rb = bv * cf + a * sf;
    if (h < Hq) {
      q_out[(b * Hq + h) * hd + i] = ra;
      q_out[(b * Hq + h) * hd + i + half] = rb;
    } else {
      KT* kc = static_cast<KT*>(L.k) + off + (h - Hq) * hd;
      kc[i] = detail::from_float<KT>(ra);
      kc[i + half] = detail::from_float<KT>(rb);
    }
  }
  const float* v = row + (Hq + Hkv) * hd;
  for (int64_t c = threadIdx.x; c < Hkv * hd; c += blockDim.x)
    static_cast<KT*>(L.v)[off + c] = detail::from_float<KT>(v[c]);
}

// ---- decode attention ----------------------------------------------------------------------------------
// Grid (splits, Hkv, B), 4 warps. The block reads each key of its split once for all `group` query
// heads of its KV head (GQA), warps take keys round-robin, each with a running max/sum per head;
// lanes own head dims lane + 32 i. Scores in the log2 domain. Partials (unnormalised) go to
// part_acc/part_ml and attention_merge_kernel combines the splits.
constexpr int kDecodeWarps = 4;
constexpr int kMaxGroup = 8;

struct DecodeParams {
  const float* q;  // [B, Hq, hd]
  KvLayout kv;
  const int32_t* slots;    // [B]
  const int32_t* lengths;  // [B] keys of each sequence (its new token included)
  float* part_acc;         // [B, Hq, splits, hd]
  float* part_ml;          // [B, Hq, splits, 2]
  float* o;                // [B, Hq, hd]
  int64_t Hq, Hkv, hd, group, window, keys_per_split;
  int splits;
  float scale_log2;
};

template <int DPL, typename KT>
__global__ void __launch_bounds__(32 * kDecodeWarps) attention_decode_kernel(DecodeParams p) {
  detail::allow_dependent_launch();
  const KT* kcache = static_cast<const KT*>(p.kv.k);
  const KT* vcache = static_cast<const KT*>(p.kv.v);
  constexpr int HDP = 32 * DPL;
  __shared__ float q_s[kMaxGroup][HDP];
  __shared__ float red_ml[kDecodeWarps][kMaxGroup][2];
  __shared__ float red_acc[kDecodeWarps][kMaxGroup][HDP];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int split = blockIdx.x;
  const int64_t kh = blockIdx.y, b = blockIdx.z;
  const int G = int(p.group);
  const int64_t len = p.lengths[b], slot = p.slots[b];
  const int64_t lo_all = p.window > 0 ? max(int64_t(0), len - p.window) : int64_t(0);
  const int64_t s_lo = max(lo_all, int64_t(split) * p.keys_per_split);
  const int64_t s_hi = min(len, int64_t(split + 1) * p.keys_per_split);

  for (int i = threadIdx.x; i < kMaxGroup * HDP; i += blockDim.x) {
    const int g = i / HDP, d = i % HDP;
    q_s[g][d] = (g < G && d < p.hd) ? p.q[(b * p.Hq + kh * G + g) * p.hd + d] * p.scale_log2 : 0.0f;
  }
  __syncthreads();

  float m[kMaxGroup], l[kMaxGroup], acc[kMaxGroup][DPL];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[g][i] = 0.0f;
  }
  // Each warp takes KU keys per iteration (keys s, s + 4, ...: the block's 4 warps interleave), loading
  // all their K/V rows before using any, so KU row loads are in flight at once.
  constexpr int KU = DPL <= 4 ? 4 : 2;
  for (int64_t s0 = s_lo + warp; s0 < s_hi; s0 += int64_t(KU) * kDecodeWarps) {
    float kr[KU][DPL], vr[KU][DPL];
#pragma unroll
    for (int u = 0; u < KU; ++u) {
      const int64_t s = s0 + int64_t(u) * kDecodeWarps;
      const bool ok = s < s_hi;
      const int64_t off = ok ? kv_offset(p.kv, slot, s) + kh * p.hd : 0;
#pragma unroll
      for (int i = 0; i < DPL; ++i) {
        const int d = lane + 32 * i;
        kr[u][i] = ok && d < p.hd ? detail::to_float(kcache[off + d]) : 0.0f;
        vr[u][i] = ok && d < p.hd ? detail::to_float(vcache[off + d]) : 0.0f;
      }
    }
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < G) {
        float score[KU];
        float tile_max = m[g];
#pragma unroll
        for (int u = 0; u < KU; ++u) {
          float part = 0.0f;
#pragma unroll
          for (int i = 0; i < DPL; ++i) part += q_s[g][lane + 32 * i] * kr[u][i];
          score[u] = s0 + int64_t(u) * kDecodeWarps < s_hi ? warp_sum(part) : -INFINITY;
          tile_max = fmaxf(tile_max, score[u]);
        }
        const float corr = exp2f(m[g] - tile_max);  // m = -inf: 0; tile_max is finite (key s0 is valid)
        float lsum = l[g] * corr;
#pragma unroll
        for (int i = 0; i < DPL; ++i) acc[g][i] *= corr;
#pragma unroll
        for (int u = 0; u < KU; ++u) {
          const float pr = exp2f(score[u] - tile_max);  // masked keys: 0
          lsum += pr;
#pragma unroll
          for (int i = 0; i < DPL; ++i) acc[g][i] += pr * vr[u][i];
        }
        l[g] = lsum;
        m[g] = tile_max;
      }
    }
  }
  // Merge the warps of the block.
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g < G) {
      if (lane == 0) {
        red_ml[warp][g][0] = m[g];
        red_ml[warp][g][1] = l[g];
      }
#pragma unroll
      for (int i = 0; i < DPL; ++i) red_acc[warp][g][lane + 32 * i] = acc[g][i];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * HDP; i += blockDim.x) {
    const int g = i / HDP, d = i % HDP;
    float M = -INFINITY;
    for (int w = 0; w < kDecodeWarps; ++w) M = fmaxf(M, red_ml[w][g][0]);
    float L = 0.0f, A = 0.0f;
    if (M != -INFINITY) {
      for (int w = 0; w < kDecodeWarps; ++w) {
        const float f = exp2f(red_ml[w][g][0] - M);
        L += red_ml[w][g][1] * f;
        A += red_acc[w][g][d] * f;
      }
    }
    const int64_t row = (b * p.Hq + kh * G + g) * p.splits + split;
    if (d < p.hd) p.part_acc[row * p.hd + d] = A;
    if (d == 0) {
      p.part_ml[row * 2] = M;
      p.part_ml[row * 2 + 1] = L;
    }
  }
}

// One block per (head, sequence): o = sum_s acc_s 2^(m_s - M) / sum_s l_s 2^(m_s - M).
// The split weights 2^(m_s - M) go to shared memory first; then blockDim / hd thread groups
// each sum every kMergeGroups-th split of a dim, several loads in flight per thread, since small
// batches take hundreds of splits per head (decode_splits) and a serial walk over them would cost
// one memory round trip per split.
constexpr int kMergeThreads = 512;
constexpr int kMaxMergeSplits = 1024;

__device__ float merge_block_reduce(float v, bool is_max, float* red) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, other) : v + other;
  }
  __syncthreads();  // red of a previous reduction consumed
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float r = is_max ? -INFINITY : 0.0f;
  for (int w = 0; w < int(blockDim.x / 32); ++w) r = is_max ? fmaxf(r, red[w]) : r + red[w];
  return r;
}

__global__ void __launch_bounds__(kMergeThreads) attention_merge_kernel(DecodeParams p) {
  detail::allow_dependent_launch();
  __shared__ float weight[kMaxMergeSplits];
  __shared__ float red[kMergeThreads / 32];
  __shared__ float partial[kMergeThreads];
  const int64_t h = blockIdx.x, b = blockIdx.y;
  const int64_t row0 = (b * p.Hq + h) * p.splits;
  float M = -INFINITY;
  for (int s = threadIdx.x; s < p.splits; s += blockDim.x) M = fmaxf(M, p.part_ml[(row0 + s) * 2]);
  M = merge_block_reduce(M, true, red);
  float L = 0.0f;
  for (int s = threadIdx.x; s < p.splits; s += blockDim.x) {
    const float ms = p.part_ml[(row0 + s) * 2];
    const float w = ms != -INFINITY ? exp2f(ms - M) : 0.0f;  // empty splits (window, past the end)
    weight[s] = w;
    if (w != 0.0f) L += p.part_ml[(row0 + s) * 2 + 1] * w;
  }
  L = merge_block_reduce(L, false, red);  // its barriers also publish `weight`
  const int groups = max(1, int(blockDim.x) / int(p.hd));
  const int group = threadIdx.x / int(p.hd);
  for (int64_t d = threadIdx.x % p.hd; d < p.hd; d += blockDim.x) {
    float A = 0.0f;
    if (group < groups) {
#pragma unroll 8
      for (int s = group; s < p.splits; s += groups)
        if (weight[s] != 0.0f) A += p.part_acc[(row0 + s) * p.hd + d] * weight[s];
    }
    if (groups == 1) {
      if (group == 0) p.o[(b * p.Hq + h) * p.hd + d] = A / L;
    } else {
      partial[threadIdx.x] = A;
      __syncthreads();
      if (group == 0) {
        for (int gi = 1; gi < groups; ++gi) A += partial[gi * p.hd + d];
        p.o[(b * p.Hq + h) * p.hd + d] = A / L;
      }
    }
  }
}

template <int DPL>
void launch_decode(const DecodeParams& p, int64_t B) {
  const dim3 grid(unsigned(p.splits), unsigned(p.Hkv), unsigned(B));
  if (p.kv.dtype == DType::BF16)
    attention_decode_kernel<DPL, __nv_bfloat16><<<grid, 32 * kDecodeWarps, 0, stream()>>>(p);
  else
    attention_decode_kernel<DPL, float><<<grid, 32 * kDecodeWarps, 0, stream()>>>(p);
  JETLM_CUDA_CHECK_LAUNCH();
}

// ---- decode attention on tensor cores (bf16 cache, hd 64 or 128) ------------------------------------
// Grid (splits / 4, Hkv, B), 4 warps; every WARP owns one split (split index 4 * blockIdx.x + warp)
// and walks it in blocks of 16 keys with mma.sync m16n8k16 (bf16 in, float32 accumulate):
//   S [16 rows, 16 keys] = Q [16 rows, hd] K^T     rows = the GQA group's query heads, zero-padded
//   O [16 rows, hd]     += P [16 rows, 16 keys] V   P = exp2(S - running max) in bf16
// Fragments come straight from global memory into registers (no shared-memory staging): a dot
// product does not care how the head dims are ordered, so Q and K use one permutation of the
// dims that lets each thread load 16-byte runs of its key row: thread (g = lane/4, c = lane%4)
// holds K words P(c, h) = (h/4)*16 + c*4 + h%4 of key g, h = 0..hd/8-1, and word h serves k-step
// h/2, register h%2. For P V the thread needs keys 2c, 2c+1, 2c+8, 2c+9 at one dim per n-tile:
// it loads dims (u*8 + g)*8 .. +7 of those four V rows (u < hd/64) and pairs the two keys of a
// register with a byte permute; n-tile nt is dim ((nt/8)*8 + n)*8 + nt%8 for output column n.
constexpr int kTcDecodeWarps = 4;
constexpr int kTcDecodeMinKeys = 32;  // shortest warp-split (decode_splits)

using detail::mma_bf16_16816;
using detail::pack_bf16x2;

__device__ __forceinline__ uint4 load_stream16(const __nv_bfloat16* p) {
  return __ldcs(reinterpret_cast<const uint4*>(p));
}

// MIN_BLOCKS: resident blocks per SM asked of the register allocator. hd 128: 3 (168 registers,
// ~160 bytes of spills) decodes Jet-Nemotron-2B at 64K 3.6% faster than 2 (198 registers, no
// spills) on the H100 (docs/performance.md); JETLM_TC_DECODE_BLOCKS=2 selects the other for A/B.
template <int HD, int MIN_BLOCKS>
__global__ void __launch_bounds__(32 * kTcDecodeWarps, MIN_BLOCKS) attention_decode_tc_kernel(DecodeParams p) {
  detail::allow_dependent_launch();
  static_assert(HD == 64 || HD == 128);
  constexpr int KSTEPS = HD / 16;  // k-steps of Q K^T
  constexpr int KW = HD / 8;       // K words a thread holds per key (HD/2 words per row, 4 threads)
  constexpr int VU = HD / 64;      // 16-byte V loads per thread per row
  constexpr int NT = HD / 8;       // n-tiles of P V
  __shared__ uint32_t q_s[16][HD / 2];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  const int64_t kh = blockIdx.y, b = blockIdx.z;
  const int G = int(p.group);
  const int split = blockIdx.x * kTcDecodeWarps + warp;
  const int64_t len = p.lengths[b], slot = p.slots[b];
  const int64_t lo_all = p.window > 0 ? max(int64_t(0), len - p.window) : int64_t(0);
  const int64_t s_lo = max(lo_all, int64_t(split) * p.keys_per_split);
  const int64_t s_hi = min(len, int64_t(split + 1) * p.keys_per_split);
  const __nv_bfloat16* kcache = static_cast<const __nv_bfloat16*>(p.kv.k);
  const __nv_bfloat16* vcache = static_cast<const __nv_bfloat16*>(p.kv.v);

  // Q rows (pre-scaled into the log2 domain) as bf16 pairs, permuted: word w = P(c, h) of row r.
  for (int i = threadIdx.x; i < 16 * HD / 2; i += blockDim.x) {
    const int r = i / (HD / 2), w = i % (HD / 2);
    float x0 = 0.0f, x1 = 0.0f;
    if (r < G) {
      const float* qr = p.q + (b * p.Hq + kh * G + r) * HD;
      x0 = qr[2 * w] * p.scale_log2;
      x1 = qr[2 * w + 1] * p.scale_log2;
    }
    q_s[r][w] = pack_bf16x2(x0, x1);
  }
  __syncthreads();
  auto perm_word = [&](int h) { return (h / 4) * 16 + c * 4 + h % 4; };
  uint32_t qa[KSTEPS][4];
#pragma unroll
  for (int j = 0; j < KSTEPS; ++j) {
    qa[j][0] = q_s[g][perm_word(2 * j)];
    qa[j][1] = q_s[g + 8][perm_word(2 * j)];
    qa[j][2] = q_s[g][perm_word(2 * j + 1)];
    qa[j][3] = q_s[g + 8][perm_word(2 * j + 1)];
  }

  float o[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;  // rows g and g + 8

  for (int64_t s0 = s_lo; s0 < s_hi; s0 += 16) {
    // K rows s0 + g and s0 + 8 + g; V rows s0 + 2c, 2c+1, 2c+8, 2c+9 (zeros past s_hi).
    uint32_t kw[2][KW];
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      const int64_t s = s0 + t * 8 + g;
      if (s < s_hi) {
        const __nv_bfloat16* row = kcache + kv_offset(p.kv, slot, s) + kh * HD + c * 8;
#pragma unroll
        for (int i = 0; i < KW / 4; ++i) {
          const uint4 x = load_stream16(row + i * 32);
          kw[t][4 * i] = x.x, kw[t][4 * i + 1] = x.y, kw[t][4 * i + 2] = x.z, kw[t][4 * i + 3] = x.w;
        }
      } else {
#pragma unroll
        for (int i = 0; i < KW; ++i) kw[t][i] = 0u;
      }
    }
    uint32_t vw[4][VU * 4];
#pragma unroll
    for (int rr = 0; rr < 4; ++rr) {
      const int64_t s = s0 + 2 * c + (rr & 1) + (rr >> 1) * 8;
      if (s < s_hi) {
        const __nv_bfloat16* row = vcache + kv_offset(p.kv, slot, s) + kh * HD + g * 8;
#pragma unroll
        for (int u = 0; u < VU; ++u) {
          const uint4 x = load_stream16(row + u * 64);
          vw[rr][4 * u] = x.x, vw[rr][4 * u + 1] = x.y, vw[rr][4 * u + 2] = x.z, vw[rr][4 * u + 3] = x.w;
        }
      } else {
#pragma unroll
        for (int i = 0; i < VU * 4; ++i) vw[rr][i] = 0u;
      }
    }

    float sc[2][4];
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      sc[t][0] = sc[t][1] = sc[t][2] = sc[t][3] = 0.0f;
#pragma unroll
      for (int j = 0; j < KSTEPS; ++j) mma_bf16_16816(sc[t], qa[j], kw[t][2 * j], kw[t][2 * j + 1]);
      const int64_t key = s0 + t * 8 + 2 * c;
      if (key >= s_hi) sc[t][0] = sc[t][2] = -INFINITY;
      if (key + 1 >= s_hi) sc[t][1] = sc[t][3] = -INFINITY;
    }
    float mx0 = fmaxf(fmaxf(sc[0][0], sc[0][1]), fmaxf(sc[1][0], sc[1][1]));
    float mx1 = fmaxf(fmaxf(sc[0][2], sc[0][3]), fmaxf(sc[1][2], sc[1][3]));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);  // finite: key s0 is valid
    const float corr0 = exp2f(m0 - mn0), corr1 = exp2f(m1 - mn1);
    m0 = mn0;
    m1 = mn1;
    float pr[2][4];
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      pr[t][0] = exp2f(sc[t][0] - mn0);
      pr[t][1] = exp2f(sc[t][1] - mn0);
      pr[t][2] = exp2f(sc[t][2] - mn1);
      pr[t][3] = exp2f(sc[t][3] - mn1);
    }
    l0 = l0 * corr0 + (pr[0][0] + pr[0][1] + pr[1][0] + pr[1][1]);
    l1 = l1 * corr1 + (pr[0][2] + pr[0][3] + pr[1][2] + pr[1][3]);
    const uint32_t pa[4] = {pack_bf16x2(pr[0][0], pr[0][1]), pack_bf16x2(pr[0][2], pr[0][3]),
                            pack_bf16x2(pr[1][0], pr[1][1]), pack_bf16x2(pr[1][2], pr[1][3])};
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      o[nt][0] *= corr0;
      o[nt][1] *= corr0;
      o[nt][2] *= corr1;
      o[nt][3] *= corr1;
      const int word = (nt / 8) * 4 + (nt % 8) / 2;
      const unsigned sel = (nt % 2) ? 0x7632u : 0x5410u;
      const uint32_t b0 = __byte_perm(vw[0][word], vw[1][word], sel);
      const uint32_t b1 = __byte_perm(vw[2][word], vw[3][word], sel);
      mma_bf16_16816(o[nt], pa, b0, b1);
    }
  }

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = g + 8 * half;
    if (r >= G) continue;
    const int64_t idx = (b * p.Hq + kh * G + r) * p.splits + split;
    float* acc = p.part_acc + idx * HD;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int d0 = ((nt / 8) * 8 + 2 * c) * 8 + nt % 8;  // column 2c; column 2c + 1 is 8 dims on
      acc[d0] = o[nt][2 * half];
      acc[d0 + 8] = o[nt][2 * half + 1];
    }
    if (c == 0) {
      p.part_ml[idx * 2] = half ? m1 : m0;
      p.part_ml[idx * 2 + 1] = half ? l1 : l0;
    }
  }
}

// ---- dynamic conv step --------------------------------------------------------------------------------
// One thread per (b, c): v = silu(sum_i kernel[b, c, i] * hist_i) with hist = (state rows, u[b, c]);
// the thread then shifts its own state column, so no two threads touch the same state word.
__global__ void dconv_step_kernel(const float* u, const float* kernel, int64_t B, int64_t C, int64_t K,
                                  float* conv_pool, const int32_t* slots, float* v) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * C) return;
  const int64_t b = idx / C, c = idx % C;
  float* state = conv_pool + int64_t(slots[b]) * (K - 1) * C;
  const float* ker = kernel + idx * K;
  float hist[kMaxConvTaps];
#pragma unroll
  for (int i = 0; i < kMaxConvTaps; ++i)
    if (i < K - 1) hist[i] = state[i * C + c];
  const float x = u[idx];
  float acc = ker[K - 1] * x;
#pragma unroll
  for (int i = 0; i < kMaxConvTaps; ++i)
    if (i < K - 1) acc += ker[i] * hist[i];
  v[idx] = silu_f(acc);
#pragma unroll
  for (int i = 0; i < kMaxConvTaps; ++i)
    if (i < K - 2) state[i * C + c] = hist[i + 1];
  if (K > 1) state[(K - 2) * C + c] = x;
}

// ---- sampling ----------------------------------------------------------------------------------------
constexpr int kSampleThreads = 1024;

__device__ float block_reduce(float v, bool is_max, float* red) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, other) : v + other;
  }
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float r = is_max ? -INFINITY : 0.0f;
  for (int w = 0; w < int(blockDim.x / 32); ++w) r = is_max ? fmaxf(r, red[w]) : r + red[w];
  return r;
}

// (value, index) argmax with the first index winning ties.
__device__ void block_argmax(float& best, int& best_i, float* red_v, int* red_i) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (ov > best || (ov == best && oi < best_i)) {
      best = ov;
      best_i = oi;
    }
  }
  __syncthreads();
  if (lane == 0) {
    red_v[warp] = best;
    red_i[warp] = best_i;
  }
  __syncthreads();
  best = -INFINITY;
  best_i = 0x7fffffff;
  for (int w = 0; w < int(blockDim.x / 32); ++w) {
    if (red_v[w] > best || (red_v[w] == best && red_i[w] < best_i)) {
      best = red_v[w];
      best_i = red_i[w];
    }
  }
}

// A counter-based uniform in (0, 1) from (seed, step, index): splitmix64 of their mix.
__device__ __forceinline__ float uniform01(uint64_t seed, uint64_t step, uint64_t i) {
  uint64_t z = seed ^ (step * 0x9E3779B97F4A7C15ull) ^ (i * 0xD1B54A32D192ED03ull);
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float(z >> 40) + 0.5f) * (1.0f / 16777216.0f);
}

// ---- greedy rows: argmax in two passes ----
constexpr int kArgmaxThreads = 256;
constexpr int kArgmaxPerThread = 16;  // loads in flight per thread
constexpr int64_t kArgmaxChunk = int64_t(kArgmaxThreads) * kArgmaxPerThread;

struct ArgmaxCandidate {
  float value;
  int32_t index;  // 0x7fffffff: none (every value NaN or -inf)
};

__device__ __forceinline__ void keep_first_max(float& best, int& best_i, float v, int i) {
  if (v > best || (v == best && i < best_i)) {
    best = v;
    best_i = i;
  }
}

// Grid (chunks, B): the first maximum of row b's chunk, as sample_kernel's greedy rule picks it.
__global__ void __launch_bounds__(kArgmaxThreads) argmax_chunks_kernel(const float* __restrict__ logits, int64_t V,
                                                                       ArgmaxCandidate* __restrict__ best_out) {
  __shared__ float red_v[kArgmaxThreads / 32];
  __shared__ int red_i[kArgmaxThreads / 32];
  const int64_t b = blockIdx.y, c0 = int64_t(blockIdx.x) * kArgmaxChunk;
  const float* row = logits + b * V;
  float v[kArgmaxPerThread];
#pragma unroll
  for (int k = 0; k < kArgmaxPerThread; ++k) {
    const int64_t i = c0 + k * kArgmaxThreads + threadIdx.x;
    v[k] = i < V ? row[i] : -INFINITY;
  }
  float best = -INFINITY;
  int best_i = 0x7fffffff;
#pragma unroll
  for (int k = 0; k < kArgmaxPerThread; ++k)
    if (v[k] > best) {  // indices increase with k: the first maximum stays
      best = v[k];
      best_i = int(c0 + k * kArgmaxThreads + threadIdx.x);
    }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    keep_first_max(best, best_i, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, best_i, o));
  if (lane == 0) red_v[warp] = best, red_i[warp] = best_i;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kArgmaxThreads / 32; ++w) keep_first_max(best, best_i, red_v[w], red_i[w]);
    best_out[b * gridDim.x + blockIdx.x] = ArgmaxCandidate{best, best_i};
  }
}

// One warp per row over its chunks' candidates.
__global__ void argmax_merge_kernel(const ArgmaxCandidate* __restrict__ cand, int64_t chunks, int32_t* __restrict__ out) {
  const int64_t b = blockIdx.x;
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  for (int64_t c = threadIdx.x; c < chunks; c += 32) {
    const ArgmaxCandidate x = cand[b * chunks + c];
    keep_first_max(best, best_i, x.value, x.index);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    keep_first_max(best, best_i, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, best_i, o));
  if (threadIdx.x == 0) out[b] = best_i;
}

// One block per row. Greedy (temperature <= 0): the first maximum. Otherwise the tokens kept by
// top-k / top-p / min-p form a logit threshold tau (found by bisection, no sort), and the draw is
// Gumbel-max over them: argmax l/T + G_i, an exact sample of the renormalised softmax.
__global__ void __launch_bounds__(kSampleThreads) sample_kernel(const float* logits, int64_t V,
                                                                const DeviceSampling* params, int32_t* out) {
  __shared__ float red[kSampleThreads / 32];
  __shared__ float red_v[kSampleThreads / 32];
  __shared__ int red_i[kSampleThreads / 32];
  const int64_t b = blockIdx.x;
  const float* row = logits + b * V;
  const DeviceSampling sp = params[b];

  float lmax = -INFINITY, lmin = INFINITY;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    lmax = fmaxf(lmax, row[i]);
    lmin = fminf(lmin, row[i]);
  }
  lmax = block_reduce(lmax, true, red);
  lmin = -block_reduce(-lmin, true, red);

  float tau = -INFINITY;
  if (sp.temperature > 0.0f) {
    const float inv_t = 1.0f / sp.temperature;
    if (sp.top_k > 0 && sp.top_k < V) {
      // Largest tau with count(l >= tau) >= k.
      float lo = lmin, hi = lmax;
      for (int it = 0; it < 40 && lo < hi; ++it) {
        const float mid = 0.5f * (lo + hi);
        float cnt = 0.0f;
        for (int64_t i = threadIdx.x; i < V; i += blockDim.x) cnt += row[i] >= mid ? 1.0f : 0.0f;
        cnt = block_reduce(cnt, false, red);
        if (cnt >= float(sp.top_k)) lo = mid; else hi = mid;
        if (hi - lo <= 1e-6f * fmaxf(1.0f, fabsf(lo))) break;
      }
      tau = fmaxf(tau, lo);
    }
    if (sp.min_p > 0.0f) tau = fmaxf(tau, lmax + sp.temperature * logf(sp.min_p));
    if (sp.top_p < 1.0f) {
      // Largest tau whose kept mass (among tokens above the other thresholds) reaches top_p.
      const float base = tau;
      float z = 0.0f;
      for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
        if (row[i] >= base) z += expf((row[i] - lmax) * inv_t);
      z = block_reduce(z, false, red);
      float lo = fmaxf(base, lmin), hi = lmax;
      for (int it = 0; it < 40 && lo < hi; ++it) {
        const float mid = 0.5f * (lo + hi);
        float mass = 0.0f;
        for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
          if (row[i] >= mid) mass += expf((row[i] - lmax) * inv_t);
        mass = block_reduce(mass, false, red);
        if (mass >= sp.top_p * z) lo = mid; else hi = mid;
        if (hi - lo <= 1e-6f * fmaxf(1.0f, fabsf(lo))) break;
      }
      tau = fmaxf(tau, lo);
    }
  }
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    float key = row[i];
    if (sp.temperature > 0.0f) {
      if (key < tau) continue;
      key = key / sp.temperature - logf(-logf(uniform01(sp.seed, sp.step, uint64_t(i))));
    }
    if (key > best) {  // i increases per thread: the first maximum stays
      best = key;
      best_i = int(i);
    }
  }
  block_argmax(best, best_i, red_v, red_i);
  if (threadIdx.x == 0) out[b] = best_i;
}

template <typename T>
__global__ void fill_uniform_kernel(T* x, int64_t n, float scale, uint64_t seed) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = detail::from_float<T>(scale * (2.0f * uniform01(seed, 0, uint64_t(i)) - 1.0f));
}

struct SplitParams {
  int n = 0;
  int64_t begin[9];
  float* out[8];
};

__global__ void split_columns_kernel(const float* y, int64_t T, int64_t N, SplitParams p) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= T * N) return;
  const int64_t t = idx / N, c = idx % N;
  int i = 0;
  while (i + 1 < p.n && c >= p.begin[i + 1]) ++i;
  const int64_t width = p.begin[i + 1] - p.begin[i];
  p.out[i][t * width + (c - p.begin[i])] = y[idx];
}

}  // namespace

void split_columns(const float* y, int64_t T, int64_t N, std::initializer_list<ColumnPart> parts) {
  SplitParams p;
  JETLM_ASSERT(parts.size() >= 1 && parts.size() <= 8, "split_columns: 1..8 parts");
  p.begin[0] = 0;
  for (const ColumnPart& part : parts) {
    p.out[p.n] = part.out;
    p.begin[p.n + 1] = p.begin[p.n] + part.width;
    ++p.n;
  }
  JETLM_ASSERT(p.begin[p.n] == N, "split_columns: the widths must sum to N");
  if (T * N == 0) return;
  split_columns_kernel<<<blocks_for(T * N, kThreads), kThreads, 0, stream()>>>(y, T, N, p);
  JETLM_CUDA_CHECK_LAUNCH();
}

void fill_uniform(float* x, int64_t n, float scale, uint64_t seed) { fill_uniform(x, DType::F32, n, scale, seed); }

void fill_uniform(void* x, DType dtype, int64_t n, float scale, uint64_t seed) {
  JETLM_ASSERT(dtype == DType::F32 || dtype == DType::BF16, "fill_uniform: f32 or bf16");
  if (n == 0) return;
  if (dtype == DType::BF16)
    fill_uniform_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<__nv_bfloat16*>(x), n, scale,
                                                                            seed);
  else
    fill_uniform_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(static_cast<float*>(x), n, scale, seed);
  JETLM_CUDA_CHECK_LAUNCH();
}

void rope_at(float* x, int64_t T, int64_t H, int64_t hd, const int32_t* positions, double theta) {
  JETLM_ASSERT(hd % 2 == 0, "rope needs an even head dim");
  const int64_t n = T * (hd / 2);
  if (n == 0) return;
  rope_at_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(x, T, H, hd, positions, std::log(theta));
  JETLM_CUDA_CHECK_LAUNCH();
}

void qkv_rope_append(const float* fused, int64_t B, int64_t Hq, int64_t Hkv, int64_t hd, const int32_t* positions,
                     double theta, const KvLayout& L, const int32_t* slots, float* q_out) {
  JETLM_ASSERT(hd >= 2 && hd % 2 == 0 && Hq >= 1 && Hkv >= 1 && L.row == Hkv * hd && B <= 2147483647,
               "qkv_rope_append: even head dim, cache rows of Hkv * hd");
  JETLM_ASSERT(L.dtype == DType::F32 || L.dtype == DType::BF16, "qkv_rope_append: cache must be f32 or bf16");
  if (B == 0) return;
  if (L.dtype == DType::BF16)
    qkv_rope_append_kernel<__nv_bfloat16><<<unsigned(B), 256, 0, stream()>>>(fused, Hq, Hkv, hd, positions,
                                                                             std::log(theta), L, slots, q_out);
  else
    qkv_rope_append_kernel<float><<<unsigned(B), 256, 0, stream()>>>(fused, Hq, Hkv, hd, positions, std::log(theta), L,
                                                                     slots, q_out);
  JETLM_CUDA_CHECK_LAUNCH();
}

void kv_append(const KvLayout& L, const float* k, const float* v, int64_t T, const int32_t* slots, int64_t slot0,
               const int32_t* positions, int64_t pos0) {
  if (T == 0) return;
  const int64_t first = (L.ring > 0 && !slots && !positions) ? std::max<int64_t>(0, T - L.ring) : 0;
  JETLM_ASSERT(L.dtype == DType::F32 || L.dtype == DType::BF16, "kv_append: cache must be f32 or bf16");
  if (L.dtype == DType::BF16)
    kv_append_kernel<__nv_bfloat16><<<blocks_for(T * L.row, kThreads), kThreads, 0, stream()>>>(
        L, k, v, T, slots, slot0, positions, pos0, first);
  else
    kv_append_kernel<float><<<blocks_for(T * L.row, kThreads), kThreads, 0, stream()>>>(L, k, v, T, slots, slot0,
                                                                                      positions, pos0, first);
  JETLM_CUDA_CHECK_LAUNCH();
}

void kv_gather(const KvLayout& L, int64_t slot, int64_t pos_lo, int64_t n, float* k_out, float* v_out) {
  if (n == 0) return;
  JETLM_ASSERT(L.dtype == DType::F32 || L.dtype == DType::BF16, "kv_gather: cache must be f32 or bf16");
  if (L.dtype == DType::BF16)
    kv_gather_kernel<__nv_bfloat16><<<blocks_for(n * L.row, kThreads), kThreads, 0, stream()>>>(L, slot, pos_lo, n,
                                                                                               k_out, v_out);
  else
    kv_gather_kernel<float><<<blocks_for(n * L.row, kThreads), kThreads, 0, stream()>>>(L, slot, pos_lo, n, k_out,
                                                                                       v_out);
  JETLM_CUDA_CHECK_LAUNCH();
}

bool decode_attention_on_tensor_cores(DType kv_dtype, int64_t hd) {
  return kv_dtype == DType::BF16 && (hd == 64 || hd == 128);
}

int decode_splits(int64_t B, int64_t Hkv, int64_t context_limit, bool tensor_cores) {
  if (tensor_cores) {
    // Blocks of 4 warp-splits, 2-3 resident per SM (register bound): aim at ~3-4 waves so the last
    // one's idle SMs cost little, but no warp-split shorter than kTcDecodeMinKeys keys. A warp walks
    // its keys 16 at a time, one memory round trip each, so at small batch the split length, not
    // the bandwidth, sets the time: with 256-key splits Jet-Nemotron-2B's batch-1 step at 4K spent
    // 49 us per attention layer in 8 blocks (ncu, H100).
    static const int64_t min_keys = env_int("JETLM_TC_DECODE_MIN_KEYS", kTcDecodeMinKeys, 16, 1 << 20);  // A/B
    const int64_t want = (8 * int64_t(detail::sm_count()) + B * Hkv - 1) / (B * Hkv);
    const int64_t most = std::max<int64_t>(1, context_limit / (kTcDecodeWarps * min_keys));
    return int(std::clamp<int64_t>(want, 1, std::min<int64_t>(most, 256)));
  }
  // Enough blocks for ~2 waves over the SMs, but no split shorter than 256 keys.
  const int64_t want = (2 * int64_t(detail::sm_count()) + B * Hkv - 1) / (B * Hkv);
  const int64_t most = std::max<int64_t>(1, (context_limit + 255) / 256);
  return int(std::clamp<int64_t>(want, 1, std::min<int64_t>(most, 256)));
}

void attention_decode(const float* q, const KvLayout& kv, const int32_t* slots, const int32_t* lengths, int64_t B,
                      int64_t Hq, int64_t Hkv, int64_t hd, int64_t window, int64_t context_limit, int splits,
                      float* o) {
  JETLM_ASSERT(Hkv >= 1 && Hq % Hkv == 0 && Hq / Hkv <= kMaxGroup, "attention_decode: GQA group must be <= 8");
  JETLM_ASSERT(hd >= 1 && hd <= 256, "attention_decode: head dim <= 256");
  JETLM_ASSERT(splits >= 1 && B <= 65535 && Hkv <= 65535);
  JETLM_ASSERT(kv.ring == 0 || (window > 0 && window <= kv.ring), "attention_decode: a ring needs window <= ring");
  JETLM_ASSERT(kv.dtype == DType::F32 || kv.dtype == DType::BF16, "attention_decode: cache must be f32 or bf16");
  if (B == 0) return;
  DecodeParams p;
  p.q = q;
  p.kv = kv;
  p.slots = slots;
  p.lengths = lengths;
  p.o = o;
  p.Hq = Hq;
  p.Hkv = Hkv;
  p.hd = hd;
  p.group = Hq / Hkv;
  p.window = window;
  // Tensor cores: every warp of a block is a split of its own.
  const bool tc = decode_attention_on_tensor_cores(kv.dtype, hd);
  p.splits = tc ? splits * kTcDecodeWarps : splits;
  p.keys_per_split = (context_limit + p.splits - 1) / p.splits;
  if (tc) p.keys_per_split = (p.keys_per_split + 15) / 16 * 16;  // whole 16-key steps per warp
  p.scale_log2 = float(1.4426950408889634 / std::sqrt(double(hd)));
  const size_t rows = size_t(B * Hq * p.splits);
  p.part_acc = static_cast<float*>(detail::workspace(8, rows * size_t(hd) * sizeof(float)));
  p.part_ml = static_cast<float*>(detail::workspace(9, rows * 2 * sizeof(float)));
  if (tc) {
    const dim3 grid{unsigned(splits), unsigned(Hkv), unsigned(B)};
    static const bool three = env_int("JETLM_TC_DECODE_BLOCKS", 3, 2, 3) == 3;
    if (hd == 64) attention_decode_tc_kernel<64, 2><<<grid, 32 * kTcDecodeWarps, 0, stream()>>>(p);
    else if (three) attention_decode_tc_kernel<128, 3><<<grid, 32 * kTcDecodeWarps, 0, stream()>>>(p);
    else attention_decode_tc_kernel<128, 2><<<grid, 32 * kTcDecodeWarps, 0, stream()>>>(p);
    JETLM_CUDA_CHECK_LAUNCH();
  } else if (hd <= 32) {
    launch_decode<1>(p, B);
  } else if (hd <= 64) {
    launch_decode<2>(p, B);
  } else if (hd <= 128) {
    launch_decode<4>(p, B);
  } else {
    launch_decode<8>(p, B);
  }
  JETLM_ASSERT(p.splits <= kMaxMergeSplits);
  // Few splits (large batches): a small block per head is enough; hd <= 256 <= 512 threads.
  const int merge_threads = p.splits <= 16 ? int(std::max<int64_t>(32, (hd + 31) / 32 * 32)) : kMergeThreads;
  attention_merge_kernel<<<dim3(unsigned(Hq), unsigned(B)), merge_threads, 0, stream()>>>(p);
  JETLM_CUDA_CHECK_LAUNCH();
}

void dconv_step(const float* u, const float* kernel, int64_t B, int64_t C, int64_t K, float* conv_pool,
                const int32_t* slots, float* v) {
  JETLM_ASSERT(K >= 1 && K <= kMaxConvTaps, "dconv_step: 1 <= K <= kMaxConvTaps");
  if (B * C == 0) return;
  dconv_step_kernel<<<blocks_for(B * C, kThreads), kThreads, 0, stream()>>>(u, kernel, B, C, K, conv_pool, slots, v);
  JETLM_CUDA_CHECK_LAUNCH();
}

void sample(const float* logits, int64_t B, int64_t V, const DeviceSampling* params, int32_t* out, bool all_greedy) {
  JETLM_ASSERT(V >= 1 && V < (int64_t(1) << 31));
  if (B == 0) return;
  if (all_greedy) {
    // Greedy rows need no thresholds: an argmax over chunks of the row in parallel, then one
    // pass over the chunks' winners. (One block per row took 67 us of Jet-Nemotron-2B's 2.4 ms
    // batch-1 step: one SM streaming the 600 KB row twice; ncu, H100.)
    const int64_t chunks = (V + kArgmaxChunk - 1) / kArgmaxChunk;
    JETLM_ASSERT(chunks <= 65535 && B <= 65535);
    auto* best = static_cast<ArgmaxCandidate*>(detail::workspace(14, sizeof(ArgmaxCandidate) * size_t(B * chunks)));
    argmax_chunks_kernel<<<dim3(unsigned(chunks), unsigned(B)), kArgmaxThreads, 0, stream()>>>(logits, V, best);
    JETLM_CUDA_CHECK_LAUNCH();
    argmax_merge_kernel<<<unsigned(B), 32, 0, stream()>>>(best, chunks, out);
    JETLM_CUDA_CHECK_LAUNCH();
    return;
  }
  sample_kernel<<<unsigned(B), kSampleThreads, 0, stream()>>>(logits, V, params, out);
  JETLM_CUDA_CHECK_LAUNCH();
}

}  // namespace jetlm::cuda
