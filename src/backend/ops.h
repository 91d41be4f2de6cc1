// The op contract: every arithmetic kernel the model composes, with its shapes.
// Activations are float32, row-major, contiguous. Index names: T tokens, S keys, D hidden,
// H heads, Hkv KV heads, hd head dim, dk/dv JetBlock key/value head dims, C channels, K taps.
//
// Two implementations share this contract: `ref::` (plain loops, float64 accumulation, the test
// oracle, in backend/reference) and `cpu::` (threaded and vectorised, in backend/cpu). The model
// calls `cpu::`; tests/op compares the two on random inputs of many shapes.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace jetlm {

#define JETLM_OPS_DECLARE                                                                        \
  /* y[T, W.rows] = x[T, W.cols] W^T (+ bias[W.rows] when not null) */                           \
  void matmul(const float* x, int64_t T, const Matrix& W, const float* bias, float* y);          \
  /* out[T, E.cols] = E[ids[t]] */                                                              \
  void embedding(const int32_t* ids, int64_t T, const Matrix& E, float* out);                   \
  /* out[R, N] = x / sqrt(mean(x^2) + eps) * w[N], per row (out may alias x) */                \
  void rmsnorm(const float* x, int64_t R, int64_t N, const float* w, float eps, float* out);    \
  /* x[T, H, hd] rotated in place, rotate_half convention, positions pos0 .. pos0+T-1 */         \
  void rope(float* x, int64_t T, int64_t H, int64_t hd, int64_t pos0, double theta);             \
  /* o[T, Hq, hd] = softmax(q k^T / sqrt(hd)) v; q[T, Hq, hd], k/v[S, Hkv, hd]; query t sits at  \
     absolute position qpos0+t, key s at kpos0+s; key allowed when kpos <= qpos and, with         \
     window W > 0, kpos > qpos - W. Every query must see at least one key. */                     \
  void attention(const float* q, const float* k, const float* v, int64_t T, int64_t S,          \
                 int64_t Hq, int64_t Hkv, int64_t hd, int64_t qpos0, int64_t kpos0,             \
                 int64_t window, float* o);                                                     \
  /* out[n] = silu(gate[n]) * up[n] (out may alias gate) */                                      \
  void silu_mul(const float* gate, const float* up, int64_t n, float* out);                     \
  /* x[n] = silu(x[n]) */                                                                        \
  void silu(float* x, int64_t n);                                                               \
  /* y[n] += x[n] */                                                                             \
  void add(float* y, const float* x, int64_t n);                                                \
  /* x[R, N] *= rsqrt(sum x^2 + 1e-6) * scale, per row (q/k normalisation of the delta rule) */  \
  void l2norm_rows(float* x, int64_t R, int64_t N, float scale);                                \
  /* Dynamic causal conv: v[t, c] = silu(sum_i kernel[t, c, i] * u[t-K+1+i, c]) where rows      \
     before the chunk come from state[K-1, C] (oldest first, zeros at sequence start); the      \
     state is updated in place to the last K-1 rows of u. u[T, C], kernel[T, C, K], v[T, C]. */  \
  void dconv(const float* u, const float* kernel, int64_t T, int64_t C, int64_t K,              \
             float* state, float* v);                                                           \
  /* Gated delta rule over T tokens continuing state S[H, dk, dv] (updated in place).          \
     q, k [T, H, dk] already L2-normalised (q also scaled); v [T, H, dv]; g (log decay) and     \
     beta [T, H]; o [T, H, dv]. gdn_chunked uses the chunked parallel form (chunk = 64),      \
     gdn_recurrent the token-by-token form; both compute the same function. */                  \
  void gdn_chunked(const float* q, const float* k, const float* v, const float* g,              \
                   const float* beta, int64_t T, int64_t H, int64_t dk, int64_t dv, float* S,   \
                   float* o);                                                                   \
  void gdn_recurrent(const float* q, const float* k, const float* v, const float* g,            \
                     const float* beta, int64_t T, int64_t H, int64_t dk, int64_t dv, float* S, \
                     float* o);                                                                 \
  /* JetBlock gates from raw projections b_raw, a_raw [T, H]: beta = sigmoid(b_raw),           \
     g = -exp(A_log[h]) * softplus(a_raw + dt_bias[h]) (log decay, <= 0) */                      \
  void jet_gates(const float* b_raw, const float* a_raw, const float* A_log,                    \
                 const float* dt_bias, int64_t T, int64_t H, float* beta, float* g);            \
  /* o[T, H, dv] = rmsnorm_per_head(o; w[dv], eps) * silu(gate[T, H*dv]) in place */             \
  void gated_rmsnorm(float* o, const float* gate, int64_t T, int64_t H, int64_t dv,             \
                     const float* w, float eps);

namespace ref {
JETLM_OPS_DECLARE
}  // namespace ref

namespace cpu {
JETLM_OPS_DECLARE
// Number of worker threads the CPU ops use (default: all cores).
void set_num_threads(int n);
int num_threads();
// Sums n floats with all threads at full memory speed: the probe of `jetlm bench`'s read
// bandwidth measurement. prefetch_bytes > 0: each thread also asks for its data that many bytes
// ahead (software prefetch), which on some machines reads faster than the hardware prefetchers
// alone; the probe takes the best of several distances.
double read_all(const float* x, int64_t n, int64_t prefetch_bytes = 0);
// The machine's float32 FMA peak over all threads (GFLOP/s), from a loop of register FMAs at the
// widest active ISA (0 when the CPU has no AVX2+FMA path): the denominator of prefill roofline
// fractions for float32 arithmetic.
double fma_peak_gflops();
// The bf16 dot-product peak over all threads (vdpbf16ps; 0 without AVX512_BF16 active).
double bf16_dot_peak_gflops();

// The instruction sets the kernels dispatch on at run time, lowest first. Avx512 = AVX-512F;
// Avx512Bf16 adds AVX512_BF16, with which bf16-weight prefill GEMMs round the activations to bf16
// (vdpbf16ps, float32 accumulation), as bf16 inference in PyTorch does.
enum class Isa { Portable = 0, Avx2 = 1, Avx512 = 2, Avx512Bf16 = 3 };
const char* isa_name(Isa isa);  // "portable", "avx2", "avx512", "avx512bf16"
// What the CPU supports.
Isa detected_isa();
// What the kernels use: the detected ISA up to Avx512 by default (Avx512Bf16 changes the numerics,
// so only $JETLM_CPU_ISA=avx512bf16 or set_max_isa(Isa::Avx512Bf16) turn it on), capped by
// set_max_isa() or, before any call of it, by $JETLM_CPU_ISA (one of the names above; anything
// else is an error naming the variable). The compiler-dispatched generic loops (target_clones)
// follow the CPU, not this limit.
Isa active_isa();
void set_max_isa(Isa limit);
// The kernel of the q8 decode GEMV at the active ISA: "avx512vnni", "avxvnni" (vpdpbusd, where the
// CPU has it; bit-equal to the AVX2 one), "avx2", or "portable" (no integer GEMV: the dequantized
// float32 product).
const char* q8_gemv_kernel_name();
}  // namespace cpu

}  // namespace jetlm
