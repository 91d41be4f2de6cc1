// Device discovery, stream, memory helpers, the cuBLAS handle and scratch workspaces.
#include <cuda_runtime.h>

#include <cstdio>
#include <mutex>
#include <unordered_map>
#include <string>
#include <vector>

#include "backend/cuda/cuda_common.h"
#include "core/error.h"

namespace jetlm::cuda {

namespace detail {

void cuda_failed(cudaError_t err, const char* expr, const char* file, int line) {
  throw Error("[" + std::string(file) + ":" + std::to_string(line) + "] CUDA error " + cudaGetErrorName(err) +
              ": " + cudaGetErrorString(err) + " in `" + expr + "`");
}

void cublas_failed(cublasStatus_t st, const char* expr, const char* file, int line) {
  throw Error("[" + std::string(file) + ":" + std::to_string(line) + "] cuBLAS error " +
              cublasGetStatusName(st) + ": " + cublasGetStatusString(st) + " in `" + expr + "`");
}

namespace {

Stream g_stream = nullptr;
cublasHandle_t g_cublas = nullptr;
std::mutex g_mutex;
struct Scratch {
  void* p = nullptr;
  size_t bytes = 0;
};
std::vector<Scratch> g_scratch(17);
uint64_t g_workspace_generation = 0;
void* g_cublas_workspace = nullptr;
constexpr size_t kCublasWorkspace = size_t(32) << 20;

const cudaDeviceProp& props() {
  static const cudaDeviceProp p = [] {
    require_device();
    int dev = 0;
    JETLM_CUDA_CHECK(cudaGetDevice(&dev));
    cudaDeviceProp prop{};
    JETLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    return prop;
  }();
  return p;
}

}  // namespace

cublasHandle_t cublas() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_cublas) {
    require_device();
    JETLM_CUBLAS_CHECK(cublasCreate(&g_cublas));
    // Pure float32 for SGEMM (no TF32 unless the user's environment forces it).
    JETLM_CUBLAS_CHECK(cublasSetMathMode(g_cublas, CUBLAS_DEFAULT_MATH));
    // A fixed cuBLAS workspace, so GEMMs captured into CUDA graphs never allocate.
    JETLM_CUDA_CHECK(cudaMalloc(&g_cublas_workspace, kCublasWorkspace));
  }
  JETLM_CUBLAS_CHECK(cublasSetStream(g_cublas, g_stream));
  // cublasSetStream resets the workspace to cuBLAS's own pool: set ours again every time.
  JETLM_CUBLAS_CHECK(cublasSetWorkspace(g_cublas, g_cublas_workspace, kCublasWorkspace));
  return g_cublas;
}

void* workspace(int slot, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  JETLM_ASSERT(slot >= 0 && slot < int(g_scratch.size()));
  Scratch& s = g_scratch[size_t(slot)];
  if (bytes > s.bytes) {
    if (s.p) JETLM_CUDA_CHECK(cudaFree(s.p));  // synchronises: queued kernels may still use it
    s.bytes = std::max(bytes, s.bytes * 3 / 2);
    JETLM_CUDA_CHECK(cudaMalloc(&s.p, s.bytes));
    ++g_workspace_generation;
  }
  return s.p;
}

uint64_t workspace_generation() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_workspace_generation;
}

int sm_count() { return props().multiProcessorCount; }
int compute_major() { return props().major; }
size_t max_shared_per_block() { return props().sharedMemPerBlockOptin; }

void allow_dynamic_smem(const void* kernel, size_t bytes) {
  static std::mutex mutex;
  static std::unordered_map<const void*, size_t> allowed;
  if (bytes <= 48 * 1024) return;  // the default limit
  std::lock_guard<std::mutex> lock(mutex);
  size_t& now = allowed[kernel];
  if (bytes <= now) return;
  JETLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  now = bytes;
}

}  // namespace detail

bool available(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later checks start clean
    if (why) *why = std::string("no CUDA device: ") + cudaGetErrorString(err);
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device: cudaGetDeviceCount found 0 devices";
    return false;
  }
  return true;
}

void require_device() {
  std::string why;
  if (!available(&why)) throw Error(why);
}

std::string device_description() {
  const cudaDeviceProp& p = detail::props();
  char buf[1400];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %d SMs, %.1f GiB, L2 %.0f MB)", p.name, p.major, p.minor,
                p.multiProcessorCount, double(p.totalGlobalMem) / (1 << 30), double(p.l2CacheSize) / 1e6);
  return buf;
}

void set_stream(Stream s) { detail::g_stream = s; }
Stream stream() { return detail::g_stream; }

void synchronize() { JETLM_CUDA_CHECK(cudaStreamSynchronize(detail::g_stream)); }

void* device_alloc(size_t bytes) {
  require_device();
  void* p = nullptr;
  JETLM_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void device_free(void* p) noexcept {
  if (p) cudaFree(p);
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  JETLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, detail::g_stream));
  JETLM_CUDA_CHECK(cudaStreamSynchronize(detail::g_stream));
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  JETLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, detail::g_stream));
  JETLM_CUDA_CHECK(cudaStreamSynchronize(detail::g_stream));
}

void copy_device(void* dst, const void* src, size_t bytes) {
  JETLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, detail::g_stream));
}

void fill_bytes(void* dst, int value, size_t bytes) {
  JETLM_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, detail::g_stream));
}

MatrixBuffer upload(const Matrix& m) {
  MatrixBuffer b;
  const size_t bytes = size_t(m.rows * m.cols) * dtype_size(m.dtype);
  b.data = Buffer<uint8_t>(static_cast<const uint8_t*>(m.data), bytes);
  if (m.dtype == DType::I8) {
    JETLM_ASSERT(m.scales != nullptr, "q8 matrix without scales");
    b.scales = Buffer<uint16_t>(m.scales, size_t(m.rows * q8_blocks(m.cols)));
  }
  b.view = DeviceMatrix{b.data.data(), m.dtype, m.rows, m.cols, b.scales.data()};
  return b;
}

}  // namespace jetlm::cuda
