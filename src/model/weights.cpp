#include "model/weights.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>

#include "core/error.h"
#include "backend/quantize.h"
#include "io/safetensors.h"

namespace jetlm {

namespace {

// Where a tensor goes once bound: a matrix used as stored, or a float32 vector.
struct TensorSlot {
  TensorSpec spec;
  Matrix* matrix = nullptr;
  std::vector<float>* vector = nullptr;
  // What random initialisation suits it (benchmarks only).
  enum class Init { Linear, Norm, Bias, ALog, DtBias } init = Init::Linear;
};

// Walks every tensor the config implies, in layer order. The one place the tensor list lives.
void visit_tensors(const ModelConfig& c, ModelWeights& w,
                   const std::function<void(const TensorSlot&)>& visit) {
  using Init = TensorSlot::Init;
  const int64_t D = c.hidden;
  auto matrix = [&](std::string name, int64_t rows, int64_t cols, Matrix* m) {
    visit({{std::move(name), {rows, cols}}, m, nullptr, Init::Linear});
  };
  auto vec = [&](std::string name, int64_t n, std::vector<float>* v, Init init) {
    visit({{std::move(name), {n}}, nullptr, v, init});
  };
  w.layers.resize(size_t(c.n_layers));
  matrix("model.embed_tokens.weight", c.vocab, D, &w.embed);
  for (int il = 0; il < c.n_layers; ++il) {
    LayerWeights& L = w.layers[size_t(il)];
    L.kind = c.layer_types[size_t(il)];
    const std::string p = "model.layers." + std::to_string(il) + ".";
    vec(p + "input_layernorm.weight", D, &L.input_norm, Init::Norm);
    if (L.kind == LayerKind::Attn || L.kind == LayerKind::Swa) {
      const int64_t q_dim = int64_t(c.n_heads) * c.head_dim, kv_dim = int64_t(c.n_kv_heads) * c.head_dim;
      AttnWeights& A = L.attn;
      matrix(p + "self_attn.q_proj.weight", q_dim, D, &A.q);
      matrix(p + "self_attn.k_proj.weight", kv_dim, D, &A.k);
      matrix(p + "self_attn.v_proj.weight", kv_dim, D, &A.v);
      if (c.attn_bias) {
        vec(p + "self_attn.q_proj.bias", q_dim, &A.q_bias, Init::Bias);
        vec(p + "self_attn.k_proj.bias", kv_dim, &A.k_bias, Init::Bias);
        vec(p + "self_attn.v_proj.bias", kv_dim, &A.v_bias, Init::Bias);
      }
      matrix(p + "self_attn.o_proj.weight", D, q_dim, &A.o);
      if (c.qk_norm) {
        vec(p + "self_attn.q_norm.weight", c.head_dim, &A.q_norm, Init::Norm);
        vec(p + "self_attn.k_norm.weight", c.head_dim, &A.k_norm, Init::Norm);
      }
    } else {
      const JetConfig& j = c.jet;
      JetWeights& J = L.jet;
      const int64_t kd = j.key_dim(), vd = j.value_dim();
      matrix(p + "self_attn.q_proj.weight", kd, D, &J.q);
      matrix(p + "self_attn.k_proj.weight", kd, D, &J.k);
      matrix(p + "self_attn.v_proj.weight", vd, D, &J.v);
      matrix(p + "self_attn.b_proj.weight", j.num_heads, D, &J.b);
      matrix(p + "self_attn.a_proj.weight", j.num_heads, D, &J.a);
      matrix(p + "self_attn.g_proj.weight", vd, D, &J.g);
      matrix(p + "self_attn.o_proj.weight", D, vd, &J.o);
      vec(p + "self_attn.A_log", j.num_heads, &J.A_log, Init::ALog);
      vec(p + "self_attn.dt_bias", j.num_heads, &J.dt_bias, Init::DtBias);
      vec(p + "self_attn.o_norm.weight", j.head_v_dim, &J.o_norm, Init::Norm);
      const std::string gen = p + "self_attn.dynamic_conv1d.kernel_generator.";
      matrix(gen + "w1.weight", j.generator_hidden, D, &J.w1);
      matrix(gen + "w2.weight", vd * j.conv_size, j.generator_hidden, &J.w2);
      vec(gen + "w2.bias", vd * j.conv_size, &J.w2_bias, Init::Bias);
    }
    vec(p + "post_attention_layernorm.weight", D, &L.post_norm, Init::Norm);
    matrix(p + "mlp.gate_proj.weight", c.intermediate, D, &L.gate);
    matrix(p + "mlp.up_proj.weight", c.intermediate, D, &L.up);
    matrix(p + "mlp.down_proj.weight", D, c.intermediate, &L.down);
  }
  vec("model.norm.weight", D, &w.final_norm, TensorSlot::Init::Norm);
  if (!c.tie_embeddings) matrix("lm_head.weight", c.vocab, D, &w.lm_head);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

float element_as_f32(const void* data, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::F32: return static_cast<const float*>(data)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(data)[i]);
    default: return 0.0f;
  }
}

// splitmix64: a small, fast, reproducible generator for random weights.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
};

}  // namespace

