// CudaModel: the forward composition of model/model.cpp + model/layers.cpp on the GPU, over
// sequence slots. Same op order and math as the CPU engine; see cuda_model.h for the layout.
#include "backend/cuda/cuda_model.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cuda/cuda_common.h"
#include "core/env.h"
#include "core/error.h"

namespace jetlm::cuda {

struct CudaModel::DeviceLayer {
  LayerKind kind = LayerKind::Attn;
  const float* input_norm = nullptr;
  const float* post_norm = nullptr;
  DeviceMatrix gate, up, down;
  DeviceMatrix gate_up;  // [2I, D] gate/up rows interleaved (empty when not: then gate/up on their own)
  // attn / swa
  DeviceMatrix qkv;      // [Hq*hd + 2*Hkv*hd, D] stacked q/k/v (views q, k, v)
  const float* qkv_bias = nullptr;
  DeviceMatrix q, k, v, o;
  const float *q_bias = nullptr, *k_bias = nullptr, *v_bias = nullptr, *q_norm = nullptr, *k_norm = nullptr;
  Buffer<uint8_t> kpool, vpool;  // attn: pages; swa: ring per slot (kv_dtype_ elements)
  // jet
  DeviceMatrix jq, jk, jv, jb, ja, jg, jo, w1, w2;
  DeviceMatrix in_proj;  // stacked q, k, v, g, b, a, w1 (the projections of the normed input)
  const float *w2_bias = nullptr, *A_log = nullptr, *dt_bias = nullptr, *o_norm = nullptr;
  Buffer<float> state;  // [slots, H, dk, dv]
  Buffer<float> conv;   // [slots, K-1, value_dim]
};

// Activation buffers for up to `rows` tokens per forward, plus the per-step index arrays.
struct CudaModel::Scratch {
  int64_t rows = 0;
  Buffer<float> x, normed, branch, q, k, v, attn, u, hidden, kernels, vv, b_raw, a_raw, beta, g, o, gate, mlp_gate,
      mlp_up, logits, kc, vc, fused;
  Buffer<uint16_t> rounded;  // prefill: one GEMM input rounded to bf16/f16, shared by its GEMMs
  Buffer<uint16_t> normed_rounded;  // prefill: the normed hidden state as its norm rounded it
  Buffer<int32_t> ids, slots, positions, lengths, tokens;
  Buffer<DeviceSampling> sampling;
  // Pinned host staging for the per-step arrays (async copies need page-locked memory).
  int32_t* host_i32 = nullptr;  // [4, max_slots]: ids, slots, positions, lengths
  DeviceSampling* host_sampling = nullptr;
  ~Scratch() {
    if (host_i32) cudaFreeHost(host_i32);
    if (host_sampling) cudaFreeHost(host_sampling);
  }
};

struct CudaModel::Graph {
  cudaGraphExec_t exec = nullptr;
  uint64_t generation = 0;
  ~Graph() {
    if (exec) cudaGraphExecDestroy(exec);
  }
};

namespace {

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// A prefill GEMM input rounded once for the GEMMs that read it (see round_input). Null `data`:
// not rounded (GEMV rows or float32 weights); a matrix rounds to bf16 (bf16, q8) or f16.
struct RoundedInput {
  const float* x = nullptr;
  const void* data = nullptr;
  bool f16 = false;
};

// pre: x already rounded by its producer (a norm's rounded output; null if not), usable when it
// was rounded for W's type.
RoundedInput round_shared(const float* x, int64_t T, int64_t K, const DeviceMatrix& W, void* out,
                          const RoundedInput& pre = {}) {
  if (!gemm_rounds_input(T, W)) return {x, nullptr, false};
  if (pre.data && pre.f16 == (W.dtype == DType::F16)) return {x, pre.data, pre.f16};
  round_input(x, T * K, W, out);
  return {x, out, W.dtype == DType::F16};
}

// Where a norm's output feeds GEMMs of W (prefill's GEMM path), the norm also writes it rounded
// for W into `out`: the rounded view, or none (null data) when W takes float32 input.
RoundedInput rounded_for(bool enabled, int64_t T, const DeviceMatrix& W, void* out) {
  if (!enabled || !W.data || !gemm_rounds_input(T, W)) return {};
  return {nullptr, out, W.dtype == DType::F16};
}
DType rounded_type(const RoundedInput& r) { return r.f16 ? DType::F16 : DType::BF16; }

// y = x W^T (+ bias) from the shared rounding where it was made for W's rounded type.
void project(const RoundedInput& in, int64_t T, const DeviceMatrix& W, const float* bias, float* y) {
  if (in.data && gemm_rounds_input(T, W) && (W.dtype == DType::F16) == in.f16)
    return matmul_rounded(in.data, T, W, bias, y);
  matmul(in.x, T, W, bias, y);
}

}  // namespace

CudaModel::CudaModel(const Model& model, const CudaModelOptions& options) : config_(model.config()), options_(options) {
  require_device();
  const ModelConfig& c = config_;
  // Precision follows the weights: float32 models keep float32 prefill attention and delta rule.
  tensor_cores_ = !model.weights().layers.empty() && model.weights().layers[0].gate.dtype != DType::F32;
  // JETLM_TENSOR_CORES=0 keeps the float32 prefill kernels (for A/B benchmarks).
  if (!env_switch("JETLM_TENSOR_CORES", true)) tensor_cores_ = false;
  kv_dtype_ = kv_cache_dtype(options_.kv_cache, tensor_cores_);
  fuse_decode_ = options_.fuse_decode;
  fuse_decode_ = env_switch("JETLM_DECODE_FUSION", fuse_decode_);
  fuse_gdn_norm_ = env_switch("JETLM_GDN_NORM", fuse_gdn_norm_);
  fuse_jet_step_ = env_switch("JETLM_JET_STEP", fuse_jet_step_);
  fuse_qkv_rope_ = env_switch("JETLM_QKV_ROPE", fuse_qkv_rope_);
  stacked_prefill_ = env_switch("JETLM_PREFILL_STACKED", stacked_prefill_);
  round_in_norms_ = env_switch("JETLM_NORM_ROUNDED", round_in_norms_);
  half_gemm_out_ = env_switch("JETLM_GEMM_HALF_OUT", options_.half_gemm_outputs);
  if (options_.max_slots < 1 || options_.max_slots > 65535)
    throw_error("max_slots", "must be in 1..65535, got " + std::to_string(options_.max_slots));
  if (options_.context_limit <= 0) options_.context_limit = std::min<int64_t>(c.max_position, 32768);
  if (options_.page_size < 1) throw_error("page_size", "must be >= 1");
  if (options_.prefill_chunk < 1 || options_.prefill_chunk > 65535)
    throw_error("prefill_chunk", "must be in 1..65535, got " + std::to_string(options_.prefill_chunk));
  if (c.has_kind(LayerKind::Attn) || c.has_kind(LayerKind::Swa)) {
    if (c.n_heads % c.n_kv_heads != 0 || c.n_heads / c.n_kv_heads > 8)
      throw_error("config", "the CUDA decode attention needs n_heads / n_kv_heads <= 8");
    if (c.head_dim > 256) throw_error("config", "the CUDA attention kernels need head_dim <= 256");
  }
  if (c.has_kind(LayerKind::Jet)) {
    if (c.jet.conv_size > kMaxConvTaps) throw_error("config", "the CUDA dynamic conv needs conv_size <= 16");
    if (c.jet.head_k_dim > kGdnRecurrentMaxDk) throw_error("config", "the CUDA gated delta rule needs dk <= 1024");
  }

  JETLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  set_stream(stream_);

  // ---- weights ----
  const ModelWeights& w = model.weights();
  auto mat = [&](const Matrix& m) -> DeviceMatrix {
    if (m.data == nullptr) return {};
    matrices_.push_back(upload(m));
    weight_bytes_ += matrices_.back().view.bytes();
    return matrices_.back().view;
  };
  auto vec = [&](const std::vector<float>& v) -> const float* {
    if (v.empty()) return nullptr;
    vectors_.emplace_back(v.data(), v.size());
    weight_bytes_ += int64_t(v.size()) * 4;
    return vectors_.back().data();
  };
  // Matrices that read the same input, stacked by rows into one device matrix: decode runs one GEMV
  // over all of them (one launch, full bandwidth) and prefill uses row-range views of it. Returns
  // an empty matrix when the parts differ in dtype (q8 keeps the jet gates in bf16): then each part
  // is uploaded on its own.
  auto fuse = [&](std::initializer_list<std::pair<const Matrix*, DeviceMatrix*>> parts) -> DeviceMatrix {
    const Matrix& first = *parts.begin()->first;
    int64_t rows = 0;
    for (const auto& [m, view] : parts) {
      if (m->data == nullptr || m->dtype != first.dtype || m->cols != first.cols) {
        for (const auto& [m2, view2] : parts) *view2 = mat(*m2);
        return {};
      }
      rows += m->rows;
    }
    const size_t esize = dtype_size(first.dtype), blocks = size_t(q8_blocks(first.cols));
    std::vector<uint8_t> data(size_t(rows * first.cols) * esize);
    std::vector<uint16_t> scales(first.dtype == DType::I8 ? size_t(rows) * blocks : 0);
    int64_t r0 = 0;
    for (const auto& [m, view] : parts) {
      std::memcpy(data.data() + size_t(r0 * first.cols) * esize, m->data, size_t(m->rows * m->cols) * esize);
      if (!scales.empty()) std::memcpy(scales.data() + size_t(r0) * blocks, m->scales, size_t(m->rows) * blocks * 2);
      r0 += m->rows;
    }
    const Matrix whole{data.data(), first.dtype, rows, first.cols, scales.empty() ? nullptr : scales.data()};
    const DeviceMatrix fused = mat(whole);
    r0 = 0;
    for (const auto& [m, view] : parts) {
      *view = fused;
      view->rows = m->rows;
      view->data = static_cast<const uint8_t*>(fused.data) + size_t(r0 * first.cols) * esize;
      if (fused.scales) view->scales = fused.scales + size_t(r0) * blocks;
      r0 += m->rows;
    }
    return fused;
  };
  // The MLP's gate and up rows interleaved (row 2i gate_i, row 2i+1 up_i) for matmul_swiglu, whose
  // GEMV finishes both rows of a pair in one warp and writes silu(gate) * up. Empty (and gate/up
  // uploaded on their own) when the two differ in dtype or shape.
  auto interleave = [&](const Matrix& a, const Matrix& b, DeviceMatrix* view_a, DeviceMatrix* view_b) -> DeviceMatrix {
    if (a.data == nullptr || b.data == nullptr || a.dtype != b.dtype || a.rows != b.rows || a.cols != b.cols) {
      *view_a = mat(a);
      *view_b = mat(b);
      return {};
    }
    const size_t esize = dtype_size(a.dtype), row_bytes = size_t(a.cols) * esize, blocks = size_t(q8_blocks(a.cols));
    std::vector<uint8_t> data(size_t(2 * a.rows) * row_bytes);
    std::vector<uint16_t> scales(a.dtype == DType::I8 ? size_t(2 * a.rows) * blocks : 0);
    for (int64_t r = 0; r < a.rows; ++r) {
      for (int part = 0; part < 2; ++part) {
        const Matrix& m = part == 0 ? a : b;
        std::memcpy(data.data() + size_t(2 * r + part) * row_bytes, static_cast<const uint8_t*>(m.data) + r * row_bytes,
                    row_bytes);
        if (!scales.empty())
          std::memcpy(scales.data() + size_t(2 * r + part) * blocks, m.scales + size_t(r) * blocks, blocks * 2);
      }
    }
    const Matrix whole{data.data(), a.dtype, 2 * a.rows, a.cols, scales.empty() ? nullptr : scales.data()};
    return mat(whole);
  };
  auto concat = [&](std::initializer_list<const std::vector<float>*> parts) -> const float* {
    std::vector<float> all;
    for (const std::vector<float>* v : parts) {
      if (v->empty()) return nullptr;
      all.insert(all.end(), v->begin(), v->end());
    }
    return vec(all);
  };
  matrices_.reserve(16 + size_t(c.n_layers) * 16);
  vectors_.reserve(4 + size_t(c.n_layers) * 12);
  embed_ = mat(w.embed);
  lm_head_ = c.tie_embeddings ? embed_ : mat(w.lm_head);
  final_norm_ = vec(w.final_norm);

  const int64_t S = options_.max_slots;
  pages_per_seq_ = (options_.context_limit + options_.page_size - 1) / options_.page_size;
  kv_pages_ = options_.kv_pages > 0 ? options_.kv_pages : S * pages_per_seq_;
  const int64_t kv_row = int64_t(c.n_kv_heads) * c.head_dim;
  const JetConfig& j = c.jet;
  layers_.resize(size_t(c.n_layers));
  for (int il = 0; il < c.n_layers; ++il) {
    const LayerWeights& L = w.layers[size_t(il)];
    DeviceLayer& d = layers_[size_t(il)];
    d.kind = L.kind;
    d.input_norm = vec(L.input_norm);
    d.post_norm = vec(L.post_norm);
    d.gate_up = interleave(L.gate, L.up, &d.gate, &d.up);
    d.down = mat(L.down);
    if (L.kind == LayerKind::Jet) {
      d.in_proj = fuse({{&L.jet.q, &d.jq}, {&L.jet.k, &d.jk}, {&L.jet.v, &d.jv}, {&L.jet.g, &d.jg},
                        {&L.jet.b, &d.jb}, {&L.jet.a, &d.ja}, {&L.jet.w1, &d.w1}});
      d.jo = mat(L.jet.o);
      d.w2 = mat(L.jet.w2);
      d.w2_bias = vec(L.jet.w2_bias);
      d.A_log = vec(L.jet.A_log);
      d.dt_bias = vec(L.jet.dt_bias);
      d.o_norm = vec(L.jet.o_norm);
      d.state = Buffer<float>(size_t(S) * j.num_heads * j.head_k_dim * j.head_v_dim);
      d.conv = Buffer<float>(size_t(S) * std::max(0, j.conv_size - 1) * j.value_dim() + 1);
      fill_bytes(d.state.data(), 0, d.state.size() * 4);
      fill_bytes(d.conv.data(), 0, d.conv.size() * 4);
    } else {
      d.qkv = fuse({{&L.attn.q, &d.q}, {&L.attn.k, &d.k}, {&L.attn.v, &d.v}});
      d.o = mat(L.attn.o);
      d.q_bias = vec(L.attn.q_bias);
      d.k_bias = vec(L.attn.k_bias);
      d.v_bias = vec(L.attn.v_bias);
      d.qkv_bias = concat({&L.attn.q_bias, &L.attn.k_bias, &L.attn.v_bias});
      d.q_norm = vec(L.attn.q_norm);
      d.k_norm = vec(L.attn.k_norm);
      const int64_t rows = L.kind == LayerKind::Attn ? kv_pages_ * options_.page_size : S * c.swa_window;
      try {
        const size_t bytes = size_t(rows * kv_row) * dtype_size(kv_dtype_);
        d.kpool = Buffer<uint8_t>(bytes);
        d.vpool = Buffer<uint8_t>(bytes);
      } catch (const Error& e) {
        throw_error("kv cache", "cannot allocate " +
                                    std::to_string(2 * rows * kv_row * int64_t(dtype_size(kv_dtype_)) >> 20) +
                                    " MiB for layer " + std::to_string(il) +
                                    " (lower --max-batch / --ctx or set kv_pages): " + e.what());
      }
    }
  }
  page_table_host_.assign(size_t(S * pages_per_seq_), 0);
  page_table_ = Buffer<int32_t>(page_table_host_.data(), page_table_host_.size());
  free_pages_.resize(size_t(kv_pages_));
  for (int64_t p = 0; p < kv_pages_; ++p) free_pages_[size_t(p)] = int(kv_pages_ - 1 - p);  // pop_back gives 0 first
  slot_pages_.assign(size_t(S), {});
  n_past_.assign(size_t(S), 0);

  // ---- scratch ----
  auto sc = std::make_unique<Scratch>();
  const int64_t R = std::max<int64_t>(options_.prefill_chunk, S);
  sc->rows = R;
  const int64_t D = c.hidden;
  const int64_t qw = std::max<int64_t>(int64_t(c.n_heads) * c.head_dim, j.key_dim());
  const int64_t vd = std::max<int64_t>(j.value_dim(), 1);
  sc->x = Buffer<float>(size_t(R * D));
  sc->normed = Buffer<float>(size_t(R * D));
  sc->branch = Buffer<float>(size_t(R * D));
  sc->q = Buffer<float>(size_t(R * qw));
  sc->k = Buffer<float>(size_t(R * std::max(kv_row, int64_t(j.key_dim()))));
  sc->v = Buffer<float>(size_t(R * std::max(kv_row, vd)));
  sc->attn = Buffer<float>(size_t(R * int64_t(c.n_heads) * c.head_dim + 1));
  if (c.has_kind(LayerKind::Jet)) {
    sc->u = Buffer<float>(size_t(R * vd));
    sc->hidden = Buffer<float>(size_t(R * j.generator_hidden));
    sc->kernels = Buffer<float>(size_t(R * vd * j.conv_size));
    sc->vv = Buffer<float>(size_t(R * vd));
    sc->b_raw = Buffer<float>(size_t(R * j.num_heads));
    sc->a_raw = Buffer<float>(size_t(R * j.num_heads));
    sc->beta = Buffer<float>(size_t(R * j.num_heads));
    sc->g = Buffer<float>(size_t(R * j.num_heads));
    sc->o = Buffer<float>(size_t(R * vd));
    sc->gate = Buffer<float>(size_t(R * vd));
  }
  // Outputs of the stacked decode projections, [slots, rows of the widest stack].
  int64_t widest = 2 * int64_t(c.intermediate) + int64_t(c.n_heads) * c.head_dim + 2 * kv_row;
  if (c.has_kind(LayerKind::Jet)) widest = std::max<int64_t>(widest, 2 * j.key_dim() + 2 * j.value_dim() + 2 * j.num_heads + j.generator_hidden);
  // Prefill of a JetBlock layer also writes its stacked projection here: [R, widest] then.
  sc->fused = Buffer<float>(size_t((c.has_kind(LayerKind::Jet) ? R : S) * widest));
  sc->mlp_gate = Buffer<float>(size_t(R * c.intermediate));
  sc->mlp_up = Buffer<float>(size_t(R * c.intermediate));
  sc->rounded = Buffer<uint16_t>(size_t(R * std::max<int64_t>({D, c.intermediate, j.value_dim()})));
  sc->normed_rounded = Buffer<uint16_t>(size_t(R * D));
  sc->logits = Buffer<float>(size_t(S * int64_t(c.vocab)));
  // Prefill attention reads a slot's K/V gathered contiguously: up to the whole context.
  if (c.has_kind(LayerKind::Attn) || c.has_kind(LayerKind::Swa)) {
    const int64_t keys = c.has_kind(LayerKind::Attn) ? options_.context_limit
                                                     : std::min<int64_t>(options_.context_limit, c.swa_window + R);
    sc->kc = Buffer<float>(size_t(keys * kv_row));
    sc->vc = Buffer<float>(size_t(keys * kv_row));
  }
  sc->ids = Buffer<int32_t>(size_t(R));
  sc->slots = Buffer<int32_t>(size_t(S));
  sc->positions = Buffer<int32_t>(size_t(S));
  sc->lengths = Buffer<int32_t>(size_t(S));
  sc->tokens = Buffer<int32_t>(size_t(S));
  sc->sampling = Buffer<DeviceSampling>(size_t(S));
  JETLM_CUDA_CHECK(cudaMallocHost(&sc->host_i32, sizeof(int32_t) * size_t(4 * S)));
  JETLM_CUDA_CHECK(cudaMallocHost(&sc->host_sampling, sizeof(DeviceSampling) * size_t(S)));
  scratch_ = std::move(sc);
  synchronize();
}

CudaModel::~CudaModel() {
  graphs_.clear();
  if (stream_) {
    cudaStreamSynchronize(stream_);
    if (stream() == stream_) set_stream(nullptr);
    cudaStreamDestroy(stream_);
  }
}

void CudaModel::check_slot(int slot, const char* what) const {
  if (slot < 0 || slot >= options_.max_slots)
    throw_error(what, "slot " + std::to_string(slot) + " out of range, expected 0.." +
                          std::to_string(options_.max_slots - 1));
}

int64_t CudaModel::slot_tokens(int slot) const {
  check_slot(slot, "slot_tokens");
  return n_past_[size_t(slot)];
}

int64_t CudaModel::cache_bytes_per_sequence(int64_t n_tokens) const {
  return cache_bytes_for(config_, n_tokens, options_.page_size, kv_dtype_);
}

DType CudaModel::kv_cache_dtype(KvCacheType type, bool half_precision_model) {
  if (type == KvCacheType::F32) return DType::F32;
  if (type == KvCacheType::BF16) return DType::BF16;
  return half_precision_model ? DType::BF16 : DType::F32;
}

int64_t CudaModel::cache_bytes_for(const ModelConfig& c, int64_t n_tokens, int64_t page_size, DType kv_dtype) {
  const int64_t kv_row = int64_t(c.n_kv_heads) * c.head_dim;
  const int64_t kv_bytes = int64_t(dtype_size(kv_dtype));
  int64_t bytes = 0;
  for (LayerKind kind : c.layer_types) {
    if (kind == LayerKind::Attn) bytes += 2 * round_up(n_tokens, page_size) * kv_row * kv_bytes;
    else if (kind == LayerKind::Swa) bytes += 2 * int64_t(c.swa_window) * kv_row * kv_bytes;
    else
      bytes += (int64_t(c.jet.num_heads) * c.jet.head_k_dim * c.jet.head_v_dim +
                int64_t(c.jet.conv_size - 1) * c.jet.value_dim()) * 4;
  }
  return bytes;
}

int64_t CudaModel::scratch_bytes_per_row(const ModelConfig& c) {
  const JetConfig& j = c.jet;
  const int64_t qw = std::max<int64_t>(int64_t(c.n_heads) * c.head_dim, j.key_dim());
  const int64_t kv = std::max<int64_t>(int64_t(c.n_kv_heads) * c.head_dim, std::max(j.key_dim(), j.value_dim()));
  const int64_t vd = std::max(j.value_dim(), 1);
  return 4 * (3 * int64_t(c.hidden) + qw + 2 * kv + int64_t(c.n_heads) * c.head_dim + 2 * int64_t(c.intermediate) +
              (c.has_kind(LayerKind::Jet) ? vd * (5 + j.conv_size) + j.generator_hidden + 4 * j.num_heads : 0));
}

KvLayout CudaModel::layout(int il) const {
  const DeviceLayer& d = layers_[size_t(il)];
  KvLayout L;
  L.k = d.kpool.data();
  L.v = d.vpool.data();
  L.row = int64_t(config_.n_kv_heads) * config_.head_dim;
  L.dtype = kv_dtype_;
  if (d.kind == LayerKind::Attn) {
    L.page_table = page_table_.data();
    L.page_size = options_.page_size;
    L.pages_per_seq = pages_per_seq_;
  } else {
    L.ring = config_.swa_window;
  }
  return L;
}

void CudaModel::reserve_pages(int slot, int64_t n_tokens) {
  const int64_t need = (n_tokens + options_.page_size - 1) / options_.page_size;
  std::vector<int>& pages = slot_pages_[size_t(slot)];
  if (int64_t(pages.size()) >= need) return;
  if (need - int64_t(pages.size()) > int64_t(free_pages_.size()))
    throw_error("kv cache", "out of KV pages: slot " + std::to_string(slot) + " needs " +
                                std::to_string(need - int64_t(pages.size())) + " more, " +
                                std::to_string(free_pages_.size()) + " free of " + std::to_string(kv_pages_));
  const int64_t first = int64_t(pages.size());
  while (int64_t(pages.size()) < need) {
    pages.push_back(free_pages_.back());
    free_pages_.pop_back();
    page_table_host_[size_t(slot * pages_per_seq_ + int64_t(pages.size()) - 1)] = pages.back();
  }
  const size_t at = size_t(slot * pages_per_seq_ + first);
  JETLM_CUDA_CHECK(cudaMemcpyAsync(page_table_.data() + at, page_table_host_.data() + at,
                                   sizeof(int32_t) * size_t(need - first), cudaMemcpyHostToDevice, stream_));
}

void CudaModel::reset_slot(int slot) {
  check_slot(slot, "reset_slot");
  set_stream(stream_);
  std::vector<int>& pages = slot_pages_[size_t(slot)];
  for (auto it = pages.rbegin(); it != pages.rend(); ++it) free_pages_.push_back(*it);
  pages.clear();
  n_past_[size_t(slot)] = 0;
  const JetConfig& j = config_.jet;
  for (DeviceLayer& d : layers_) {
    if (d.kind != LayerKind::Jet) continue;
    const int64_t state = int64_t(j.num_heads) * j.head_k_dim * j.head_v_dim;
    const int64_t conv = int64_t(j.conv_size - 1) * j.value_dim();
    fill_bytes(d.state.data() + slot * state, 0, size_t(state) * 4);
    if (conv > 0) fill_bytes(d.conv.data() + slot * conv, 0, size_t(conv) * 4);
  }
}

void CudaModel::fill_synthetic(int slot, int64_t n_tokens, uint64_t seed) {
  check_slot(slot, "fill_synthetic");
  if (n_tokens < 0 || n_tokens >= options_.context_limit)
    throw_error("fill_synthetic", "n_tokens must be in 0.." + std::to_string(options_.context_limit - 1));
  reset_slot(slot);
  reserve_pages(slot, n_tokens);
  const JetConfig& j = config_.jet;
  const int64_t kv_row = int64_t(config_.n_kv_heads) * config_.head_dim;
  for (size_t il = 0; il < layers_.size(); ++il) {
    DeviceLayer& d = layers_[il];
    const uint64_t s = seed * 1000003u + il * 7919u + uint64_t(slot);
    if (d.kind == LayerKind::Jet) {
      const int64_t state = int64_t(j.num_heads) * j.head_k_dim * j.head_v_dim;
      const int64_t conv = int64_t(j.conv_size - 1) * j.value_dim();
      fill_uniform(d.state.data() + slot * state, state, 0.01f, s);
      fill_uniform(d.conv.data() + slot * conv, conv, 1.0f, s + 1);
    } else if (d.kind == LayerKind::Swa) {
      const int64_t ring = int64_t(config_.swa_window) * kv_row;
      const size_t at = size_t(slot * ring) * dtype_size(kv_dtype_);
      fill_uniform(d.kpool.data() + at, kv_dtype_, ring, 1.0f, s);
      fill_uniform(d.vpool.data() + at, kv_dtype_, ring, 1.0f, s + 1);
    } else {
      // Runs of consecutive pages in one launch each (a long context holds thousands of pages).
      const std::vector<int>& pages = slot_pages_[size_t(slot)];
      const int64_t n = options_.page_size * kv_row;
      for (size_t i = 0; i < pages.size();) {
        size_t j = i + 1;
        while (j < pages.size() && pages[j] == pages[j - 1] + 1) ++j;
        const int64_t first = pages[i], count = int64_t(j - i);
        const size_t at = size_t(first * n) * dtype_size(kv_dtype_);
        fill_uniform(d.kpool.data() + at, kv_dtype_, count * n, 1.0f, s + uint64_t(first) * 2);
        fill_uniform(d.vpool.data() + at, kv_dtype_, count * n, 1.0f, s + uint64_t(first) * 2 + 1);
        i = j;
      }
    }
  }
  n_past_[size_t(slot)] = n_tokens;
  synchronize();
}

// ---- prefill: one slot, T tokens at positions pos0.. (ids already in scratch_->ids) ---------------
void CudaModel::forward_chunk(int slot, int64_t pos0, int64_t T, bool want_logits) {
  const ModelConfig& c = config_;
  Scratch& s = *scratch_;
  const int64_t D = c.hidden, Hq = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim, kv_row = Hkv * hd;
  const JetConfig& j = c.jet;
  embedding(s.ids.data(), T, embed_, s.x.data());
  // The first GEMM input of a layer (the normed hidden state), rounded by the norm that made it.
  RoundedInput xn_rounded;
  for (int il = 0; il < c.n_layers; ++il) {
    DeviceLayer& d = layers_[size_t(il)];
    // The input norm of layers after the first is fused into the previous layer's residual add.
    if (il == 0) rmsnorm(s.x.data(), T, D, d.input_norm, c.rms_eps, s.normed.data());
    const float* xn = s.normed.data();
    if (d.kind == LayerKind::Jet) {
      const int64_t H = j.num_heads, dk = j.head_k_dim, dv = j.head_v_dim, key_dim = H * dk, value_dim = H * dv;
      const int64_t K = j.conv_size;
      const bool stacked = stacked_prefill_ && d.in_proj.data && gemm_rounds_input(T, d.in_proj);
      // Seven projections of xn: one rounding of it (the first's type) for all.
      const RoundedInput xr = round_shared(xn, T, D, stacked ? d.in_proj : d.jq, s.rounded.data(), xn_rounded);
      if (stacked) {
        // One GEMM over the stacked projections (q, k, v, g, b, a, w1), then one kernel for the
        // activations, the q/k norms, the gates and the copies out.
        const float q_scale = 1.0f / std::sqrt(float(dk));
        const bool half = half_gemm_out_;
        if (half) matmul_half_out(xn, xr.data, T, d.in_proj, s.fused.data());
        else matmul_rounded(xr.data, T, d.in_proj, nullptr, s.fused.data());
        jet_decode_prep(s.fused.data(), half ? gemm_half_type(d.in_proj) : DType::F32, T, H, dk, dv,
                        j.generator_hidden, q_scale, d.A_log, d.dt_bias, s.q.data(), s.k.data(), s.u.data(),
                        s.gate.data(), s.hidden.data(), s.beta.data(), s.g.data());
      } else {
        project(xr, T, d.jq, nullptr, s.q.data());
        project(xr, T, d.jk, nullptr, s.k.data());
        silu(s.q.data(), T * key_dim);
        silu(s.k.data(), T * key_dim);
        project(xr, T, d.jv, nullptr, s.u.data());
        project(xr, T, d.w1, nullptr, s.hidden.data());
        silu(s.hidden.data(), T * j.generator_hidden);
      }
      // The conv generator keeps float32 outputs: a half-precision output with its bias measured
      // slower (the bias cannot go into cuBLASLt's epilogue there).
      matmul(s.hidden.data(), T, d.w2, d.w2_bias, s.kernels.data());
      float* conv_state = d.conv.data() + slot * (K - 1) * value_dim;
      dconv(s.u.data(), s.kernels.data(), T, value_dim, K, conv_state, s.vv.data());
      if (!stacked) {
        project(xr, T, d.jb, nullptr, s.b_raw.data());
        project(xr, T, d.ja, nullptr, s.a_raw.data());
        jet_gates(s.b_raw.data(), s.a_raw.data(), d.A_log, d.dt_bias, T, H, s.beta.data(), s.g.data());
        l2norm_rows(s.q.data(), T * H, dk, 1.0f / std::sqrt(float(dk)));
        l2norm_rows(s.k.data(), T * H, dk, 1.0f);
      }
      float* state = d.state.data() + slot * H * dk * dv;
      if (T == 1)
        gdn_recurrent(s.q.data(), s.k.data(), s.vv.data(), s.g.data(), s.beta.data(), T, H, dk, dv, state, s.o.data());
      else if (tensor_cores_)
        gdn_chunked_tc(s.q.data(), s.k.data(), s.vv.data(), s.g.data(), s.beta.data(), T, H, dk, dv, state, s.o.data());
      else
        gdn_chunked(s.q.data(), s.k.data(), s.vv.data(), s.g.data(), s.beta.data(), T, H, dk, dv, state, s.o.data());
      if (!stacked) project(xr, T, d.jg, nullptr, s.gate.data());
      // The norm also rounds o for the output projection (s.rounded's input copy is used up).
      const RoundedInput o_rounded = rounded_for(round_in_norms_, T, d.jo, s.rounded.data());
      gated_rmsnorm(s.o.data(), s.gate.data(), T, H, dv, d.o_norm, j.norm_eps, const_cast<void*>(o_rounded.data),
                    rounded_type(o_rounded));
      if (o_rounded.data) matmul_rounded(o_rounded.data, T, d.jo, nullptr, s.branch.data());
      else matmul(s.o.data(), T, d.jo, nullptr, s.branch.data());
    } else {
      const RoundedInput xr = round_shared(xn, T, D, d.q, s.rounded.data(), xn_rounded);
      project(xr, T, d.q, d.q_bias, s.q.data());
      project(xr, T, d.k, d.k_bias, s.k.data());
      project(xr, T, d.v, d.v_bias, s.v.data());
      if (c.qk_norm) {
        rmsnorm(s.q.data(), T * Hq, hd, d.q_norm, c.rms_eps, s.q.data());
        rmsnorm(s.k.data(), T * Hkv, hd, d.k_norm, c.rms_eps, s.k.data());
      }
      rope(s.q.data(), T, Hq, hd, pos0, c.rope_theta);
      rope(s.k.data(), T, Hkv, hd, pos0, c.rope_theta);
      const KvLayout L = layout(il);
      const bool tc = tensor_cores_ && hd <= kAttentionTcMaxHeadDim && T >= kTensorCoreMinRows;
      if (d.kind == LayerKind::Attn && tc) {
        kv_append(L, s.k.data(), s.v.data(), T, nullptr, slot, nullptr, pos0);
        attention_prefill_tc(s.q.data(), L, slot, T, pos0 + T, Hq, Hkv, hd, pos0, 0, 0, s.attn.data());
      } else if (d.kind == LayerKind::Attn) {
        kv_append(L, s.k.data(), s.v.data(), T, nullptr, slot, nullptr, pos0);
        kv_gather(L, slot, 0, pos0 + T, s.kc.data(), s.vc.data());
        attention(s.q.data(), s.kc.data(), s.vc.data(), T, pos0 + T, Hq, Hkv, hd, pos0, 0, 0, s.attn.data());
      } else {
        // SWA: the ring's previous keys (before they are overwritten), then this chunk's.
        const int64_t W = c.swa_window;
        const int64_t prev = std::min<int64_t>(pos0, W - 1);
        kv_gather(L, slot, pos0 - prev, prev, s.kc.data(), s.vc.data());
        copy_device(s.kc.data() + prev * kv_row, s.k.data(), size_t(T * kv_row) * 4);
        copy_device(s.vc.data() + prev * kv_row, s.v.data(), size_t(T * kv_row) * 4);
        if (tc) {
          const KvLayout gathered{s.kc.data(), s.vc.data(), kv_row, nullptr, 0, 0, prev + T};
          attention_prefill_tc(s.q.data(), gathered, 0, T, prev + T, Hq, Hkv, hd, pos0, pos0 - prev, W,
                               s.attn.data());
        } else {
          attention(s.q.data(), s.kc.data(), s.vc.data(), T, prev + T, Hq, Hkv, hd, pos0, pos0 - prev, W,
                    s.attn.data());
        }
        kv_append(L, s.k.data(), s.v.data(), T, nullptr, slot, nullptr, pos0);
      }
      matmul(s.attn.data(), T, d.o, nullptr, s.branch.data());
    }
    if (d.gate_up.data && gemm_rounds_input(T, d.gate_up) && gemm_rounds_input(T, d.down) &&
        (d.gate_up.dtype == DType::F16) == (d.down.dtype == DType::F16)) {
      // The norm writes the gate/up GEMM's rounded input, the SwiGLU pass the down projection's.
      const RoundedInput mlp_in = rounded_for(round_in_norms_, T, d.gate_up, s.normed_rounded.data());
      add_rmsnorm(s.x.data(), s.branch.data(), T, D, d.post_norm, c.rms_eps, s.normed.data(),
                  const_cast<void*>(mlp_in.data), rounded_type(mlp_in));
      matmul_swiglu(s.normed.data(), T, d.gate_up, nullptr, mlp_in.data, s.rounded.data(), half_gemm_out_);
      matmul_rounded(s.rounded.data(), T, d.down, nullptr, s.branch.data());
    } else {
      add_rmsnorm(s.x.data(), s.branch.data(), T, D, d.post_norm, c.rms_eps, s.normed.data());
      mlp_gate_up(d, s.normed.data(), T);
      matmul(s.mlp_gate.data(), T, d.down, nullptr, s.branch.data());
    }
    if (il + 1 < c.n_layers) {
      // The next layer's first GEMM input, rounded for its first matrix.
      const DeviceLayer& next = layers_[size_t(il) + 1];
      const DeviceMatrix& first = next.kind != LayerKind::Jet ? next.q
                                  : (stacked_prefill_ && next.in_proj.data) ? next.in_proj
                                                                            : next.jq;
      xn_rounded = rounded_for(round_in_norms_, T, first, s.normed_rounded.data());
      add_rmsnorm(s.x.data(), s.branch.data(), T, D, next.input_norm, c.rms_eps, s.normed.data(),
                  const_cast<void*>(xn_rounded.data), rounded_type(xn_rounded));
    } else {
      add(s.x.data(), s.branch.data(), T * D);
    }
  }
  if (want_logits) {
    rmsnorm(s.x.data() + (T - 1) * D, 1, D, final_norm_, c.rms_eps, s.normed.data());
    matmul(s.normed.data(), 1, lm_head_, nullptr, s.logits.data());
  }
}

void CudaModel::prefill(int slot, const int32_t* ids, int64_t T, float* last_logits) {
  check_slot(slot, "prefill");
  JETLM_ASSERT(T > 0);
  const ModelConfig& c = config_;
  for (int64_t t = 0; t < T; ++t)
    if (ids[t] < 0 || ids[t] >= c.vocab)
      throw_error("ids", "token id " + std::to_string(ids[t]) + " at position " + std::to_string(t) +
                             " is out of range, expected 0.." + std::to_string(c.vocab - 1));
  const int64_t pos0 = n_past_[size_t(slot)];
  if (pos0 + T > options_.context_limit)
    throw_error("prefill", "slot " + std::to_string(slot) + " would hold " + std::to_string(pos0 + T) +
                               " tokens, more than the context limit " + std::to_string(options_.context_limit));
  set_stream(stream_);
  if (c.has_kind(LayerKind::Attn)) reserve_pages(slot, pos0 + T);
  for (int64_t done = 0; done < T;) {
    const int64_t n = std::min(options_.prefill_chunk, T - done);
    JETLM_CUDA_CHECK(cudaMemcpyAsync(scratch_->ids.data(), ids + done, sizeof(int32_t) * size_t(n),
                                     cudaMemcpyHostToDevice, stream_));
    forward_chunk(slot, pos0 + done, n, done + n == T && last_logits != nullptr);
    // The pageable-memory copy above returns once `ids` is read; the next chunk reuses the buffer
    // only after this chunk's kernels (same stream), so no extra synchronisation is needed.
    done += n;
  }
  n_past_[size_t(slot)] = pos0 + T;
  if (last_logits) copy_to_host(last_logits, scratch_->logits.data(), sizeof(float) * size_t(c.vocab));
  else synchronize();
}

// mlp_gate [R, I] = silu(x gate^T) * (x up^T).
void CudaModel::mlp_gate_up(const DeviceLayer& d, const float* x, int64_t R) {
  Scratch& s = *scratch_;
  if (d.gate_up.data) return matmul_swiglu(x, R, d.gate_up, s.mlp_gate.data());
  matmul(x, R, d.gate, nullptr, s.mlp_gate.data());
  matmul(x, R, d.up, nullptr, s.mlp_up.data());
  silu_mul(s.mlp_gate.data(), s.mlp_up.data(), R * config_.intermediate, s.mlp_gate.data());
}

// ---- decode: B slots, one token each --------------------------------------------------------------
void CudaModel::decode_layers(int64_t B) {
  const ModelConfig& c = config_;
  Scratch& s = *scratch_;
  const int64_t D = c.hidden, Hq = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim;
  const JetConfig& j = c.jet;
  const int32_t* slots = s.slots.data();
  // Batch 1 (fuse): no norm or residual-add kernels. A layer's input norm runs inside its input
  // GEMVs (matmul_decode with a GemvInputNorm over x), the output projections and the MLP's down
  // projection add into x in their epilogues, and the JetBlock's gated output norm runs inside
  // its output projection.
  const bool fuse = B == 1 && fuse_decode_ && gemv_fuses_norm(D) &&
                    (j.num_heads == 0 || gemv_fuses_norm(j.num_heads * j.head_v_dim));
  const GemvInputNorm final_norm{final_norm_, c.rms_eps, D, nullptr};
  embedding(s.ids.data(), B, embed_, s.x.data());
  for (int il = 0; il < c.n_layers; ++il) {
    DeviceLayer& d = layers_[size_t(il)];
    // Unfused, the input norm of layers after the first is part of the previous layer's residual add.
    if (!fuse && il == 0) rmsnorm(s.x.data(), B, D, d.input_norm, c.rms_eps, s.normed.data());
    const GemvInputNorm input_norm{d.input_norm, c.rms_eps, D, nullptr};
    const auto in_matmul = [&](const DeviceMatrix& W, const float* bias, float* y) {
      if (fuse) matmul_decode(s.x.data(), W, bias, y, &input_norm, false);
      else matmul(s.normed.data(), B, W, bias, y);
    };
    if (d.kind == LayerKind::Jet) {
      const int64_t H = j.num_heads, dk = j.head_k_dim, dv = j.head_v_dim, key_dim = H * dk;
      const float q_scale = 1.0f / std::sqrt(float(dk));
      if (fuse && fuse_jet_step_ && d.in_proj.data && jet_decode_step_fits(dk, dv)) {
        // Batch 1, four launches: the stacked projection (silu on q, k and the generator's hidden
        // in its epilogue), the conv generator reading the hidden in place, the whole delta-rule
        // step with its gated norm, the output projection adding into x.
        const int64_t hidden_at = 2 * key_dim + 2 * H * dv + 2 * H;
        matmul_decode(s.x.data(), d.in_proj, nullptr, s.fused.data(), &input_norm, false,
                      GemvSiluRows{2 * key_dim, hidden_at});
        matmul(s.fused.data() + hidden_at, B, d.w2, d.w2_bias, s.kernels.data());
        jet_decode_step(s.fused.data(), B, H, dk, dv, d.in_proj.rows, q_scale, d.A_log, d.dt_bias, s.kernels.data(),
                        j.conv_size, d.conv.data(), d.state.data(), slots, d.o_norm, j.norm_eps, s.o.data());
        matmul_decode(s.o.data(), d.jo, nullptr, s.x.data(), nullptr, true);
      } else {
        if (d.in_proj.data) {
          // One GEMV over the stacked projections, then one kernel for the activations, norms and gates.
          in_matmul(d.in_proj, nullptr, s.fused.data());
          jet_decode_prep(s.fused.data(), B, H, dk, dv, j.generator_hidden, q_scale, d.A_log,
                          d.dt_bias, s.q.data(), s.k.data(), s.u.data(), s.gate.data(), s.hidden.data(), s.beta.data(),
                          s.g.data());
        } else {
          in_matmul(d.jq, nullptr, s.q.data());
          in_matmul(d.jk, nullptr, s.k.data());
          in_matmul(d.jv, nullptr, s.u.data());
          in_matmul(d.w1, nullptr, s.hidden.data());
          in_matmul(d.jb, nullptr, s.b_raw.data());
          in_matmul(d.ja, nullptr, s.a_raw.data());
          in_matmul(d.jg, nullptr, s.gate.data());
          silu(s.q.data(), B * key_dim);
          silu(s.k.data(), B * key_dim);
          silu(s.hidden.data(), B * j.generator_hidden);
          jet_gates(s.b_raw.data(), s.a_raw.data(), d.A_log, d.dt_bias, B, H, s.beta.data(), s.g.data());
          l2norm_rows(s.q.data(), B * H, dk, 1.0f / std::sqrt(float(dk)));
          l2norm_rows(s.k.data(), B * H, dk, 1.0f);
        }
        matmul(s.hidden.data(), B, d.w2, d.w2_bias, s.kernels.data());
        // Batch 1: the gated output norm in the delta-rule step where the head fits one block,
        // else in the output projection's blocks.
        const bool norm_in_step = fuse && fuse_gdn_norm_ && gdn_step_norm_fits(dk, dv);
        if (norm_in_step)
          gdn_step_dconv_norm(s.q.data(), s.k.data(), s.u.data(), s.kernels.data(), j.conv_size, d.conv.data(),
                              s.g.data(), s.beta.data(), B, H, dk, dv, d.state.data(), slots, s.gate.data(), d.o_norm,
                              j.norm_eps, s.o.data());
        else
          gdn_step_dconv(s.q.data(), s.k.data(), s.u.data(), s.kernels.data(), j.conv_size, d.conv.data(), s.g.data(),
                         s.beta.data(), B, H, dk, dv, d.state.data(), slots, s.o.data());
        if (norm_in_step) {
          matmul_decode(s.o.data(), d.jo, nullptr, s.x.data(), nullptr, true);
        } else if (fuse) {
          const GemvInputNorm o_norm{d.o_norm, j.norm_eps, dv, s.gate.data()};
          matmul_decode(s.o.data(), d.jo, nullptr, s.x.data(), &o_norm, true);
        } else {
          gated_rmsnorm(s.o.data(), s.gate.data(), B, H, dv, d.o_norm, j.norm_eps);
          matmul(s.o.data(), B, d.jo, nullptr, s.branch.data());
        }
      }
    } else {
      const KvLayout L = layout(il);
      const bool fused_qkv = d.qkv.data && (d.qkv_bias != nullptr || (!d.q_bias && !d.k_bias && !d.v_bias));
      if (fused_qkv && !c.qk_norm && fuse_qkv_rope_) {
        // One kernel from the fused projection's rows: q roped, k roped and v into the cache.
        in_matmul(d.qkv, d.qkv_bias, s.fused.data());
        qkv_rope_append(s.fused.data(), B, Hq, Hkv, hd, s.positions.data(), c.rope_theta, L, slots, s.q.data());
      } else {
        if (fused_qkv) {
          in_matmul(d.qkv, d.qkv_bias, s.fused.data());
          split_columns(s.fused.data(), B, d.qkv.rows,
                        {{s.q.data(), Hq * hd}, {s.k.data(), Hkv * hd}, {s.v.data(), Hkv * hd}});
        } else {
          in_matmul(d.q, d.q_bias, s.q.data());
          in_matmul(d.k, d.k_bias, s.k.data());
          in_matmul(d.v, d.v_bias, s.v.data());
        }
        if (c.qk_norm) {
          rmsnorm(s.q.data(), B * Hq, hd, d.q_norm, c.rms_eps, s.q.data());
          rmsnorm(s.k.data(), B * Hkv, hd, d.k_norm, c.rms_eps, s.k.data());
        }
        rope_at(s.q.data(), B, Hq, hd, s.positions.data(), c.rope_theta);
        rope_at(s.k.data(), B, Hkv, hd, s.positions.data(), c.rope_theta);
        kv_append(L, s.k.data(), s.v.data(), B, slots, 0, s.positions.data(), 0);
      }
      const int64_t window = d.kind == LayerKind::Swa ? c.swa_window : 0;
      attention_decode(s.q.data(), L, slots, s.lengths.data(), B, Hq, Hkv, hd, window, options_.context_limit,
                       decode_splits(B, Hkv, options_.context_limit, decode_attention_on_tensor_cores(kv_dtype_, hd)),
                       s.attn.data());
      if (fuse) matmul_decode(s.attn.data(), d.o, nullptr, s.x.data(), nullptr, true);
      else matmul(s.attn.data(), B, d.o, nullptr, s.branch.data());
    }
    if (fuse) {
      const GemvInputNorm post_norm{d.post_norm, c.rms_eps, D, nullptr};
      if (d.gate_up.data) {
        matmul_swiglu_decode(s.x.data(), d.gate_up, s.mlp_gate.data(), post_norm);
      } else {
        matmul_decode(s.x.data(), d.gate, nullptr, s.mlp_gate.data(), &post_norm, false);
        matmul_decode(s.x.data(), d.up, nullptr, s.mlp_up.data(), &post_norm, false);
        silu_mul(s.mlp_gate.data(), s.mlp_up.data(), c.intermediate, s.mlp_gate.data());
      }
      matmul_decode(s.mlp_gate.data(), d.down, nullptr, s.x.data(), nullptr, true);
      continue;
    }
    add_rmsnorm(s.x.data(), s.branch.data(), B, D, d.post_norm, c.rms_eps, s.normed.data());
    mlp_gate_up(d, s.normed.data(), B);
    matmul(s.mlp_gate.data(), B, d.down, nullptr, s.branch.data());
    if (il + 1 < c.n_layers)
      add_rmsnorm(s.x.data(), s.branch.data(), B, D, layers_[size_t(il) + 1].input_norm, c.rms_eps, s.normed.data());
    else
      add(s.x.data(), s.branch.data(), B * D);
  }
  if (fuse) return matmul_decode(s.x.data(), lm_head_, nullptr, s.logits.data(), &final_norm, false);
  rmsnorm(s.x.data(), B, D, final_norm_, c.rms_eps, s.normed.data());
  matmul(s.normed.data(), B, lm_head_, nullptr, s.logits.data());
}

void CudaModel::run_decode(int64_t B) {
  if (!options_.cuda_graphs) return decode_layers(B);
  std::unique_ptr<Graph>& graph = graphs_[B];
  if (graph && graph->generation == detail::workspace_generation()) {
    JETLM_CUDA_CHECK(cudaGraphLaunch(graph->exec, stream_));
    return;
  }
  // First step at this batch size (or after a workspace moved): run it directly, which also sizes
  // every workspace, then capture the same launches for the next steps.
  decode_layers(B);
  graph = std::make_unique<Graph>();
  cudaGraph_t g = nullptr;
  JETLM_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
  try {
    // Captured, not executed: the step above already advanced the caches.
    decode_layers(B);
  } catch (...) {
    cudaStreamEndCapture(stream_, &g);
    if (g) cudaGraphDestroy(g);
    graph.reset();
    throw;
  }
  JETLM_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
  const cudaError_t err = cudaGraphInstantiate(&graph->exec, g, 0);
  cudaGraphDestroy(g);
  JETLM_CUDA_CHECK(err);
  graph->generation = detail::workspace_generation();
}

void CudaModel::decode(const int* slots, const int32_t* ids, int64_t B, float* logits) {
  decode_sample(slots, ids, B, nullptr, nullptr);
  if (logits)
    copy_to_host(logits, scratch_->logits.data(), sizeof(float) * size_t(B) * size_t(config_.vocab));
}

void CudaModel::decode_sample(const int* slots, const int32_t* ids, int64_t B, const DeviceSampling* params,
                              int32_t* tokens) {
  const ModelConfig& c = config_;
  if (B < 1 || B > options_.max_slots)
    throw_error("decode", "batch of " + std::to_string(B) + " sequences, expected 1.." +
                              std::to_string(options_.max_slots));
  std::vector<uint8_t> seen(size_t(options_.max_slots), 0);
  for (int64_t b = 0; b < B; ++b) {
    check_slot(slots[b], "decode");
    if (seen[size_t(slots[b])]++) throw_error("decode", "slot " + std::to_string(slots[b]) + " appears twice in the batch");
    if (ids[b] < 0 || ids[b] >= c.vocab)
      throw_error("ids", "token id " + std::to_string(ids[b]) + " for slot " + std::to_string(slots[b]) +
                             " is out of range, expected 0.." + std::to_string(c.vocab - 1));
    if (n_past_[size_t(slots[b])] + 1 > options_.context_limit)
      throw_error("decode", "slot " + std::to_string(slots[b]) + " is full (context limit " +
                                std::to_string(options_.context_limit) + ")");
  }
  set_stream(stream_);
  if (c.has_kind(LayerKind::Attn))
    for (int64_t b = 0; b < B; ++b) reserve_pages(slots[b], n_past_[size_t(slots[b])] + 1);
  Scratch& s = *scratch_;
  int32_t* h = s.host_i32;
  const int64_t S = options_.max_slots;
  // The pinned staging may still feed the previous step's copies: wait for the stream first.
  JETLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (int64_t b = 0; b < B; ++b) {
    h[b] = ids[b];
    h[S + b] = slots[b];
    h[2 * S + b] = int32_t(n_past_[size_t(slots[b])]);
    h[3 * S + b] = int32_t(n_past_[size_t(slots[b])] + 1);
  }
  JETLM_CUDA_CHECK(cudaMemcpyAsync(s.ids.data(), h, sizeof(int32_t) * size_t(B), cudaMemcpyHostToDevice, stream_));
  JETLM_CUDA_CHECK(cudaMemcpyAsync(s.slots.data(), h + S, sizeof(int32_t) * size_t(B), cudaMemcpyHostToDevice, stream_));
  JETLM_CUDA_CHECK(
      cudaMemcpyAsync(s.positions.data(), h + 2 * S, sizeof(int32_t) * size_t(B), cudaMemcpyHostToDevice, stream_));
  JETLM_CUDA_CHECK(
      cudaMemcpyAsync(s.lengths.data(), h + 3 * S, sizeof(int32_t) * size_t(B), cudaMemcpyHostToDevice, stream_));
  run_decode(B);
  for (int64_t b = 0; b < B; ++b) ++n_past_[size_t(slots[b])];
  if (params) {
    std::copy(params, params + B, s.host_sampling);
    JETLM_CUDA_CHECK(cudaMemcpyAsync(s.sampling.data(), s.host_sampling, sizeof(DeviceSampling) * size_t(B),
                                     cudaMemcpyHostToDevice, stream_));
    const bool all_greedy =
        std::all_of(params, params + B, [](const DeviceSampling& sp) { return sp.temperature <= 0.0f; });
    sample(s.logits.data(), B, c.vocab, s.sampling.data(), s.tokens.data(), all_greedy);
    copy_to_host(tokens, s.tokens.data(), sizeof(int32_t) * size_t(B));
  }
}

}  // namespace jetlm::cuda
