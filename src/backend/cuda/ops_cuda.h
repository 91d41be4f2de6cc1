// The CUDA backend: the op contract of backend/ops.h on DEVICE pointers.
//
// Every op has the shapes and semantics written in backend/ops.h; here all pointers (activations,
// weights, states, token ids) live in device memory, activations are float32, row-major and
// contiguous. Ops are enqueued on the backend's stream (set_stream; default: the legacy default
// stream) and return without synchronising; host-side shape checks run before the launch.
// Errors: a missing device or a failing CUDA/cuBLAS call throws jetlm::Error naming file:line and
// the CUDA error (STYLE.md: every CUDA call checked).
//
// Precision (measured against ref:: in tests/cuda):
//  - matmul, f32 weights: cuBLAS SGEMM, pure float32 (no TF32).
//  - matmul, bf16/f16 weights, T <= kGemvMaxT: custom GEMV, float32 activations times the stored
//    weights, float32 accumulation (float32-exact products).
//  - matmul, bf16/f16 weights, T > kGemvMaxT: the activations are rounded to the weight type
//    (bf16 or f16) and cuBLAS GemmEx accumulates in float32: about 1e-3..1e-2 normalised error.
//  - matmul, q8 weights: GEMV dequantizes on the fly (float32); GEMM dequantizes a block of rows to
//    bf16 and goes through the bf16 path.
//  - attention: float32 on CUDA cores (no tensor cores yet), head dim <= 256.
//  - every other op computes in float32 (rope's angles in float64), ~1e-6..1e-4 normalised error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "core/dtype.h"
#include "core/tensor.h"

struct CUstream_st;

namespace jetlm::cuda {

using Stream = CUstream_st*;  // == cudaStream_t; nullptr is the default stream

// ---- device ---------------------------------------------------------------------------------

// True when a CUDA device can be used; otherwise false and, with `why`, the reason
// ("no CUDA device: <cudaGetErrorString>").
bool available(std::string* why = nullptr);
// Throws jetlm::Error("no CUDA device: ...") when available() is false.
void require_device();
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)".
std::string device_description();

void set_stream(Stream s);
Stream stream();
// Waits for the backend's stream; throws on any asynchronous error of earlier kernels.
void synchronize();

// ---- memory ---------------------------------------------------------------------------------

void* device_alloc(size_t bytes);
void device_free(void* p) noexcept;
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_device(void* dst, const void* src, size_t bytes);
void fill_bytes(void* dst, int value, size_t bytes);

// An owning device allocation of n elements of T (moved, never copied).
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t n) : n_(n), p_(n ? static_cast<T*>(device_alloc(n * sizeof(T))) : nullptr) {}
  Buffer(const T* host, size_t n) : Buffer(n) { upload(host, n); }
  ~Buffer() { device_free(p_); }
  Buffer(Buffer&& o) noexcept : n_(std::exchange(o.n_, 0)), p_(std::exchange(o.p_, nullptr)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      device_free(p_);
      n_ = std::exchange(o.n_, 0);
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  T* data() const { return p_; }
  size_t size() const { return n_; }
  void upload(const T* host, size_t n) { copy_to_device(p_, host, n * sizeof(T)); }
  void download(T* host, size_t n) const { copy_to_host(host, p_, n * sizeof(T)); }

 private:
  size_t n_ = 0;
  T* p_ = nullptr;
};

// A weight matrix in device memory: the fields of jetlm::Matrix (row-major [rows, cols], rows =
// output features), with `data` and `scales` device pointers. dtype F32, F16, BF16 or I8 (q8).
struct DeviceMatrix {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint16_t* scales = nullptr;  // I8 only: f16 [rows, q8_blocks(cols)]
  int64_t bytes() const {
    return rows * cols * int64_t(dtype_size(dtype)) + (scales ? rows * q8_blocks(cols) * 2 : 0);
  }
};

// A host Matrix copied to the device; `view` points into the owned buffers.
struct MatrixBuffer {
  Buffer<uint8_t> data;
  Buffer<uint16_t> scales;
  DeviceMatrix view;
};
MatrixBuffer upload(const Matrix& m);

// ---- ops (shapes and semantics: backend/ops.h; all pointers are device pointers) --------------

// Largest T served by the GEMV kernel (float32 activations); larger T goes through cuBLAS.
inline constexpr int64_t kGemvMaxT = 8;