std::vector<TensorSpec> expected_tensors(const ModelConfig& config) {
  std::vector<TensorSpec> out;
  ModelWeights scratch;
  visit_tensors(config, scratch, [&](const TensorSlot& slot) { out.push_back(slot.spec); });
  return out;
}

int64_t parameter_count(const ModelConfig& config) {
  int64_t n = 0;
  for (const TensorSpec& t : expected_tensors(config)) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    n += numel;
  }
  return n;
}

ModelWeights bind_weights(const ModelConfig& config, const Checkpoint& checkpoint) {
  ModelWeights w;
  std::set<std::string> used;
  visit_tensors(config, w, [&](const TensorSlot& slot) {
    const TensorRef* ref = checkpoint.find(slot.spec.name);
    if (ref == nullptr)
      throw_error(checkpoint.dir(), "tensor '" + slot.spec.name + "' is missing (expected shape " +
                                        shape_text(slot.spec.shape) + " for this config)");
    const std::string where = ref->file + ": tensor '" + slot.spec.name + "'";
    if (ref->shape != slot.spec.shape)
      throw_error(where, "has shape " + shape_text(ref->shape) + ", expected " +
                             shape_text(slot.spec.shape) + " from config.json");
    const bool q8 = ref->dtype == DType::I8 && slot.matrix != nullptr;
    if (ref->dtype != DType::F32 && ref->dtype != DType::BF16 && ref->dtype != DType::F16 && !q8)
      throw_error(where, std::string("has dtype ") + dtype_name(ref->dtype) + ", expected BF16, F16 or F32" +
                             (slot.matrix != nullptr ? " (or I8 with a q8 scale tensor)" : ""));
    used.insert(slot.spec.name);
    if (q8) {
      // A jetlm q8 checkpoint: int8 values plus "<name>_scale", f16 [rows, blocks of 32 columns].
      const std::string scale_name = slot.spec.name + "_scale";
      const TensorRef* scale = checkpoint.find(scale_name);
      const std::vector<int64_t> scale_shape{slot.spec.shape[0], q8_blocks(slot.spec.shape[1])};
      if (scale == nullptr)
        throw_error(where, "is I8 but '" + scale_name + "' (F16 " + shape_text(scale_shape) +
                               ", one scale per 32 columns) is missing");
      if (scale->dtype != DType::F16 || scale->shape != scale_shape)
        throw_error(scale->file + ": tensor '" + scale_name + "'",
                    std::string("has dtype ") + dtype_name(scale->dtype) + " shape " + shape_text(scale->shape) +
                        ", expected F16 " + shape_text(scale_shape));
      used.insert(scale_name);
      *slot.matrix = Matrix{ref->data, DType::I8, slot.spec.shape[0], slot.spec.shape[1],
                            static_cast<const uint16_t*>(scale->data)};
    } else if (slot.matrix != nullptr) {
      *slot.matrix = Matrix{ref->data, ref->dtype, slot.spec.shape[0], slot.spec.shape[1]};
    } else {
      slot.vector->resize(size_t(ref->numel()));
      for (int64_t i = 0; i < ref->numel(); ++i)
        (*slot.vector)[size_t(i)] = element_as_f32(ref->data, ref->dtype, i);
    }
  });
  if (config.tie_embeddings) w.lm_head = w.embed;
  for (const std::string& name : checkpoint.names()) {
    if (used.count(name)) continue;
    if (config.tie_embeddings && name == "lm_head.weight") continue;  // redundant copy of a tied head
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // derived buffer
    const TensorRef* ref = checkpoint.find(name);
    throw_error(ref->file, "unexpected tensor '" + name + "': not part of a " + config.model_type +
                               " model with this config.json (wrong layer_types or model_type?)");
  }
  return w;
}

