// Prefill attention on tensor cores: flash-attention (online softmax over 64-key tiles) with bf16
// Q, K, P, V operands of WMMA m16n16k16 and float32 accumulation, softmax and output.
//
// Block = 4 warps and 64 rows of one KV head (row r: token r / group, head kh*group + r % group,
// so each K/V tile is loaded once for the whole GQA group); warp w owns rows 16w..16w+15. Per tile:
// S = Q K^T (WMMA, to shared float32), the row max/sum update in float32 (two lanes per row),
// O rescaled in shared memory, O += P V (WMMA accumulating through shared memory, which keeps the
// per-row rescale independent of the fragment layout). K/V rows are read through a KvLayout, so
// prefill reads the paged pool in place instead of gathering it.
#include <cuda_bf16.h>
#include <mma.h>

#include <cmath>

#include "backend/cuda/cuda_common.h"
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
  if (hd <= 32) launch_tc<32>(p);
  else if (hd <= 64) launch_tc<64>(p);
  else launch_tc<128>(p);
}

}  // namespace jetlm::cuda
