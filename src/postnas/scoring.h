// Scoring the synthetic tasks (src/data/tasks.h) with a libtorch model: the data::Scorer behind
// `jetlm postnas eval`, the trainer's periodic task evaluation and the PostNAS search objectives.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/tasks.h"
#include "postnas/model.h"

namespace jetlm::postnas {

// Teacher-forced scoring of token sequences with `model` on `device` (bf16 autocast when asked).
// Sequences of one batch are right-padded to a common length (causal: padding after a token cannot
// change its logits). Runs under NoGradGuard.
data::Scorer make_scorer(HybridModelImpl& model, torch::Device device, bool autocast);
// The same for any forward: ids [B, T] (int64, on `device`) -> logits [B, T, V].
using LogitsFn = std::function<torch::Tensor(const torch::Tensor&)>;
data::Scorer make_scorer(LogitsFn forward, torch::Device device, bool autocast);

// One task configuration of an evaluation: a task at one context length.
struct TaskSpec {
  data::TaskKind kind;
  int64_t context_tokens = 256;
  std::string label() const;  // e.g. "kv-retrieval@256"
};

// "kv-retrieval@256,passkey@512,arithmetic" -> specs (a task without @ gets default_context).
// Throws jetlm::Error naming `where` for an unknown task or a bad length.
std::vector<TaskSpec> parse_task_specs(const std::string& text, int64_t default_context, const std::string& where);

// The parameters the trainer and the evaluator use for a task at a context length: kv-retrieval
// asks 4 keys among 3-letter keys with 2-digit values... (docs/postnas.md lists them).
data::TaskParams task_params(const TaskSpec& spec);

struct TaskResult {
  TaskSpec spec;
  data::TaskMetrics metrics;
};

// n examples per spec (seeded; cloze needs `heldout`), scored with `scorer`.
std::vector<TaskResult> evaluate_tasks(const std::vector<TaskSpec>& specs, const Tokenizer& tokenizer,
                                       const data::Scorer& scorer, int64_t n, uint64_t seed,
                                       const data::TokenDataset* heldout, int64_t batch_size = 16);

// The cheap layer-importance score (SPEC.md section 4, "attention mass times gradient magnitude"),
// an alternative to the super-network search that needs only the teacher: for each attention layer
// l, the attention attribution sum_{h,i,j} |A^l_hij * dL/dA^l_hij| averaged over the examples, where
// A^l are the layer's softmax probabilities and L the teacher's loss on the answer tokens (cloze: on
// the correct choice). One forward + backward per batch in float32 (T x T probabilities in memory).
// Returns one score per layer (0 for layers that are not attention). Parameters stay untouched.
std::vector<double> attention_attribution_importance(HybridModelImpl& model, data::TaskKind kind,
                                                     const std::vector<data::TaskExample>& examples,
                                                     torch::Device device, int64_t batch_size = 8,
                                                     std::vector<double>* signed_sum = nullptr);
// (signed_sum, when given, receives the same sums without the absolute value: per layer the
// derivative of the mean loss with respect to a scale on that layer's attention output.)

}  // namespace jetlm::postnas
