// AVX2+FMA+F16C kernels: the packed-panel prefill GEMM, q8 dequantization and the q8 integer GEMV.
// Compiled with -mavx2 -mfma -mf16c; called only when the CPU reports all three (see ops_cpu.cpp).
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>

#include "backend/cpu/gemm_kernels.h"
#include "backend/cpu/gemv_q8_rows.h"
#include "core/error.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace jetlm::cpu::kernels {

namespace {

// A TT x 16 block of Y over k in [k0, k1): accumulators start from Y (or bias / zero at k0 == 0).
template <int TT>
inline void panel_tile(const float* X, int64_t ldx, const float* P, int64_t k0, int64_t k1, float* Y, int64_t ldy,
                       int64_t n_valid, const float* bias) {
  __m256 acc[TT][2];
#pragma GCC unroll 8
  for (int i = 0; i < TT; ++i) {
    if (k0 == 0) {
      if (bias != nullptr && n_valid == kPanel) {
        acc[i][0] = _mm256_loadu_ps(bias);
        acc[i][1] = _mm256_loadu_ps(bias + 8);
      } else {
        alignas(32) float b[kPanel] = {};
        if (bias != nullptr)
          for (int64_t j = 0; j < n_valid; ++j) b[j] = bias[j];
        acc[i][0] = _mm256_load_ps(b);
        acc[i][1] = _mm256_load_ps(b + 8);
      }
    } else if (n_valid == kPanel) {
      acc[i][0] = _mm256_loadu_ps(Y + i * ldy);
      acc[i][1] = _mm256_loadu_ps(Y + i * ldy + 8);
    } else {
      alignas(32) float b[kPanel] = {};
      for (int64_t j = 0; j < n_valid; ++j) b[j] = Y[i * ldy + j];
      acc[i][0] = _mm256_load_ps(b);
      acc[i][1] = _mm256_load_ps(b + 8);
    }
  }
  const float* p = P + k0 * kPanel;
  for (int64_t k = k0; k < k1; ++k, p += kPanel) {
    const __m256 w0 = _mm256_loadu_ps(p), w1 = _mm256_loadu_ps(p + 8);
  #pragma GCC unroll 8
  for (int i = 0; i < TT; ++i) {
      const __m256 x = _mm256_broadcast_ss(X + i * ldx + k);
      acc[i][0] = _mm256_fmadd_ps(x, w0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(x, w1, acc[i][1]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < TT; ++i) {
    if (n_valid == kPanel) {
      _mm256_storeu_ps(Y + i * ldy, acc[i][0]);
      _mm256_storeu_ps(Y + i * ldy + 8, acc[i][1]);
    } else {
      alignas(32) float b[kPanel];
      _mm256_store_ps(b, acc[i][0]);
      _mm256_store_ps(b + 8, acc[i][1]);
      for (int64_t j = 0; j < n_valid; ++j) Y[i * ldy + j] = b[j];
    }
  }
}

}  // namespace

void gemm_packed_avx2(const float* X, int64_t T, int64_t K, const float* P, int64_t N, float* Y, int64_t ldy,
                      const float* bias) {
  constexpr int64_t kBlockK = 256;  // a panel slice of 16 KB stays in L1 across the token blocks
  const int64_t panels = (N + kPanel - 1) / kPanel;
  for (int64_t k0 = 0; k0 < K; k0 += kBlockK) {
    const int64_t k1 = std::min(K, k0 + kBlockK);
    for (int64_t p = 0; p < panels; ++p) {
      const float* panel = P + p * kPanel * K;
      const int64_t n0 = p * kPanel, n_valid = std::min(kPanel, N - n0);
      const float* b = bias ? bias + n0 : nullptr;
      int64_t t = 0;
      for (; t + 6 <= T; t += 6) panel_tile<6>(X + t * K, K, panel, k0, k1, Y + t * ldy + n0, ldy, n_valid, b);
      switch (T - t) {
        case 5: panel_tile<5>(X + t * K, K, panel, k0, k1, Y + t * ldy + n0, ldy, n_valid, b); break;
        case 4: panel_tile<4>(X + t * K, K, panel, k0, k1, Y + t * ldy + n0, ldy, n_valid, b); break;
        case 3: panel_tile<3>(X + t * K, K, panel, k0, k1, Y + t * ldy + n0, ldy, n_valid, b); break;
        case 2: panel_tile<2>(X + t * K, K, panel, k0, k1, Y + t * ldy + n0, ldy, n_valid, b); break;
        case 1: panel_tile<1>(X + t * K, K, panel, k0, k1, Y + t * ldy + n0, ldy, n_valid, b); break;
        default: break;
      }
    }
  }
}

double fma_peak_gflops_avx2() {
  // 12 independent accumulator chains hide the FMA latency on both FMA pipes.
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(float(i) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  constexpr int64_t kIterations = 20'000'000;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t it = 0; it < kIterations; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float sink = 0;
  for (int i = 0; i < 12; ++i) sink += horizontal_sum(acc[i]);
  volatile float keep = sink;
  (void)keep;
  return double(kIterations) * 12 * 16 / seconds / 1e9;
}

void qk_scores_avx2(const float* q, const float* k0, int64_t stride, int64_t n, int64_t hd, float scale, float* out) {
  const int64_t hd8 = hd / 8 * 8;
  int64_t s = 0;
  for (; s + 4 <= n; s += 4) {  // four keys: four independent FMA chains
    const float* k = k0 + s * stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < hd8; i += 8) {
      const __m256 qv = _mm256_loadu_ps(q + i);
      a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + i), a0);
      a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + stride + i), a1);
      a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 2 * stride + i), a2);
      a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 3 * stride + i), a3);
    }
    float d[4] = {horizontal_sum(a0), horizontal_sum(a1), horizontal_sum(a2), horizontal_sum(a3)};
    for (int j = 0; j < 4; ++j) {
      for (int64_t i = hd8; i < hd; ++i) d[j] += q[i] * k[j * stride + i];
      out[s + j] = d[j] * scale;
    }
  }
  for (; s < n; ++s) {
    const float* k = k0 + s * stride;
    __m256 a = _mm256_setzero_ps();
    for (int64_t i = 0; i < hd8; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), a);
    float d = horizontal_sum(a);
    for (int64_t i = hd8; i < hd; ++i) d += q[i] * k[i];
    out[s] = d * scale;
  }
}