void matmul(const float* x, int64_t T, const DeviceMatrix& W, const float* bias, float* y);
// The single-token GEMV's layout (T == 1, not matmul_swiglu): Auto picks by shape; a fixed layout
// is for A/B runs (environment JETLM_GEMV=<name>, read once) and for tests, which reach every
// layout with small matrices. SplitK: a block of 8 warps per 4 rows, each warp a slice of K.
// RowsN: N rows per warp (Rows4Deep: twice the loads in flight). GroupGRowsN: G lanes per N rows,
// 32/G row groups per warp (short rows). Process-wide, not thread-safe against running launches.
enum class GemvLayout { Auto, SplitK, Rows1, Rows2, Rows4, Rows4Deep, Group16Rows2, Group8Rows4 };
const char* gemv_layout_name(GemvLayout layout);
void set_gemv_layout(GemvLayout layout);
// Prefill: the GEMM of half-precision or q8 weights rounds its float32 input to bf16/f16 first;
// several GEMMs of one input share one rounding through these. gemm_rounds_input: matmul(x, T, W)
// would round (T > kGemvMaxT, W not float32). round_input: out [n] (2 bytes each) = x rounded as
// matmul rounds it for W. matmul_rounded: matmul from that rounded input (same result bits).
bool gemm_rounds_input(int64_t T, const DeviceMatrix& W);
void round_input(const float* x, int64_t n, const DeviceMatrix& W, void* out);
void matmul_rounded(const void* x_rounded, int64_t T, const DeviceMatrix& W, const float* bias, float* y);
// The GEMM with its output rounded to the weights' half type: y [T, N] (gemm_half_type(W), bf16
// for q8) = round(x W^T) with the float32 sum rounded once, as a bf16 PyTorch Linear returns it.
// No bias (cuBLASLt has no float32-bias epilogue for a half-precision output). Only where
// gemm_rounds_input(T, W); x_rounded (from round_input) may be null, then x is rounded here.
DType gemm_half_type(const DeviceMatrix& W);
void matmul_half_out(const float* x, const void* x_rounded, int64_t T, const DeviceMatrix& W, void* y);
// The SwiGLU MLP's first half: W [2I, K] holds gate and up rows interleaved (row 2i gate_i, row
// 2i+1 up_i); y [T, I] = silu(x gate^T) * (x up^T), with matmul's precision per product. T <= 8:
// the GEMV writes y directly; larger T: a GEMM into scratch, then one elementwise pass. On the
// GEMM path (gemm_rounds_input) the input may come pre-rounded (x_rounded, from round_input) and
// the output may go out rounded for the next GEMM (y_rounded, as round_input would make it;
// y is then not written). half_gate_up (GEMM path only): the GEMM writes gate and up rounded to
// the weights' half type (gemm_half_type; what a bf16 PyTorch Linear returns, and half the bytes
// of the float32 intermediate), and silu(gate) * up is formed from those.
void matmul_swiglu(const float* x, int64_t T, const DeviceMatrix& W, float* y, const void* x_rounded = nullptr,
                   void* y_rounded = nullptr, bool half_gate_up = false);
// Batch-1 decode fusions (one token, the GEMV path). `norm`: x is normalized inside the GEMV, each
// block computing the norm into shared memory (the norm kernel's work without its launch):
// xn[c] = w[c % group] * (x[c] * rsqrt(mean over c's group of x^2 + eps)) (* silu(gate[c]) when
// gate is given), with group = K for an RMSNorm over the row, or head_v_dim for the JetBlock's
// gated per-head output norm. `accumulate`: y += x W^T (+ bias), the residual add in the epilogue.
// gemv_fuses_norm: K small enough for the shared-memory copy (at most kGemvNormMaxBytes).
struct GemvInputNorm {
  const float* w = nullptr;     // [group]
  float eps = 0.0f;
  int64_t group = 0;            // columns per norm; divides K
  const float* gate = nullptr;  // [K] or null
};
inline constexpr size_t kGemvNormMaxBytes = size_t(40) << 10;  // within the 48 KiB without opt-in
bool gemv_fuses_norm(int64_t K);
// Rows of a single-token GEMV whose outputs go through silu in its epilogue: r < end or r >= begin
// (the JetBlock's stacked projection: q and k first, the conv generator's hidden last).
struct GemvSiluRows {
  int64_t end = 0;
  int64_t begin = INT64_MAX;
#ifdef __CUDACC__
  __host__ __device__
#endif
  bool covers(int64_t r) const { return r < end || r >= begin; }
};
// y [1, N] (+)= norm(x) W^T + bias (norm null: x as given); rows in silu_rows: y = silu(that sum),
// the same bits as silu() after the GEMV.
void matmul_decode(const float* x, const DeviceMatrix& W, const float* bias, float* y, const GemvInputNorm* norm,
                   bool accumulate, const GemvSiluRows& silu_rows = {});
