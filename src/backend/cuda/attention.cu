// attention: flash-style causal softmax attention with GQA, optional sliding window and any
// qpos0/kpos0 offset, float32 throughout (v1: CUDA cores, no tensor cores).
//
// Rows: for KV head kh, the T*group (query token, query head) pairs that share its keys, row
// r -> token r / group, head kh*group + r % group; a block takes 16 consecutive rows (4 warps x 4
// rows) and streams 32-key tiles of K and V through shared memory. In a warp, lane j scores key j
// of the tile for each of the warp's rows, the running max/sum update is warp-uniform, and lane
// owns output dims lane + 32*i. Scores are kept in the log2 domain (q pre-scaled by
// log2(e)/sqrt(hd)) so each probability is one exp2.
//
// Split-KV (decode and other short-T calls): when the row blocks alone cannot fill the GPU, the
// key range is cut into `splits` pieces written as unnormalised partials (acc, max, sum) and
// merged by a second kernel.
#include <algorithm>
#include <cmath>

#include "backend/cuda/cuda_common.h"
#include "core/error.h"

namespace jetlm::cuda {

using detail::blocks_for;

namespace {

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 4;
constexpr int kRows = kWarps * kRowsPerWarp;  // rows per block
constexpr int kKeys = 32;                     // keys per tile

struct AttnParams {
  const float* q;
  const float* k;
  const float* v;
  float* o;
  float* part_acc;  // [splits, Hkv, R, hd] (splits > 1)
  float* part_ml;   // [splits, Hkv, R, 2]
  int64_t T, S, Hq, Hkv, hd, qpos0, kpos0, window, group, R;
  int splits;
  float scale_log2;
};

__device__ __forceinline__ int64_t key_begin(const AttnParams& p, int64_t t) {
  const int64_t qpos = p.qpos0 + t;
  return p.window > 0 ? max(int64_t(0), qpos - p.window + 1 - p.kpos0) : int64_t(0);
}
__device__ __forceinline__ int64_t key_end(const AttnParams& p, int64_t t) {
  return min(p.S, p.qpos0 + t - p.kpos0 + 1);
}

template <int DPL>  // dims per lane: the head dim padded to 32*DPL
__global__ void __launch_bounds__(32 * kWarps) attention_kernel(AttnParams p) {
  constexpr int HDP = 32 * DPL;
  extern __shared__ float smem[];
  constexpr int kTile = kKeys * (HDP + 1) + kKeys * HDP;  // one stage: K [kKeys][HDP+1], V [kKeys][HDP]
  float* q_s = smem;                                      // [kRows][HDP]
  float* stage_s = q_s + kRows * HDP;                     // 2 stages (double buffer)

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t kh = blockIdx.y;
  const int64_t r0 = int64_t(blockIdx.x) * kRows;
  const int split = blockIdx.z;

  // The block's key range: begin/end are non-decreasing in t, so the first and last rows bound it.
  const int64_t t_first = r0 / p.group, t_last = min(p.T - 1, (r0 + kRows - 1) / p.group);
  const int64_t lo = key_begin(p, t_first), hi = max(lo, key_end(p, t_last));
  const int64_t ntiles = (hi - lo + kKeys - 1) / kKeys;
  const int64_t tiles_per_split = (ntiles + p.splits - 1) / p.splits;
  const int64_t s_lo = lo + split * tiles_per_split * kKeys;
  const int64_t s_hi = min(hi, s_lo + tiles_per_split * kKeys);

  // Query rows, pre-scaled, zero-padded.
  for (int i = threadIdx.x; i < kRows * HDP; i += blockDim.x) {
    const int row = i / HDP, d = i % HDP;
    const int64_t r = r0 + row;
    float val = 0.0f;
    if (r < p.R && d < p.hd) {
      const int64_t t = r / p.group, h = kh * p.group + r % p.group;
      val = p.q[(t * p.Hq + h) * p.hd + d] * p.scale_log2;
    }
    q_s[i] = val;
  }

  int64_t row_begin[kRowsPerWarp], row_end[kRowsPerWarp];
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][DPL];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int64_t r = r0 + warp * kRowsPerWarp + rr;
    const int64_t t = r / p.group;
    row_begin[rr] = r < p.R ? max(key_begin(p, t), s_lo) : 0;
    row_end[rr] = r < p.R ? min(key_end(p, t), s_hi) : 0;
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
#pragma unroll
    for (int dd = 0; dd < DPL; ++dd) acc[rr][dd] = 0.0f;
  }