void pv_accumulate_avx2(const float* p, const float* v0, int64_t stride, int64_t n, int64_t hd, float* out) {
  int64_t d0 = 0;
  for (; d0 + 32 <= hd; d0 += 32) {  // 32 output columns in four registers across all keys
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float* v = v0 + d0;
    for (int64_t s = 0; s < n; ++s, v += stride) {
      const __m256 ps = _mm256_broadcast_ss(p + s);
      a0 = _mm256_fmadd_ps(ps, _mm256_loadu_ps(v), a0);
      a1 = _mm256_fmadd_ps(ps, _mm256_loadu_ps(v + 8), a1);
      a2 = _mm256_fmadd_ps(ps, _mm256_loadu_ps(v + 16), a2);
      a3 = _mm256_fmadd_ps(ps, _mm256_loadu_ps(v + 24), a3);
    }
    _mm256_storeu_ps(out + d0, a0);
    _mm256_storeu_ps(out + d0 + 8, a1);
    _mm256_storeu_ps(out + d0 + 16, a2);
    _mm256_storeu_ps(out + d0 + 24, a3);
  }
  for (; d0 + 8 <= hd; d0 += 8) {
    __m256 a = _mm256_setzero_ps();
    const float* v = v0 + d0;
    for (int64_t s = 0; s < n; ++s, v += stride) a = _mm256_fmadd_ps(_mm256_broadcast_ss(p + s), _mm256_loadu_ps(v), a);
    _mm256_storeu_ps(out + d0, a);
  }
  for (; d0 < hd; ++d0) {
    float a = 0.0f;
    for (int64_t s = 0; s < n; ++s) a += p[s] * v0[s * stride + d0];
    out[d0] = a;
  }
}

void dequantize_q8_avx2(const int8_t* Wq, const uint16_t* scales, int64_t rows, int64_t K, float* out) {
  const int64_t blocks = q8_blocks(K);
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* w = Wq + r * K;
    float* o = out + r * K;
    for (int64_t b = 0; b < blocks; ++b) {
      const float scale = _cvtsh_ss(scales[r * blocks + b]);
      const int64_t begin = b * kQ8Block, end = std::min(K, begin + kQ8Block);
      int64_t i = begin;
      const __m256 s = _mm256_set1_ps(scale);
      for (; i + 8 <= end; i += 8) {
        const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + i));
        _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), s));
      }
      for (; i < end; ++i) o[i] = float(w[i]) * scale;
    }
  }
}