// matmul_swiglu for one token with the input norm fused: y [1, N/2].
void matmul_swiglu_decode(const float* x, const DeviceMatrix& W, float* y, const GemvInputNorm& norm);
void embedding(const int32_t* ids, int64_t T, const DeviceMatrix& E, float* out);
void rmsnorm(const float* x, int64_t R, int64_t N, const float* w, float eps, float* out);
void rope(float* x, int64_t T, int64_t H, int64_t hd, int64_t pos0, double theta);
void attention(const float* q, const float* k, const float* v, int64_t T, int64_t S, int64_t Hq,
               int64_t Hkv, int64_t hd, int64_t qpos0, int64_t kpos0, int64_t window, float* o);
// Residual add fused with the following norm: x[R, N] += branch, out = rmsnorm(x; w, eps) (out must
// not alias x or branch). The same float32 arithmetic as add() then rmsnorm(). out_rounded
// (optional, [R, N] of rounded_type BF16 or F16): out rounded as well, as round_input would round
// it for the next GEMM (one pass less in prefill).
void add_rmsnorm(float* x, const float* branch, int64_t R, int64_t N, const float* w, float eps, float* out,
                 void* out_rounded = nullptr, DType rounded_type = DType::BF16);
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
void silu(float* x, int64_t n);
void add(float* y, const float* x, int64_t n);
void l2norm_rows(float* x, int64_t R, int64_t N, float scale);
// dconv: K <= kMaxConvTaps.
inline constexpr int64_t kMaxConvTaps = 16;
void dconv(const float* u, const float* kernel, int64_t T, int64_t C, int64_t K, float* state, float* v);
// gdn_chunked: chunks of 64 tokens, float32 state carried between chunks; dk <= kGdnChunkedMaxDk
// (shared-memory bound)
// takes the chunked kernels, larger dk the recurrent kernel (the same function).
inline constexpr int64_t kGdnChunkedMaxDk = 192;
void gdn_chunked(const float* q, const float* k, const float* v, const float* g, const float* beta,
                 int64_t T, int64_t H, int64_t dk, int64_t dv, float* S, float* o);
// gdn_chunked_tc: the same function with the state pass on tensor cores (TF32 operands, float32
// accumulation and state): ~1e-3 normalised error, for half-precision models. Needs dk, dv
// multiples of 16 (otherwise it runs gdn_chunked).
void gdn_chunked_tc(const float* q, const float* k, const float* v, const float* g, const float* beta,
                    int64_t T, int64_t H, int64_t dk, int64_t dv, float* S, float* o);
// gdn_recurrent: dk <= kGdnRecurrentMaxDk (one fused kernel, state in registers).
inline constexpr int64_t kGdnRecurrentMaxDk = 1024;
void gdn_recurrent(const float* q, const float* k, const float* v, const float* g, const float* beta,
                   int64_t T, int64_t H, int64_t dk, int64_t dv, float* S, float* o);
void jet_gates(const float* b_raw, const float* a_raw, const float* A_log, const float* dt_bias,
               int64_t T, int64_t H, float* beta, float* g);
// o_rounded (optional, [T, H*dv] of rounded_type BF16 or F16): the result rounded as well, as
// round_input would round it for the output projection.
void gated_rmsnorm(float* o, const float* gate, int64_t T, int64_t H, int64_t dv, const float* w, float eps,
                   void* o_rounded = nullptr, DType rounded_type = DType::BF16);
// The JetBlock's work between its stacked input projection and the w2 GEMV, in one launch (the
// same float32 arithmetic as split_columns, silu, l2norm_rows and jet_gates in sequence).
// fused [B, N], each row q [H*dk] | k [H*dk] | u [H*dv] | gate [H*dv] | b [H] | a [H] | hidden [gh]
// (N = 2 H dk + 2 H dv + 2 H + gh). Out: q = l2norm(silu(q)) / sqrt(dk), k = l2norm(silu(k))
// [B, H, dk]; u, gate copied [B, H*dv]; hidden = silu(hidden) [B, gh]; beta, g [B, H].
void jet_decode_prep(const float* fused, int64_t B, int64_t H, int64_t dk, int64_t dv, int64_t gh, float q_scale,
                     const float* A_log, const float* dt_bias, float* q, float* k, float* u, float* gate,
                     float* hidden, float* beta, float* g);
