// CudaModel: the whole model on one GPU, batched over sequence slots (the BatchBackend contract of
// include/jetlm/batch_backend.h).
//
// Device state:
//  - weights: every matrix uploaded in its stored dtype (f32/bf16/f16/q8), vectors as float32;
//  - attn layers: one paged K/V pool per layer, [kv_pages * page_size, Hkv * hd] float32 or bf16, with
//    one page table [slots, pages_per_seq] shared by all attn layers (a page index names the same
//    positions in every layer); pages are taken from a free list as a sequence grows and returned
//    by reset_slot();
//  - swa layers: a ring of W rows per slot; jet layers: S [slots, H, dk, dv] float32 and the conv
//    history [slots, K-1, value_dim].
// Prefill runs one slot in chunks (chunked gated delta rule, flash attention over the slot's
// gathered K/V); decode runs B slots at once (split-KV attention reading the pages in place, the
// recurrent step on each slot's state in place), replayed from a CUDA graph captured per batch size.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "backend/cuda/ops_cuda.h"
#include "jetlm/batch_backend.h"
#include "jetlm/model.h"

namespace jetlm::cuda {

// KV cache elements. Auto: bf16 for half-precision and q8 models (their prefill attention already
// rounds K/V to bf16; half the bytes, twice the batch), float32 for float32 models (exact).
enum class KvCacheType { Auto, F32, BF16 };

struct CudaModelOptions {
  int max_slots = 8;
  int64_t context_limit = 0;   // tokens per slot; 0: the config's max_position, at most 32768
  int64_t page_size = 16;      // tokens per KV page
  int64_t kv_pages = 0;        // pages in each attn layer's pool; 0: every slot at context_limit
  int64_t prefill_chunk = 1024;
  bool cuda_graphs = true;     // capture and replay the decode step per batch size
  // Batch-1 decode: each norm computed inside the GEMV that reads it and each residual add in the
  // epilogue of the GEMV that produces it (~80 launches fewer per Jet-Nemotron-2B step).
  // The JetBlock's gated output norm then runs in the delta-rule step (one block per head) rather
  // than in every block of the output projection. The environment's JETLM_DECODE_FUSION=0 turns
  // all of it off, JETLM_GDN_NORM=0 only the latter (A/B runs).
  bool fuse_decode = true;
  KvCacheType kv_cache = KvCacheType::Auto;
  // Prefill of half-precision and q8 models: the MLP's gate/up GEMM and the JetBlock's stacked
  // input projection write their outputs rounded to bf16/f16, as the model's bf16 PyTorch Linears
  // return them, instead of float32 (half the bytes; 147 MB of gate/up per 2048-token chunk of
  // Jet-Nemotron-2B). Off by default: measured 1.1% slower on the H100 (docs/performance.md);
  // JETLM_GEMM_HALF_OUT=1 turns it on.
  bool half_gemm_outputs = false;
};

class CudaModel final : public BatchBackend {
 public:
  // Uploads the weights of `model` (which may be freed afterwards) and allocates the cache pools.
  // Throws jetlm::Error when there is no GPU, the config is outside the kernels' limits, or the
  // pools do not fit in device memory.
  CudaModel(const Model& model, const CudaModelOptions& options = {});
  ~CudaModel() override;
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const ModelConfig& config() const override { return config_; }
  int max_slots() const override { return options_.max_slots; }
  int64_t context_limit() const override { return options_.context_limit; }
  int64_t slot_tokens(int slot) const override;
  void reset_slot(int slot) override;
  void prefill(int slot, const int32_t* ids, int64_t T, float* last_logits) override;
  void decode(const int* slots, const int32_t* ids, int64_t B, float* logits) override;

  // decode() followed by a draw on the device per sequence (params[b], host array): only the B
  // chosen tokens come back to the host.
  void decode_sample(const int* slots, const int32_t* ids, int64_t B, const DeviceSampling* params,
                     int32_t* tokens);