// Whole blocks in vector form, the same arithmetic: amax by exact max, x * inv by the same float
// multiply, round to nearest even (vcvtps2dq under the default MXCSR mode, as lrint). The scalar
// loop (an lrint call per element) ran on one thread before every q8 GEMV: ~1.3% of Jet-2B q8
// decode samples on the 2-core VM, with the other core idle meanwhile.
void quantize_activation_q8_avx2(const float* x, int64_t K, int8_t* xq, float* scales) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256i dword_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const int64_t full_blocks = K / kQ8Block;
  for (int64_t b = 0; b < full_blocks; ++b) {
    const float* xb = x + b * kQ8Block;
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(xb + 8 * j);
      m = _mm256_max_ps(_mm256_andnot_ps(sign_bit, v[j]), m);  // NaN |x| keeps m, as std::max(amax, |x|)
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    scales[b] = amax / 127.0f;
    const __m256 vinv = _mm256_set1_ps(inv);
    __m256i q[4];
    for (int j = 0; j < 4; ++j) q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], vinv));
    // |q| <= 127: the saturating packs are exact; they interleave 128-bit lanes, undone by the permute.
    const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(xq + b * kQ8Block), _mm256_permutevar8x32_epi32(bytes, dword_order));
  }
  for (int64_t b = full_blocks; b < q8_blocks(K); ++b) {  // a last, shorter block
    const int64_t begin = b * kQ8Block, end = K;
    float amax = 0.0f;
    for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float scale = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    scales[b] = scale;
    for (int64_t i = begin; i < end; ++i) xq[i] = int8_t(std::lrint(x[i] * inv));
  }
}

namespace {

// vpmaddubsw multiplies unsigned by signed bytes: |x| * sign(w, x) keeps that form (x is never
// -128); vpmaddwd then adds the adjacent 16-bit pairs into the block's 8 int32 lanes.
struct MaddubsDot : YmmPairs<MaddubsDot> {
  __attribute__((always_inline)) static __m256i block(const int8_t* w, const int8_t* x) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
    const __m256i products16 = _mm256_maddubs_epi16(_mm256_sign_epi8(xv, xv), _mm256_sign_epi8(wv, xv));
    return _mm256_madd_epi16(products16, _mm256_set1_epi16(1));
  }
};

}  // namespace

void gemv_q8_avx2(const int8_t* Wq, const uint16_t* w_scales, int64_t N, int64_t K, const int8_t* xq,
                  const float* x_scales, const float* bias, float* y) {
  gemv_q8_rows<MaddubsDot>(Wq, w_scales, N, K, xq, x_scales, bias, y);
}

namespace {

// 8 weights of row w from element k as float32 (bf16: the 16 bits are the high half of a float).
inline __m256 load_weights8(const uint16_t* w, int64_t k) {
  const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}
inline __m256 load_weights8(const float* w, int64_t k) { return _mm256_loadu_ps(w + k); }
inline float weight_at(const uint16_t* w, int64_t k) { return bf16_to_f32(w[k]); }
inline float weight_at(const float* w, int64_t k) { return w[k]; }

// One weight row against TT activation rows: the row is loaded (and converted) once per 8
// elements and used by TT FMA chains; S k-streams keep enough chains in flight when TT is small.
template <int TT, class Weight>
inline void row_dots(const Weight* w, int64_t K, const float* X, float* out) {
  constexpr int S = TT <= 4 ? 2 : 1;
  __m256 acc[TT][S];
  for (int t = 0; t < TT; ++t)
    for (int s = 0; s < S; ++s) acc[t][s] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 * S <= K; k += 8 * S) {
#pragma GCC unroll 2
    for (int s = 0; s < S; ++s) {
      const __m256 wv = load_weights8(w, k + 8 * s);
#pragma GCC unroll 8
      for (int t = 0; t < TT; ++t) acc[t][s] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(X + t * K + k + 8 * s), acc[t][s]);
    }
  }
  for (int t = 0; t < TT; ++t) {
    __m256 sum = acc[t][0];
    for (int s = 1; s < S; ++s) sum = _mm256_add_ps(sum, acc[t][s]);
    float total = horizontal_sum(sum);
    for (int64_t i = k; i < K; ++i) total += weight_at(w, i) * X[t * K + i];
    out[t] = total;
  }
}