ModelWeights random_weights(const ModelConfig& config, DType dtype, uint64_t seed, WeightStorage& storage,
                            bool huge_pages) {
  JETLM_ASSERT(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16);
  ModelWeights w;
  uint64_t tensor_index = 0;
  visit_tensors(config, w, [&](const TensorSlot& slot) {
    const uint64_t tensor_seed = seed * 1000003ull + (tensor_index++);
    using Init = TensorSlot::Init;
    if (slot.matrix != nullptr) {
      const int64_t rows = slot.spec.shape[0], cols = slot.spec.shape[1];
      const int64_t n = rows * cols;
      storage.push_back(allocate_host_bytes(size_t(n) * dtype_size(dtype), huge_pages));
      uint8_t* bytes = storage.back().get();
      const float amplitude = std::sqrt(3.0f / float(cols));  // uniform with variance 1/cols
      constexpr int64_t kBlock = 1 << 16;
#pragma omp parallel for schedule(static)
      for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
        Rng rng{tensor_seed * 0x100000001b3ull + uint64_t(b0)};
        const int64_t b1 = std::min(n, b0 + kBlock);
        for (int64_t i = b0; i < b1; ++i) {
          const float x = (2.0f * rng.uniform() - 1.0f) * amplitude;
          if (dtype == DType::F32) reinterpret_cast<float*>(bytes)[i] = x;
          else if (dtype == DType::BF16) reinterpret_cast<uint16_t*>(bytes)[i] = f32_to_bf16(x);
          else reinterpret_cast<uint16_t*>(bytes)[i] = f32_to_f16(x);
        }
      }
      *slot.matrix = Matrix{bytes, dtype, rows, cols};
    } else {
      Rng rng{tensor_seed};
      std::vector<float>& v = *slot.vector;
      v.resize(size_t(slot.spec.shape[0]));
      for (float& x : v) {
        const float u = rng.uniform();
        switch (slot.init) {
          case Init::Norm: x = 1.0f + 0.1f * (2.0f * u - 1.0f); break;
          case Init::Bias: x = 0.1f * (2.0f * u - 1.0f); break;
          case Init::ALog: x = std::log(1.0f + 15.0f * u); break;
          case Init::DtBias: x = std::log(std::expm1(0.001f + 0.099f * u)); break;
          case Init::Linear: x = 0.0f; break;
        }
      }
    }
  });
  if (config.tie_embeddings) w.lm_head = w.embed;
  return w;
}

}  // namespace jetlm

