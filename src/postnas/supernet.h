// PostNAS step 1 (SPEC.md section 4): the once-for-all super-network and the search for where full
// attention must stay.
//
// The super-network is the teacher (a full-attention model dir) plus, for every layer, a linear-
// attention mixer of one block type (GLA by default). A placement says, per layer, which path runs:
// the teacher's attention (full) or the linear mixer. Everything of the teacher (embeddings, norms,
// MLPs, attention) is frozen; only the linear mixers train, by distillation from the teacher (KL of
// the teacher's next-token distribution to the sub-network's, optionally plus the MSE of the final
// hidden states) on sub-networks sampled each step.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "postnas/checkpoint.h"
#include "postnas/model.h"

namespace jetlm::postnas {

// The linear mixers' sizes (ModelConfig::jet); 0 = from the teacher: heads = attention heads,
// dk = dv = head_dim (so q/k/v/o start as copies of the attention's, GQA heads repeated).
struct LinearBlockSizes {
  int heads = 0, dk = 0, dv = 0, conv = 4;
};

// Copies the attention's q/k/v/o projections into a linear mixer where the head size matches: the
// first heads of q, of k and v with the KV heads repeated over their query groups, and of o's
// columns; other parameters are left as they are.
void init_mixer_from_attention(MixerImpl& mixer, AttentionImpl& attn, const ModelConfig& teacher_config);

class SuperNetImpl : public torch::nn::Module {
 public:
  SuperNetImpl(const ModelSpec& teacher, BlockKind linear_kind, LinearBlockSizes sizes = {});
  // ids [B, T] -> logits [B, T, V] (float32) of the sub-network: full[i] = layer i keeps attention.
  torch::Tensor forward(const torch::Tensor& ids, const std::vector<bool>& full);
  // The same, returning the final-normed hidden states [B, T, D] too (when hidden is not null).
  // swa (optional, one entry per layer): these layers run the teacher's attention restricted to a
  // sliding window of swa_window tokens (SWA) instead of the linear path.
  torch::Tensor forward_hidden(const torch::Tensor& ids, const std::vector<bool>& full, torch::Tensor* hidden,
                               const std::vector<bool>* swa = nullptr, int64_t swa_window = 0);
  // Copies the attention's q/k/v/o projections (KV heads repeated over their query groups) into the
  // linear mixers where the shapes allow (GLA, GDN and JetBlock q/k/v/o_proj), so training starts
  // from "attention without softmax" rather than from noise.
  void init_linear_from_attention();
  int64_t n_layers() const { return int64_t(linear->size()); }
  const ModelConfig& linear_config() const { return linear_config_; }
  BlockKind linear_kind() const { return linear_kind_; }
  std::vector<torch::Tensor> linear_parameters() const;

  HybridModel teacher{nullptr};
  torch::nn::ModuleList linear{nullptr};

 private:
  ModelConfig linear_config_;
  BlockKind linear_kind_;
};
TORCH_MODULE(SuperNet);

// A super-network dir: supernet.json (teacher dir, block type, sizes, training state) + linear.pt.
void save_supernet(SuperNetImpl& net, const std::string& teacher_dir, const std::string& dir,
                   const nlohmann::ordered_json& extra = {});
SuperNet load_supernet(const std::string& dir, nlohmann::ordered_json* meta = nullptr);

// "1,4,7" (layer indices) <-> placement of n layers. Throws jetlm::Error naming `where`.
std::vector<bool> parse_placement(const std::string& text, int64_t n_layers, const std::string& where);
std::string placement_string(const std::vector<bool>& full);  // "1,4,7" ("-" when none)
// k layers spread evenly: layer floor((j + 0.5) * n / k) for j < k.
std::vector<bool> uniform_placement(int64_t n_layers, int64_t k);

struct SuperNetOptions {
  std::string teacher;  // teacher model dir (full attention)
  std::string block = "gla";
  LinearBlockSizes sizes;
  std::string data, out, device = "cpu";
  int64_t steps = 1000, batch = 16, seq = 512;
  double lr = 1e-3, min_lr = 1e-4, warmup = 50, weight_decay = 0.0, clip = 1.0;
  // Each step keeps k ~ uniform{0..max_full} layers full attention (chosen uniformly); -1 = half.
  int64_t max_full = -1;
  double hidden_mse = 0.0;  // weight of the final-hidden-state MSE next to the KL
  double task_mix = 0.3;    // synthetic task rows in the distillation data (as pretrain)
  std::string tasks = "kv-retrieval,passkey,arithmetic";
  int64_t log_every = 10, save_every = 100;
  uint64_t seed = 1;
  bool resume = true;
  int64_t stop_after = -1;  // stop with a checkpoint after this step (resume later)
  int threads = 0;
  std::function<void(const std::string&)> log;
};

struct SuperNetResult {
  int64_t first_step = 0, last_step = 0;
  double first_loss = 0, last_loss = 0, tokens_per_s = 0;
};

// Trains OUT/supernet (checkpoints in OUT/checkpoint, loss in OUT/supernet_loss.csv; resumable).
SuperNetResult train_supernet(const SuperNetOptions& options);

struct SearchOptions {
  std::string supernet, data, out, device = "cpu";
  std::string objectives = "kv-retrieval@256,cloze@256,arithmetic";
  int64_t examples = 64, beam = 2, max_k = 3, batch = 16;
  // Then, per objective, a beam search for up to swa_k SWA layers (the teacher's attention with a
  // window of swa_window tokens) next to that objective's best max_k full layers; 0 = none.
  int64_t swa_k = 0, swa_window = 64;
  uint64_t seed = 11;
  std::function<void(const std::string&)> log;
};

// Per objective: the importance map (each layer alone kept full) next to the teacher's cheap
// attention-attribution score (attention_attribution_importance), a beam search for the best k
// full-attention layers (k = 1..max_k), and for comparison the uniform placement, the top-k layers
// by attribution, no full layer and the teacher. Writes OUT/importance.csv, OUT/beam.csv,
// OUT/comparison.csv and the heatmaps OUT/importance.png (all tasks) and OUT/importance_<task>.png;
// with swa_k > 0 also OUT/swa.csv.
void search_placements(const SearchOptions& options);

}  // namespace jetlm::postnas
