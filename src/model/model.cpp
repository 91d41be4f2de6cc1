// The decoder: embedding -> per layer (pre-norm mixer by layer_types, pre-norm SwiGLU MLP) ->
// final norm -> LM head. Shared by every family; the families differ in config and tensors.
#include "jetlm/model.h"

#include <filesystem>
#include <vector>

#include "backend/ops.h"
#include "io/safetensors.h"
#include "model/layers.h"

namespace jetlm {

Model::~Model() = default;

WeightFormat parse_weight_format(const std::string& text, const std::string& flag) {
  if (text == "as-stored" || text == "stored") return WeightFormat::AsStored;
  if (text == "q8") return WeightFormat::Q8;
  throw_error(flag, "unknown weight format '" + text + "', expected as-stored or q8");
}

std::unique_ptr<Model> Model::load(const std::string& model_dir, WeightFormat format, WeightPlacement placement) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(model_dir)) throw_error(model_dir, "not a directory (expected a model directory with config.json and *.safetensors)");
  const std::string config_path = (fs::path(model_dir) / "config.json").string();
  if (!fs::exists(config_path)) throw_error(config_path, "missing (every model directory needs a config.json)");
  std::unique_ptr<Model> model(new Model());
  model->config_ = load_model_config(model_dir);
  model->checkpoint_ = std::make_unique<Checkpoint>(model_dir);
  model->weights_ = bind_weights(model->config_, *model->checkpoint_);
  if (format == WeightFormat::Q8) {
    // Quantizing reads the mapped weights once. Mapped: the few matrices kept as stored stay mapped;
    // Memory: everything goes on 2 MiB pages and the files are unmapped.
    const bool in_memory = placement == WeightPlacement::Memory;
    quantize_weights_q8(model->config_, model->weights_, model->owned_, in_memory);
    if (in_memory) model->checkpoint_.reset();
  } else if (placement == WeightPlacement::Memory) {
    copy_weights_to_memory(model->config_, model->weights_, model->owned_);
    model->checkpoint_.reset();
  }
  return model;
}

std::unique_ptr<Model> Model::random(const ModelConfig& config, DType dtype, uint64_t seed,
                                     WeightPlacement placement) {
  std::unique_ptr<Model> model(new Model());
  model->config_ = config;
  const bool huge_pages = placement == WeightPlacement::Memory;
  if (dtype == DType::I8) {
    WeightStorage bf16_storage;  // freed once quantized: the matrices kept in bf16 are copied out
    model->weights_ = random_weights(model->config_, DType::BF16, seed, bf16_storage);
    quantize_weights_q8(model->config_, model->weights_, model->owned_, /*in_memory=*/huge_pages, /*copy_kept=*/true);
  } else {
    model->weights_ = random_weights(model->config_, dtype, seed, model->owned_, huge_pages);
  }
  return model;
}

int64_t Model::weight_bytes() const {
  int64_t n = weights_.embed.bytes();
  if (!config_.tie_embeddings) n += weights_.lm_head.bytes();
  n += int64_t(weights_.final_norm.size()) * 4;
  for (const LayerWeights& L : weights_.layers) {
    n += L.gate.bytes() + L.up.bytes() + L.down.bytes();
    n += int64_t(L.input_norm.size() + L.post_norm.size()) * 4;
    const AttnWeights& a = L.attn;
    n += a.q.bytes() + a.k.bytes() + a.v.bytes() + a.o.bytes();
    n += int64_t(a.q_bias.size() + a.k_bias.size() + a.v_bias.size() + a.q_norm.size() + a.k_norm.size()) * 4;
    const JetWeights& j = L.jet;
    n += j.q.bytes() + j.k.bytes() + j.v.bytes() + j.b.bytes() + j.a.bytes() + j.g.bytes() +
         j.o.bytes() + j.w1.bytes() + j.w2.bytes();
    n += int64_t(j.w2_bias.size() + j.A_log.size() + j.dt_bias.size() + j.o_norm.size()) * 4;
  }
  return n;
}