template <class Weight>
void rows_gemv(const Weight* W, int64_t N, int64_t K, const float* X, int64_t T, const float* bias, float* y,
               int64_t ldy) {
  float out[8];
  for (int64_t r = 0; r < N; ++r) {
    const Weight* w = W + r * K;
    switch (T) {
      case 2: row_dots<2>(w, K, X, out); break;
      case 3: row_dots<3>(w, K, X, out); break;
      case 4: row_dots<4>(w, K, X, out); break;
      case 5: row_dots<5>(w, K, X, out); break;
      case 6: row_dots<6>(w, K, X, out); break;
      case 7: row_dots<7>(w, K, X, out); break;
      case 8: row_dots<8>(w, K, X, out); break;
      default: row_dots<1>(w, K, X, out); break;
    }
    for (int64_t t = 0; t < T; ++t) y[t * ldy + r] = out[t] + (bias ? bias[r] : 0.0f);
  }
}

}  // namespace

void gemv_rows_bf16_avx2(const uint16_t* W, int64_t N, int64_t K, const float* X, int64_t T, const float* bias,
                         float* y, int64_t ldy) {
  rows_gemv(W, N, K, X, T, bias, y, ldy);
}

void gemv_rows_f32_avx2(const float* W, int64_t N, int64_t K, const float* X, int64_t T, const float* bias, float* y,
                        int64_t ldy) {
  rows_gemv(W, N, K, X, T, bias, y, ldy);
}

namespace {

// Eight rows' k .. k+7 as float32 vectors, rows past `rows` zero.
inline __m256 load8_f32(const uint16_t* row, int64_t k) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k))), 16));
}
inline __m256 load8_f32(const float* row, int64_t k) { return _mm256_loadu_ps(row + k); }
inline float load1_f32(const uint16_t* row, int64_t k) { return bf16_to_f32(row[k]); }
inline float load1_f32(const float* row, int64_t k) { return row[k]; }

// r[i] (row i, columns k..k+7) -> r[c] (column k+c, rows 0..7).
inline void transpose8x8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

template <typename WT>
void pack_panel(const WT* W, int64_t rows, int64_t K, float* P) {
  for (int64_t half = 0; half < 2; ++half) {
    const int64_t j0 = half * 8;
    const int64_t live = std::clamp<int64_t>(rows - j0, 0, 8);
    if (live == 0) {
      for (int64_t k = 0; k < K; ++k) _mm256_storeu_ps(P + k * kPanel + j0, _mm256_setzero_ps());
      continue;
    }
    const WT* row[8];
    for (int64_t i = 0; i < 8; ++i) row[i] = W + (j0 + std::min(i, live - 1)) * K;  // dead rows: zeroed below
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = i < live ? load8_f32(row[i], k) : _mm256_setzero_ps();
      transpose8x8(r);
      for (int c = 0; c < 8; ++c) _mm256_storeu_ps(P + (k + c) * kPanel + j0, r[c]);
    }
    for (; k < K; ++k)
      for (int64_t i = 0; i < 8; ++i) P[k * kPanel + j0 + i] = i < live ? load1_f32(row[i], k) : 0.0f;
  }
}

}  // namespace

void pack_panel_bf16_avx2(const uint16_t* W, int64_t rows, int64_t K, float* P) { pack_panel(W, rows, K, P); }
void pack_panel_f32_avx2(const float* W, int64_t rows, int64_t K, float* P) { pack_panel(W, rows, K, P); }

void unpack_order_bf16(const float* x, int64_t n, int64_t whole, float* xp) {
  JETLM_ASSERT(whole % 16 == 0 && whole <= n);
  for (int64_t i = 0; i < whole; i += 16)
    for (int j = 0; j < 4; ++j) {
      xp[i + j] = x[i + j];
      xp[i + 4 + j] = x[i + 8 + j];
      xp[i + 8 + j] = x[i + 4 + j];
      xp[i + 12 + j] = x[i + 12 + j];
    }
  for (int64_t i = whole; i < n; ++i) xp[i] = x[i];
}

namespace {

// bf16 x 16 -> float32 in unpack order: lo = columns [0-3, 8-11], hi = [4-7, 12-15].
inline __m256 bf16_unpack_lo(__m256i bits) {
  return _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), bits));
}
inline __m256 bf16_unpack_hi(__m256i bits) {
  return _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), bits));
}
// Accumulators in unpack order (lo, hi of one 16-column step) -> in column order (columns 0-7, 8-15):
// each lane keeps its own sum, only the lanes move.
inline void column_order(__m256 lo, __m256 hi, __m256& first8, __m256& next8) {
  first8 = _mm256_permute2f128_ps(lo, hi, 0x20);
  next8 = _mm256_permute2f128_ps(lo, hi, 0x31);
}

}  // namespace

