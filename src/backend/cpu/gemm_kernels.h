// ISA-specific GEMM microkernels, each in its own translation unit compiled for its ISA.
#pragma once

#include <cstdint>

namespace jetlm::cpu::kernels {

// How far ahead of its loads a decode GEMV asks for its weights (software prefetch into L2, one
// request per 64-byte line). One thread reading one row after another leaves the hardware
// prefetchers a single stream: on the 2-vCPU Xeon VM (2026-12-07, ninth session) the one-row bf16
// GEMVs read 21-23 GB/s against 27-29 for a plain read of the same bytes. Requests into L1
// (prefetcht0) 2-3 KB ahead brought them to the plain read; into L2 (prefetcht1, which does not
// hold one of L1's few fill buffers per line) 5 KB ahead, ~4% more again (5-12 KB: the same).
// Prefetching past a matrix's end is harmless.
inline constexpr int64_t kStreamPrefetchBytes = 5120;

// Packed-panel GEMM (outer-product form): Y[t, n] = X[t, :] . W[n, :] (+ bias[n]) for n < N, where
// the weights come packed as panels of 16 rows, K-major: P[p][k][16] = W[16p + j][k] (rows past N
// are zeros). Each step loads 16 weights, broadcasts 6 activations and does 12 FMAs into 12
// accumulators, the register budget of AVX2; K is blocked so a panel slice stays in L1.
inline constexpr int64_t kPanel = 16;
void gemm_packed_avx2(const float* X, int64_t T, int64_t K, const float* P, int64_t N, float* Y, int64_t ldy,
                      const float* bias);
// One packed panel for gemm_packed_avx2: P[k][16] = W[j][k] as float32 for rows j < rows (<= 16)
// of W [rows, K] (bf16 or f32, row stride K), zeros for j >= rows. Eight rows by eight columns at a
// time through registers (an 8 x 8 transpose) instead of one strided store per weight.
void pack_panel_bf16_avx2(const uint16_t* W, int64_t rows, int64_t K, float* P);
void pack_panel_f32_avx2(const float* W, int64_t rows, int64_t K, float* P);
// Peak FMA throughput of one thread (GFLOP/s) from a loop of independent register FMAs.
double fma_peak_gflops_avx2();

// Attention decode pieces. out[s] = scale * q . k_s for n keys k_s = k0 + s * stride (hd floats);
// out[d] = sum_s p[s] * v_s[d] for n values v_s = v0 + s * stride.
void qk_scores_avx2(const float* q, const float* k0, int64_t stride, int64_t n, int64_t hd, float scale, float* out);
void pv_accumulate_avx2(const float* p, const float* v0, int64_t stride, int64_t n, int64_t hd, float* out);

// q8 decode: y[r] = sum over blocks of (wq . xq) * w_scale * x_scale for r in [0, N), with the
// activation quantized to int8 per kKBlock block (xq[K], x_scales[q8_blocks(K)]). Integer dot
// products (vpmaddubsw) do 32 weights per few instructions, so the loop is bound by memory.
void gemv_q8_avx2(const int8_t* Wq, const uint16_t* w_scales, int64_t N, int64_t K, const int8_t* xq,
                  const float* x_scales, const float* bias, float* y);
// The same with VNNI's vpdpbusd (gemm_avxvnni.cpp, gemm_avx512vnni.cpp): bit-equal to gemv_q8_avx2.
void gemv_q8_avxvnni(const int8_t* Wq, const uint16_t* w_scales, int64_t N, int64_t K, const int8_t* xq,
                     const float* x_scales, const float* bias, float* y);
void gemv_q8_avx512vnni(const int8_t* Wq, const uint16_t* w_scales, int64_t N, int64_t K, const int8_t* xq,
                        const float* x_scales, const float* bias, float* y);
// out[rows, K] = q8 rows dequantized to float32 (for the prefill GEMM's weight tiles).
void dequantize_q8_avx2(const int8_t* Wq, const uint16_t* scales, int64_t rows, int64_t K, float* out);
// Quantizes x[K] for gemv_q8_avx2: xq[K] and float scales[q8_blocks(K)].
void quantize_activation_q8_avx2(const float* x, int64_t K, int8_t* xq, float* scales);

// The decode dot products below widen bf16 by interleaving with zero inside each 128-bit lane
// (one shuffle per 8 weights instead of an extract, a widening move and a shift), which puts the
// weights of columns [0-3, 8-11] and [4-7, 12-15] of every 16 side by side. Their x comes
// permuted the same way, once per GEMV: xp = unpack_order_bf16(x) for the first `whole` columns
// (a multiple of 16), the rest copied as is.
void unpack_order_bf16(const float* x, int64_t n, int64_t whole, float* xp);
// sum_i bf16 w[i] * x[i] given xp = x in unpack order over whole = n - n % 32 columns;
// bit-equal to ops_cpu.cpp's dot_bf16 built for AVX2+FMA (the same lanes and order).
float dot_bf16_avx2(const uint16_t* w, const float* xp, int64_t n);
// out[r] = W[r] . x for r < rows (1..8) of W [rows, K] (bf16), xp = x in unpack order over
// whole = K - K % 16 columns; for rows too long for x to stay in L1.
void dot_rows8_bf16_avx2(const uint16_t* w, int64_t K, int64_t rows, const float* xp, float* out);
// Small-batch decode: Y[t, r] (row stride ldy) = X[t, :] . W[r, :] (+ bias[r]) for r < N, t < T,
// 2 <= T <= 8, weights bf16 or f32 rows of K. Each weight row is read and converted once for all T
// activation rows (T FMA chains), so a decode step of T sequences reads the weights once.
void gemv_rows_bf16_avx2(const uint16_t* W, int64_t N, int64_t K, const float* X, int64_t T, const float* bias,
                         float* y, int64_t ldy);
void gemv_rows_f32_avx2(const float* W, int64_t N, int64_t K, const float* X, int64_t T, const float* bias, float* y,
                        int64_t ldy);

// AVX-512F versions of the same contracts (gemm_avx512.cpp): the same panels, two at a time.
void gemm_packed_avx512(const float* X, int64_t T, int64_t K, const float* P, int64_t N, float* Y, int64_t ldy,
                        const float* bias);
double fma_peak_gflops_avx512();
void qk_scores_avx512(const float* q, const float* k0, int64_t stride, int64_t n, int64_t hd, float scale, float* out);
void pv_accumulate_avx512(const float* p, const float* v0, int64_t stride, int64_t n, int64_t hd, float* out);

// AVX512-BF16 GEMM of bf16 weights (gemm_avx512bf16.cpp): Y[t, n] = sum_k x[t, k] w[n, k] with both
// operands bf16 and float32 accumulation. K2 = ceil(K / 2) pairs; X2[t][q] = bf16 pair
// (x[t, 2q], x[t, 2q+1]) in one 32-bit word (low half first; a missing odd element is 0);
// P[p][q][c] = pair (w[16p + c, 2q], w[16p + c, 2q + 1]) (rows past N and the odd pad are 0).
void gemm_bf16_pairs_avx512(const uint32_t* X2, int64_t T, int64_t K2, const uint32_t* P, int64_t N, float* Y,
                            int64_t ldy, const float* bias);
// Peak of vdpbf16ps on one thread, GFLOP/s (a multiply-add counts 2).
double bf16_dot_peak_gflops_avx512();

}  // namespace jetlm::cpu::kernels