void Model::forward(const int32_t* ids, int64_t T, HybridCache& cache, float* logits,
                    const ForwardOptions& options) const {
  const ModelConfig& c = config_;
  JETLM_ASSERT(T > 0);
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= c.vocab)
      throw_error("ids", "token id " + std::to_string(ids[t]) + " at position " +
                             std::to_string(cache.n_past() + t) + " is out of range, expected 0.." +
                             std::to_string(c.vocab - 1));
  }
  const int64_t D = c.hidden, pos0 = cache.n_past();
  std::vector<float> x(size_t(T * D)), normed(size_t(T * D)), branch(size_t(T * D));
  cpu::embedding(ids, T, weights_.embed, x.data());
  for (int il = 0; il < c.n_layers; ++il) {
    const LayerWeights& L = weights_.layers[size_t(il)];
    LayerCache& layer_cache = cache.layer(il);
    cpu::rmsnorm(x.data(), T, D, L.input_norm.data(), c.rms_eps, normed.data());
    if (L.kind == LayerKind::Jet)
      layers::jet(c, L.jet, layer_cache, normed.data(), T, options.recurrent_jet, branch.data());
    else
      layers::attention(c, L.kind, L.attn, layer_cache, pos0, normed.data(), T, branch.data());
    cpu::add(x.data(), branch.data(), T * D);
    cpu::rmsnorm(x.data(), T, D, L.post_norm.data(), c.rms_eps, normed.data());
    layers::mlp(c, L, normed.data(), T, branch.data());
    cpu::add(x.data(), branch.data(), T * D);
    if (options.observer) options.observer("hidden", il, x.data(), T, D);
  }
  cache.advance(T);
  cpu::rmsnorm(x.data(), T, D, weights_.final_norm.data(), c.rms_eps, normed.data());
  if (options.observer) options.observer("final_norm", -1, normed.data(), T, D);
  if (logits == nullptr) return;
  if (options.all_logits)
    cpu::matmul(normed.data(), T, weights_.lm_head, nullptr, logits);
  else
    cpu::matmul(normed.data() + (T - 1) * D, 1, weights_.lm_head, nullptr, logits);
}

void Model::decode_batch(const int32_t* ids, int64_t B, HybridCache* const* caches, float* logits) const {
  const ModelConfig& c = config_;
  JETLM_ASSERT(B > 0);
  for (int64_t b = 0; b < B; ++b) {
    JETLM_ASSERT(caches[b] != nullptr);
    for (int64_t other = 0; other < b; ++other)
      JETLM_ASSERT(caches[other] != caches[b], "decode_batch: a cache appears twice in the batch");
    if (ids[b] < 0 || ids[b] >= c.vocab)
      throw_error("ids", "token id " + std::to_string(ids[b]) + " of batch row " + std::to_string(b) +
                             " is out of range, expected 0.." + std::to_string(c.vocab - 1));
  }
  const int64_t D = c.hidden;
  std::vector<int64_t> pos(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) pos[size_t(b)] = caches[b]->n_past();
  std::vector<LayerCache*> layer_caches(static_cast<size_t>(B));
  std::vector<float> x(size_t(B * D)), normed(size_t(B * D)), branch(size_t(B * D));
  cpu::embedding(ids, B, weights_.embed, x.data());  // x [B, D]
  for (int il = 0; il < c.n_layers; ++il) {
    const LayerWeights& L = weights_.layers[size_t(il)];
    for (int64_t b = 0; b < B; ++b) layer_caches[size_t(b)] = &caches[b]->layer(il);
    cpu::rmsnorm(x.data(), B, D, L.input_norm.data(), c.rms_eps, normed.data());
    if (L.kind == LayerKind::Jet)
      layers::jet_batch(c, L.jet, layer_caches.data(), normed.data(), B, branch.data());
    else
      layers::attention_batch(c, L.kind, L.attn, layer_caches.data(), pos.data(), normed.data(), B,
                              branch.data());
    cpu::add(x.data(), branch.data(), B * D);
    cpu::rmsnorm(x.data(), B, D, L.post_norm.data(), c.rms_eps, normed.data());
    layers::mlp(c, L, normed.data(), B, branch.data());
    cpu::add(x.data(), branch.data(), B * D);
  }
  for (int64_t b = 0; b < B; ++b) caches[b]->advance(1);
  cpu::rmsnorm(x.data(), B, D, weights_.final_norm.data(), c.rms_eps, normed.data());
  if (logits != nullptr) cpu::matmul(normed.data(), B, weights_.lm_head, nullptr, logits);
}

}  // namespace jetlm