// The same with the fused rows in fused_type (F32, or BF16/F16 from matmul_half_out): prefill
// runs the stacked projection as one GEMM over the chunk's rows and this on its output.
void jet_decode_prep(const void* fused, DType fused_type, int64_t B, int64_t H, int64_t dk, int64_t dv, int64_t gh,
                     float q_scale, const float* A_log, const float* dt_bias, float* q, float* k, float* u,
                     float* gate, float* hidden, float* beta, float* g);

// ---- batched engine ops (engine_ops.cu, gdn.cu): the decode step over B sequences in slots ------

// Where one layer's K/V rows live. Paged (ring == 0): row of (slot, pos) is
// page_table[slot * pages_per_seq + pos / page_size] * page_size + pos % page_size in k/v
// [n_pages * page_size, row]. Ring (SWA, ring = W): row slot * W + pos % W in k/v [slots * W, row].
// Elements are float32 or bf16 (`dtype`); writers round to it, readers widen to float32.
struct KvLayout {
  void* k = nullptr;
  void* v = nullptr;
  int64_t row = 0;  // Hkv * hd elements
  const int32_t* page_table = nullptr;  // device [slots, pages_per_seq]
  int64_t page_size = 0, pages_per_seq = 0;
  int64_t ring = 0;
  DType dtype = DType::F32;  // F32 or BF16
};

// Per-row sampling parameters (device array, one per sequence). temperature <= 0: greedy.
struct DeviceSampling {
  float temperature = 0.0f;
  int top_k = 0;       // 0: off
  float top_p = 1.0f;  // 1: off
  float min_p = 0.0f;  // 0: off
  uint64_t seed = 0;
  uint64_t step = 0;   // position of the draw: the same (seed, step) always draws the same token
};

// Machine measurements for benchmark rooflines: cuBLAS bf16 GEMM (n^3, float32 output) TFLOP/s, and
// device memory bandwidth (GB/s, bytes read + written by a device-to-device copy of `bytes`).
double measure_bf16_gemm_tflops(int64_t n = 8192);
double measure_read_bandwidth_gb_s(size_t bytes = size_t(2) << 30);

// x[n] = uniform in [-scale, scale) from a counter-based hash of (seed, i): benchmark caches.
void fill_uniform(float* x, int64_t n, float scale, uint64_t seed);
void fill_uniform(void* x, DType dtype, int64_t n, float scale, uint64_t seed);  // dtype F32 or BF16
// rope with positions[T] (device) instead of pos0 + t.
void rope_at(float* x, int64_t T, int64_t H, int64_t hd, const int32_t* positions, double theta);
// Decode: fused [B, (Hq + 2 Hkv) hd] rows (q | k | v) -> q_out [B, Hq, hd] roped at positions[b];
// k roped and v written to the cache at (slots[b], positions[b]). The bits of split_columns,
// rope_at on q and k, and kv_append, in one launch.
void qkv_rope_append(const float* fused, int64_t B, int64_t Hq, int64_t Hkv, int64_t hd, const int32_t* positions,
                     double theta, const KvLayout& L, const int32_t* slots, float* q_out);
// Writes rows k/v [T, row] to (slots[t] or slot0, positions[t] or pos0 + t).
void kv_append(const KvLayout& L, const float* k, const float* v, int64_t T, const int32_t* slots, int64_t slot0,
               const int32_t* positions, int64_t pos0);
// Reads the rows of positions pos_lo .. pos_lo+n-1 of one slot into contiguous k_out/v_out [n, row].
void kv_gather(const KvLayout& L, int64_t slot, int64_t pos_lo, int64_t n, float* k_out, float* v_out);
// Decode attention: q [B, Hq, hd], sequence b has lengths[b] keys (its own included) in slot slots[b];
// o [B, Hq, hd]. Splits of ceil(context_limit / splits) keys run in parallel (a fixed grid for
// any lengths, so a captured CUDA graph stays valid); GQA group <= 8, hd <= 256.
// A bf16 cache with hd 64 or 128 runs on tensor cores (bf16 q and probabilities, float32
// accumulation and softmax: ~1e-3..1e-2 normalised error); otherwise CUDA cores in float32.
// tensor_cores: decode_attention_on_tensor_cores() for the cache (its blocks are 4 warp-splits).
int decode_splits(int64_t B, int64_t Hkv, int64_t context_limit, bool tensor_cores = false);
bool decode_attention_on_tensor_cores(DType kv_dtype, int64_t hd);
void attention_decode(const float* q, const KvLayout& kv, const int32_t* slots, const int32_t* lengths, int64_t B,
                      int64_t Hq, int64_t Hkv, int64_t hd, int64_t window, int64_t context_limit, int splits,
                      float* o);