  // Tile loads are asynchronous copies, the next tile's in flight while this one is scored.
  auto load_tile = [&](int64_t s0, int stage) {
    float* k_s = stage_s + stage * kTile;
    float* v_s = k_s + kKeys * (HDP + 1);
    for (int i = threadIdx.x; i < kKeys * HDP; i += blockDim.x) {
      const int j = i / HDP, d = i % HDP;
      const int64_t s = s0 + j;
      const bool ok = s < s_hi && d < p.hd;
      const int64_t off = ok ? (s * p.Hkv + kh) * p.hd + d : 0;
      detail::cp_async4(k_s + j * (HDP + 1) + d, p.k + off, ok);
      detail::cp_async4(v_s + j * HDP + d, p.v + off, ok);
    }
    detail::cp_async_commit();
  };
  if (s_lo < s_hi) load_tile(s_lo, 0);
  int stage = 0;
  for (int64_t s0 = s_lo; s0 < s_hi; s0 += kKeys, stage ^= 1) {
    if (s0 + kKeys < s_hi) {
      load_tile(s0 + kKeys, stage ^ 1);  // that stage was released by the barrier ending the last tile
      detail::cp_async_wait<1>();
    } else {
      detail::cp_async_wait<0>();
    }
    __syncthreads();  // this tile (and q_s) visible to all
    const float* k_s = stage_s + stage * kTile;
    const float* v_s = k_s + kKeys * (HDP + 1);

    float score[kRowsPerWarp];
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) score[rr] = 0.0f;
    const float* krow = k_s + lane * (HDP + 1);
    const float* qw = q_s + warp * kRowsPerWarp * HDP;
#pragma unroll 8
    for (int d = 0; d < HDP; d += 4) {
      const float k0 = krow[d], k1 = krow[d + 1], k2 = krow[d + 2], k3 = krow[d + 3];
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        const float4 qq = *reinterpret_cast<const float4*>(qw + rr * HDP + d);
        score[rr] += qq.x * k0 + qq.y * k1 + qq.z * k2 + qq.w * k3;
      }
    }
    const int64_t s = s0 + lane;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      if (s0 >= row_end[rr] || s0 + kKeys <= row_begin[rr]) continue;  // warp-uniform
      const float sc = (s >= row_begin[rr] && s < row_end[rr]) ? score[rr] : -INFINITY;
      float tile_max = sc;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, o));
      const float m_new = fmaxf(m[rr], tile_max);  // finite: the tile holds an allowed key
      const float corr = exp2f(m[rr] - m_new);
      const float pr = exp2f(sc - m_new);
      l[rr] = l[rr] * corr + pr;
      m[rr] = m_new;
#pragma unroll
      for (int dd = 0; dd < DPL; ++dd) acc[rr][dd] *= corr;
#pragma unroll 8
      for (int j = 0; j < kKeys; ++j) {
        const float pj = __shfl_sync(0xffffffffu, pr, j);
#pragma unroll
        for (int dd = 0; dd < DPL; ++dd) acc[rr][dd] += pj * v_s[j * HDP + lane + 32 * dd];
      }
    }
    __syncthreads();  // this stage consumed: the next iteration's prefetch may overwrite it
  }

#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int64_t r = r0 + warp * kRowsPerWarp + rr;
    if (r >= p.R) continue;
    float lsum = l[rr];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) lsum += __shfl_xor_sync(0xffffffffu, lsum, o);
    if (p.splits == 1) {
      const int64_t t = r / p.group, h = kh * p.group + r % p.group;
      float* orow = p.o + (t * p.Hq + h) * p.hd;
      const float inv = 1.0f / lsum;
#pragma unroll
      for (int dd = 0; dd < DPL; ++dd) {
        const int d = lane + 32 * dd;
        if (d < p.hd) orow[d] = acc[rr][dd] * inv;
      }
    } else {
      const int64_t idx = (int64_t(split) * p.Hkv + kh) * p.R + r;
      float* prow = p.part_acc + idx * p.hd;
#pragma unroll
      for (int dd = 0; dd < DPL; ++dd) {
        const int d = lane + 32 * dd;
        if (d < p.hd) prow[d] = acc[rr][dd];
      }
      if (lane == 0) {
        p.part_ml[idx * 2] = m[rr];
        p.part_ml[idx * 2 + 1] = lsum;
      }
    }
  }
}