// 32 lanes in four independent 8-wide accumulators (lane j sums elements i + j, i a multiple of
// 32), then the tail and the pairwise lane reduction in the order ops_cpu.cpp's dot_bf16 adds them,
// so the result has the same bits as its AVX2 build. Written out because the compiler's version of
// that loop re-loads each 32-byte block for its upper half and chains its accumulators pairwise: on
// the 2-core EPYC VM 1-6% less GEMV bandwidth from memory in its faster regime (docs/perf.md). The
// loop keeps its sums in unpack order and moves them to column order once at the end.
float dot_bf16_avx2(const uint16_t* w, const float* xp, int64_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm_prefetch(reinterpret_cast<const char*>(w + i) + kStreamPrefetchBytes, _MM_HINT_T1);
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i));
    const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i + 16));
    acc[0] = _mm256_fmadd_ps(bf16_unpack_lo(lo), _mm256_loadu_ps(xp + i), acc[0]);
    acc[1] = _mm256_fmadd_ps(bf16_unpack_hi(lo), _mm256_loadu_ps(xp + i + 8), acc[1]);
    acc[2] = _mm256_fmadd_ps(bf16_unpack_lo(hi), _mm256_loadu_ps(xp + i + 16), acc[2]);
    acc[3] = _mm256_fmadd_ps(bf16_unpack_hi(hi), _mm256_loadu_ps(xp + i + 24), acc[3]);
  }
  __m256 c[4];
  column_order(acc[0], acc[1], c[0], c[1]);
  column_order(acc[2], acc[3], c[2], c[3]);
  float sum = 0.0f;
  for (; i < n; ++i) sum = std::fma(bf16_to_f32(w[i]), xp[i], sum);
  // Lanes j += j + 16, then j += j + 8 (whole registers), then + 4, + 2, + 1 within one.
  const __m256 r8 = _mm256_add_ps(_mm256_add_ps(c[0], c[2]), _mm256_add_ps(c[1], c[3]));
  __m128 r4 = _mm_add_ps(_mm256_castps256_ps128(r8), _mm256_extractf128_ps(r8, 1));
  r4 = _mm_add_ps(r4, _mm_movehl_ps(r4, r4));
  r4 = _mm_add_ss(r4, _mm_movehdup_ps(r4));
  return sum + _mm_cvtss_f32(r4);
}

// Eight rows against one x, for long rows: x is loaded once per 16 columns for all eight. With one
// row at a time, a 8960-wide x (35 KB of float32) no longer fits the 32 KB L1 and every row streams
// it again from L2: the 2-core EPYC VM's GEMV of the MLP down projection (1536 x 8960) read its
// weights at 20-22 GB/s one row at a time, 40-45 GB/s eight at a time (a plain read: 49-57).
// With rows < 8 the missing rows repeat the last one (loaded again, never stored). Two 8-wide
// accumulators per row (16 ymm) in unpack order, then the tail.
void dot_rows8_bf16_avx2(const uint16_t* w, int64_t K, int64_t rows, const float* xp, float* out) {
  constexpr int R = 8;
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  const uint16_t* row[R];
  for (int r = 0; r < R; ++r) row[r] = w + std::min<int64_t>(r, rows - 1) * K;  // clamped: loaded, not stored
  int64_t i = 0;
  for (; i + 16 <= K; i += 16) {
    if (i % 32 == 0)  // one request per row and 64-byte line (kStreamPrefetchBytes)
      for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(row[r] + i) + kStreamPrefetchBytes, _MM_HINT_T1);
    const __m256 x0 = _mm256_loadu_ps(xp + i), x1 = _mm256_loadu_ps(xp + i + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row[r] + i));
      acc[r][0] = _mm256_fmadd_ps(bf16_unpack_lo(bits), x0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(bf16_unpack_hi(bits), x1, acc[r][1]);
    }
  }
  for (int r = 0; r < R && r < rows; ++r) {
    __m256 first8, next8;
    column_order(acc[r][0], acc[r][1], first8, next8);
    float sum = horizontal_sum(_mm256_add_ps(first8, next8));
    for (int64_t k = i; k < K; ++k) sum = std::fma(bf16_to_f32(row[r][k]), xp[k], sum);
    out[r] = sum;
  }
}

}  // namespace jetlm::cpu::kernels