// Prefill attention on tensor cores (bf16 Q/K/P/V, float32 accumulation and softmax): the contract
// of attention() with key s (absolute position kpos0 + s, 0 <= s < S) read from K/V row
// (slot, s) of `kv` (paged pool in place; contiguous K/V [S, row] = a ring of S rows, slot 0).
// Normalised error ~1e-3..1e-2 against float64: used for half-precision models. hd <= 128.
inline constexpr int64_t kAttentionTcMaxHeadDim = 128;
void attention_prefill_tc(const float* q, const KvLayout& kv, int64_t slot, int64_t T, int64_t S, int64_t Hq,
                          int64_t Hkv, int64_t hd, int64_t qpos0, int64_t kpos0, int64_t window, float* o);
// Column ranges of y[T, N] copied apart: part i takes the next width_i columns into its own
// contiguous [T, width_i] (the outputs of a stacked projection; widths must sum to N, at most 8).
struct ColumnPart {
  float* out;
  int64_t width;
};
void split_columns(const float* y, int64_t T, int64_t N, std::initializer_list<ColumnPart> parts);
// One dynamic-conv step per sequence: u [B, C], kernel [B, C, K], conv state of sequence b at
// conv_pool + slots[b] * (K-1) * C (oldest row first), updated in place; v [B, C].
void dconv_step(const float* u, const float* kernel, int64_t B, int64_t C, int64_t K, float* conv_pool,
                const int32_t* slots, float* v);
// One gated-delta-rule step per sequence: q, k [B, H, dk], v, o [B, H, dv], g, beta [B, H]; the
// state of sequence b is state_pool + slots[b] * H * dk * dv, read and written once, in place.
void gdn_step(const float* q, const float* k, const float* v, const float* g, const float* beta, int64_t B,
              int64_t H, int64_t dk, int64_t dv, float* state_pool, const int32_t* slots, float* o);
// dconv_step then gdn_step in one launch (the same float32 arithmetic): v = dconv of u [B, H*dv]
// with kernel [B, H*dv, K] and the conv states of conv_pool, updated in place.
void gdn_step_dconv(const float* q, const float* k, const float* u, const float* kernel, int64_t K, float* conv_pool,
                    const float* g, const float* beta, int64_t B, int64_t H, int64_t dk, int64_t dv, float* state_pool,
                    const int32_t* slots, float* o);
// gdn_step_dconv, then gated_rmsnorm of each head's output (o [B, H, dv] = the normalized, gated
// output; gate [B, H*dv], norm_w [dv]) in one launch, one block per (head, sequence); the same bits
// as the two ops. Needs gdn_step_norm_fits(dk, dv): ceil(dk/32) x ceil(dv/32) warps <= 32
// (Jet-Nemotron-2B: 3 x 8; 4B: 4 x 8).
bool gdn_step_norm_fits(int64_t dk, int64_t dv);
void gdn_step_dconv_norm(const float* q, const float* k, const float* u, const float* kernel, int64_t K,
                         float* conv_pool, const float* g, const float* beta, int64_t B, int64_t H, int64_t dk,
                         int64_t dv, float* state_pool, const int32_t* slots, const float* gate, const float* norm_w,
                         float eps, float* o);
// The JetBlock's decode step from the row of its stacked projection, one launch:
// jet_decode_prep + gdn_step_dconv + gated_rmsnorm with the same bits, except that q and k
// (columns [0, 2 H dk) of fused) must already be through silu (matmul_decode's GemvSiluRows).
// fused [B, N] (q, k, u, gate, b_raw, a_raw, ...); kernels [B, H*dv, K]; o [B, H, dv].
// Needs jet_decode_step_fits: an sm_90+ device, dk <= 1024 and dv <= 256 (a head's columns in at
// most 8 blocks of a cluster).
bool jet_decode_step_fits(int64_t dk, int64_t dv);
void jet_decode_step(const float* fused, int64_t B, int64_t H, int64_t dk, int64_t dv, int64_t N, float q_scale,
                     const float* A_log, const float* dt_bias, const float* kernels, int64_t K, float* conv_pool,
                     float* state_pool, const int32_t* slots, const float* norm_w, float eps, float* o);
// out[b] = a token drawn from logits[b, :V] with params[b] (all device pointers). all_greedy: the
// caller knows every row is greedy (temperature <= 0), which takes a multi-block argmax instead.
void sample(const float* logits, int64_t B, int64_t V, const DeviceSampling* params, int32_t* out,
            bool all_greedy = false);

}  // namespace jetlm::cuda