// One block per (row, kv head): o = sum_z acc_z 2^(m_z - M) / sum_z l_z 2^(m_z - M).
__global__ void attention_combine_kernel(AttnParams p) {
  const int64_t r = blockIdx.x, kh = blockIdx.y;
  float M = -INFINITY;
  for (int z = 0; z < p.splits; ++z) M = fmaxf(M, p.part_ml[((int64_t(z) * p.Hkv + kh) * p.R + r) * 2]);
  float L = 0.0f;
  for (int z = 0; z < p.splits; ++z) {
    const int64_t idx = (int64_t(z) * p.Hkv + kh) * p.R + r;
    const float mz = p.part_ml[idx * 2];
    if (mz != -INFINITY) L += p.part_ml[idx * 2 + 1] * exp2f(mz - M);
  }
  const int64_t t = r / p.group, h = kh * p.group + r % p.group;
  float* orow = p.o + (t * p.Hq + h) * p.hd;
  for (int64_t d = threadIdx.x; d < p.hd; d += blockDim.x) {
    float sum = 0.0f;
    for (int z = 0; z < p.splits; ++z) {
      const int64_t idx = (int64_t(z) * p.Hkv + kh) * p.R + r;
      const float mz = p.part_ml[idx * 2];
      if (mz != -INFINITY) sum += p.part_acc[idx * p.hd + d] * exp2f(mz - M);
    }
    orow[d] = sum / L;
  }
}

template <int DPL>
void launch(const AttnParams& p, dim3 grid) {
  constexpr int HDP = 32 * DPL;
  const size_t smem = sizeof(float) * (kRows * HDP + 2 * (kKeys * (HDP + 1) + kKeys * HDP));
  detail::allow_dynamic_smem(reinterpret_cast<const void*>(attention_kernel<DPL>), smem);
  attention_kernel<DPL><<<grid, 32 * kWarps, smem, stream()>>>(p);
  JETLM_CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention(const float* q, const float* k, const float* v, int64_t T, int64_t S, int64_t Hq, int64_t Hkv,
               int64_t hd, int64_t qpos0, int64_t kpos0, int64_t window, float* o) {
  JETLM_ASSERT(Hkv > 0 && Hq % Hkv == 0, "attention: Hq must be a multiple of Hkv");
  JETLM_ASSERT(hd >= 1 && hd <= 256, "attention: head dim up to 256");
  if (T == 0) return;
  // Every query must see a key (contract): the first and last queries bound the others.
  JETLM_ASSERT(std::min(S, qpos0 - kpos0 + 1) > (window > 0 ? std::max<int64_t>(0, qpos0 - window + 1 - kpos0) : 0),
               "attention: a query sees no key");
  JETLM_ASSERT(std::min(S, qpos0 + T - 1 - kpos0 + 1) >
                   (window > 0 ? std::max<int64_t>(0, qpos0 + T - 1 - window + 1 - kpos0) : 0),
               "attention: a query sees no key");
  AttnParams p{};
  p.q = q, p.k = k, p.v = v, p.o = o;
  p.T = T, p.S = S, p.Hq = Hq, p.Hkv = Hkv, p.hd = hd, p.qpos0 = qpos0, p.kpos0 = kpos0, p.window = window;
  p.group = Hq / Hkv;
  p.R = T * p.group;
  p.scale_log2 = float(1.4426950408889634 / std::sqrt(double(hd)));
  const int64_t row_blocks = (p.R + kRows - 1) / kRows;
  JETLM_ASSERT(row_blocks < (int64_t(1) << 31) && Hkv <= 65535);
  // Keys one block may visit: all of S (no window) or about window + rows.
  const int64_t span = window > 0 ? std::min(S, window + kRows) : S;
  const int64_t tiles = (span + kKeys - 1) / kKeys;
  const int64_t blocks = row_blocks * Hkv;
  const int64_t target = 2 * int64_t(detail::sm_count());
  int64_t splits = 1;
  if (blocks < target && tiles >= 8) splits = std::min<int64_t>({(target + blocks - 1) / blocks, tiles / 4, 64});
  p.splits = int(std::max<int64_t>(1, splits));
  if (p.splits > 1) {
    p.part_acc = static_cast<float*>(detail::workspace(2, sizeof(float) * size_t(p.splits * Hkv * p.R * hd)));
    p.part_ml = static_cast<float*>(detail::workspace(3, sizeof(float) * size_t(p.splits * Hkv * p.R * 2)));
  }
  const dim3 grid(unsigned(row_blocks), unsigned(Hkv), unsigned(p.splits));
  const int64_t dpl = (hd + 31) / 32;
  switch (dpl) {
    case 1: launch<1>(p, grid); break;
    case 2: launch<2>(p, grid); break;
    case 3: launch<3>(p, grid); break;
    case 4: launch<4>(p, grid); break;
    case 5: case 6: launch<6>(p, grid); break;
    default: launch<8>(p, grid); break;
  }
  if (p.splits > 1) {
    attention_combine_kernel<<<dim3(unsigned(p.R), unsigned(Hkv)), 128, 0, stream()>>>(p);
    JETLM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace jetlm::cuda
