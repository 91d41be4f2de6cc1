// Internals shared by the CUDA backend's translation units: error checks, the cuBLAS handle, a
// growing scratch workspace. Not part of the public API (ops_cuda.h).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#include <cstddef>
#include <type_traits>

#include "backend/cuda/ops_cuda.h"

namespace jetlm::cuda::detail {

// Throws jetlm::Error("[file:line] CUDA error cudaErrorX: <string> in `expr`").
[[noreturn]] void cuda_failed(cudaError_t err, const char* expr, const char* file, int line);
[[noreturn]] void cublas_failed(cublasStatus_t st, const char* expr, const char* file, int line);

cublasHandle_t cublas();  // bound to stream() on every call
// Scratch device memory that stays valid until the next call with the same slot (grows, never
// shrinks). Slots keep one op's several scratch arrays apart.
void* workspace(int slot, size_t bytes);
// Bumped whenever a workspace moves: CUDA graphs captured before then point at freed memory.
uint64_t workspace_generation();
int sm_count();
int compute_major();  // 9 on Hopper
size_t max_shared_per_block();  // opt-in limit (227 KB on Hopper)
// Raises `kernel`'s dynamic shared-memory limit to at least `bytes` (never lowers it). One record
// per kernel for the whole process: two call sites that launch the same kernel with different
// sizes must not each keep their own idea of the attribute (one would lower it under the other).
void allow_dynamic_smem(const void* kernel, size_t bytes);

// Programmatic dependent launch for the decode-step kernels: sm_90+, unless JETLM_PDL=0 (A/B runs).
bool use_pdl();

inline unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

#ifdef __CUDACC__
// Asynchronous 4-byte global -> shared copy (sm_80+ cp.async); with pred false the shared word
// is zero-filled and nothing is read (src must still be a valid address). Many copies stay in
// flight at once: a tile load costs one memory latency instead of one per loop iteration.
__device__ __forceinline__ void cp_async4(float* smem, const float* gmem, bool pred) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(gmem), "r"(pred ? 4 : 0));
}
// 16-byte variant: both addresses 16-byte aligned (cp.async.cg: cached in L2 only).
__device__ __forceinline__ void cp_async16(float* smem, const float* gmem) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most N committed groups of this thread are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
// 16-byte copy that writes zeros instead when pred is false (nothing is read then).
__device__ __forceinline__ void cp_async16_zfill(void* smem, const void* gmem, bool pred) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(pred ? 16 : 0));
}

// A float32, bf16 or f16 element as float, and a float rounded to one of those types.
template <typename T> __device__ __forceinline__ float to_float(T v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else if constexpr (std::is_same_v<T, __half>) return __half2float(v);
  else return __bfloat162float(v);
}
template <typename T> __device__ __forceinline__ T from_float(float v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
  else return __float2bfloat16_rn(v);
}

// Tensor-core fragments of mma.sync m16n8k16 (bf16 operands, float32 accumulators). With g =
// lane / 4 and c = lane % 4: A (16 x 16, row-major) a0 = (g, 2c..2c+1), a1 = (g+8, 2c..), a2 =
// (g, 2c+8..), a3 = (g+8, 2c+8..); B (16 x 8) b0 = (k 2c..2c+1, n g), b1 = (k 2c+8.., n g);
// C/D (16 x 8) d0,d1 = (g, 2c..2c+1), d2,d3 = (g+8, 2c..2c+1). The lower half of a register holds
// the element with the smaller index.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8 x 8 bf16 matrices from shared memory: lanes 8i..8i+7 give the row addresses of matrix i
// (16 bytes each), register i receives matrix i as thread (lane / 4) of a row holding columns
// 2(lane % 4), +1. TRANS: the matrix is transposed on the way (the thread gets rows 2(lane % 4),
// +1 of column lane / 4), which turns a row-major [k][n] tile into B fragments.
template <bool TRANS = false>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  if constexpr (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
// Programmatic dependent launch (sm_90): once every block of this grid has called it, the next
// kernel in the stream, if launched with the PDL attribute (the GEMVs), may start and issue its
// weight loads while this grid finishes; it still waits (griddepcontrol.wait) for this grid's
// completion before it reads any result. Called at the start of the kernels a decode-step GEMV
// follows. Without a PDL dependent (or before sm_90) it does nothing.
__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
// The other side of PDL: a kernel launched with the attribute may start while the kernel before
// it drains. It may load what that kernel does not write (weights, a layer's own state), then
// waits here for the producer's completion before it reads any of its results. Without the
// attribute (or before sm_90) the wait returns at once.
__device__ __forceinline__ void wait_for_producer() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
#endif

}  // namespace jetlm::cuda::detail

#define JETLM_CUDA_CHECK(expr)                                                                  \
  do {                                                                                          \
    const cudaError_t jetlm_cuda_err_ = (expr);                                                 \
    if (jetlm_cuda_err_ != cudaSuccess)                                                         \
      ::jetlm::cuda::detail::cuda_failed(jetlm_cuda_err_, #expr, __FILE__, __LINE__);           \
  } while (0)

// After every kernel launch: launch-configuration errors surface here, with the launch's line.
#define JETLM_CUDA_CHECK_LAUNCH() JETLM_CUDA_CHECK(cudaGetLastError())

#define JETLM_CUBLAS_CHECK(expr)                                                                \
  do {                                                                                          \
    const cublasStatus_t jetlm_cublas_st_ = (expr);                                             \
    if (jetlm_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                              \
      ::jetlm::cuda::detail::cublas_failed(jetlm_cublas_st_, #expr, __FILE__, __LINE__);        \
  } while (0)