namespace jetlm {

void save_weights(const ModelConfig& config, ModelWeights& weights, DType vector_dtype, const std::string& path,
                  bool overwrite) {
  JETLM_ASSERT(vector_dtype == DType::F32 || vector_dtype == DType::BF16 || vector_dtype == DType::F16);
  std::vector<TensorToWrite> tensors;
  std::vector<std::vector<uint8_t>> converted;  // vectors in `vector_dtype`
  const void* embed_data = weights.embed.data;
  visit_tensors(config, weights, [&](const TensorSlot& slot) {
    TensorToWrite t{slot.spec.name, vector_dtype, slot.spec.shape, nullptr};
    if (slot.matrix != nullptr) {
      if (slot.spec.name == "lm_head.weight" && slot.matrix->data == embed_data && config.tie_embeddings) return;
      t.dtype = slot.matrix->dtype;
      t.data = slot.matrix->data;
      if (slot.matrix->dtype == DType::I8) {
        tensors.push_back(std::move(t));
        t = TensorToWrite{slot.spec.name + "_scale", DType::F16,
                          {slot.matrix->rows, q8_blocks(slot.matrix->cols)}, slot.matrix->scales};
      }
    } else {
      const std::vector<float>& v = *slot.vector;
      converted.emplace_back(v.size() * dtype_size(vector_dtype));
      uint8_t* out = converted.back().data();
      for (size_t i = 0; i < v.size(); ++i) {
        if (vector_dtype == DType::F32) std::memcpy(out + 4 * i, &v[i], 4);
        else {
          const uint16_t h = vector_dtype == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
          std::memcpy(out + 2 * i, &h, 2);
        }
      }
      t.data = out;
    }
    tensors.push_back(std::move(t));
  });
  write_safetensors(path, tensors, {{"format", "pt"}, {"generator", "jetlm"}}, overwrite);
}

}  // namespace jetlm

namespace jetlm {

void quantize_weights_q8(const ModelConfig& config, ModelWeights& weights, WeightStorage& storage,
                         bool in_memory, bool copy_kept) {
  const void* embed_before = weights.embed.data;
  visit_tensors(config, weights, [&](const TensorSlot& slot) {
    if (slot.matrix == nullptr || slot.matrix->empty()) return;
    if (slot.spec.name == "lm_head.weight" && slot.matrix->data == embed_before) return;  // tied: below
    // The JetBlock gate projections (beta and the log-decay, [H, D]: a few KB) feed exp() and
    // sigmoid(), where 8-bit errors compound over the recurrence; they stay as stored. So do
    // matrices that already are q8.
    const bool keep = slot.spec.name.ends_with(".self_attn.a_proj.weight") ||
                      slot.spec.name.ends_with(".self_attn.b_proj.weight") || slot.matrix->dtype == DType::I8;
    if (!keep) *slot.matrix = quantize_matrix_q8(*slot.matrix, storage, in_memory);
    else if (in_memory || copy_kept) copy_matrix_to_memory(*slot.matrix, storage);
  });
  if (config.tie_embeddings) weights.lm_head = weights.embed;
}

}  // namespace jetlm

namespace jetlm {

void copy_matrix_to_memory(Matrix& m, WeightStorage& storage) {
  // Copies `bytes` bytes with both threads (one thread's memcpy reads ~half the machine's bandwidth).
  auto copy = [&](const void* from, size_t bytes) -> const void* {
    storage.push_back(allocate_host_bytes(bytes, /*huge_pages=*/true));
    uint8_t* to = storage.back().get();
    constexpr size_t kChunk = size_t(1) << 22;
    const int64_t chunks = int64_t((bytes + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      const size_t at = size_t(c) * kChunk;
      std::memcpy(to + at, static_cast<const uint8_t*>(from) + at, std::min(kChunk, bytes - at));
    }
    return to;
  };
  m.data = copy(m.data, size_t(m.rows * m.cols) * dtype_size(m.dtype));
  if (m.scales != nullptr)
    m.scales = static_cast<const uint16_t*>(copy(m.scales, size_t(m.rows * q8_blocks(m.cols)) * 2));
}

void copy_weights_to_memory(const ModelConfig& config, ModelWeights& weights, WeightStorage& storage) {
  const void* embed_before = weights.embed.data;
  visit_tensors(config, weights, [&](const TensorSlot& slot) {
    if (slot.matrix == nullptr || slot.matrix->empty()) return;
    if (slot.spec.name == "lm_head.weight" && slot.matrix->data == embed_before) return;  // tied: below
    copy_matrix_to_memory(*slot.matrix, storage);
  });
  if (config.tie_embeddings) weights.lm_head = weights.embed;
}

}  // namespace jetlm