  // Benchmarks: make `slot` a sequence that has consumed n_tokens, with random cache contents.
  void fill_synthetic(int slot, int64_t n_tokens, uint64_t seed);

  int64_t weight_bytes() const { return weight_bytes_; }
  // Device bytes a sequence of n tokens occupies in the cache pools (pages rounded up).
  int64_t cache_bytes_per_sequence(int64_t n_tokens) const;
  static int64_t cache_bytes_for(const ModelConfig& config, int64_t n_tokens, int64_t page_size, DType kv_dtype);
  // The KV element type `type` resolves to (half_precision_model: bf16/f16/q8 weights).
  static DType kv_cache_dtype(KvCacheType type, bool half_precision_model);
  DType kv_dtype() const { return kv_dtype_; }
  // Activation scratch per token row of a forward (the engine holds max(prefill_chunk, slots) rows).
  static int64_t scratch_bytes_per_row(const ModelConfig& config);
  int64_t kv_pages() const { return kv_pages_; }
  int64_t free_pages() const { return int64_t(free_pages_.size()); }

 private:
  struct DeviceLayer;
  struct Scratch;

  void check_slot(int slot, const char* what) const;
  void reserve_pages(int slot, int64_t n_tokens);  // pages for positions < n_tokens
  void upload_page_rows(const std::vector<int>& slots);
  void forward_chunk(int slot, int64_t pos0, int64_t T, bool want_logits);
  void decode_layers(int64_t B);
  void mlp_gate_up(const DeviceLayer& d, const float* x, int64_t R);  // the captured part: ids/slots/positions already on the device
  void run_decode(int64_t B);
  KvLayout layout(int il) const;

  // Half-precision and q8 models prefill on tensor cores: attention with bf16 operands (head_dim
  // <= 128, chunks of at least kTensorCoreMinRows tokens) and the delta rule's state pass in TF32.
  static constexpr int64_t kTensorCoreMinRows = 16;
  bool tensor_cores_ = false;
  bool fuse_decode_ = true;   // options_.fuse_decode unless JETLM_DECODE_FUSION=0
  bool fuse_gdn_norm_ = true;  // unless JETLM_GDN_NORM=0
  bool fuse_jet_step_ = true;  // unless JETLM_JET_STEP=0
  bool fuse_qkv_rope_ = true;  // unless JETLM_QKV_ROPE=0
  bool half_gemm_out_ = false;  // options_.half_gemm_outputs, or JETLM_GEMM_HALF_OUT=0/1
  // Prefill: a JetBlock's seven input projections as one GEMM over the stacked matrix and one
  // kernel after it (jet_decode_prep), unless JETLM_PREFILL_STACKED=0.
  bool stacked_prefill_ = true;
  // Prefill: the norms before GEMMs also write their output rounded for them (no separate
  // rounding pass), unless JETLM_NORM_ROUNDED=0.
  bool round_in_norms_ = true;
  DType kv_dtype_ = DType::F32;

  ModelConfig config_;
  CudaModelOptions options_;
  Stream stream_ = nullptr;
  std::vector<MatrixBuffer> matrices_;
  std::vector<Buffer<float>> vectors_;
  std::vector<DeviceLayer> layers_;
  DeviceMatrix embed_, lm_head_;
  const float* final_norm_ = nullptr;
  int64_t weight_bytes_ = 0;

  // Cache pools.
  int64_t pages_per_seq_ = 0, kv_pages_ = 0;
  std::vector<int> free_pages_;
  std::vector<std::vector<int>> slot_pages_;  // pages owned by each slot, in position order
  std::vector<int32_t> page_table_host_;      // [slots, pages_per_seq]
  Buffer<int32_t> page_table_;
  std::vector<int64_t> n_past_;

  std::unique_ptr<Scratch> scratch_;
  struct Graph;
  std::map<int64_t, std::unique_ptr<Graph>> graphs_;
};

}  // namespace jetlm::cuda
