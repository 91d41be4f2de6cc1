#include "postnas/scoring.h"

#include <ATen/autocast_mode.h>

#include <algorithm>

#include "core/error.h"
#include "postnas/ops.h"

namespace jetlm::postnas {

namespace {

// bf16 autocast on CUDA while alive (the trainer's forward precision).
class ScopedAutocast {
 public:
  explicit ScopedAutocast(bool on) : on_(on) {
    if (!on_) return;
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::increment_nesting();
  }
  ~ScopedAutocast() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCUDA, false);
  }

 private:
  bool on_;
};

}  // namespace

data::Scorer make_scorer(HybridModelImpl& model, torch::Device device, bool autocast) {
  return make_scorer([&model](const torch::Tensor& ids) { return model.forward(ids); }, device, autocast);
}

data::Scorer make_scorer(LogitsFn forward, torch::Device device, bool autocast) {
  return [forward = std::move(forward), device, autocast](const std::vector<data::ScoreRequest>& requests,
                                    std::vector<data::ScoreResult>& results) {
    torch::NoGradGuard no_grad;
    results.assign(requests.size(), {});
    if (requests.empty()) return;
    int64_t T = 0;
    for (const auto& r : requests) {
      if (r.answer_start < 1 || r.answer_start > int64_t(r.tokens.size()))
        throw_error("scorer", "answer_start " + std::to_string(r.answer_start) + " outside 1.." +
                                  std::to_string(r.tokens.size()));
      T = std::max<int64_t>(T, int64_t(r.tokens.size()));
    }
    const int64_t B = int64_t(requests.size());
    std::vector<int64_t> ids(size_t(B * T), 0);
    for (int64_t b = 0; b < B; ++b)
      std::copy(requests[b].tokens.begin(), requests[b].tokens.end(), ids.begin() + b * T);
    torch::Tensor logits;
    {
      ScopedAutocast guard(autocast && device.is_cuda());
      logits = forward(torch::from_blob(ids.data(), {B, T}, torch::kLong).to(device));  // [B, T, V]
    }
    // Only the positions that predict answer tokens: t - 1 for t in [answer_start, len).
    for (int64_t b = 0; b < B; ++b) {
      const auto& r = requests[b];
      const int64_t n = int64_t(r.tokens.size()) - r.answer_start;
      auto& out = results[b];
      if (n == 0) continue;
      const torch::Tensor lp =
          torch::log_softmax(logits[b].narrow(0, r.answer_start - 1, n).to(torch::kFloat), -1);  // [n, V]
      const torch::Tensor target =
          torch::from_blob(const_cast<int32_t*>(r.tokens.data() + r.answer_start), {n}, torch::kInt)
              .to(torch::kLong)
              .to(device);
      const torch::Tensor picked = lp.gather(1, target.unsqueeze(1)).squeeze(1).cpu();
      const torch::Tensor is_max = (lp.argmax(1) == target).to(torch::kUInt8).cpu();
      out.logprobs.assign(picked.data_ptr<float>(), picked.data_ptr<float>() + n);
      out.is_argmax.assign(is_max.data_ptr<uint8_t>(), is_max.data_ptr<uint8_t>() + n);
    }
  };
}

std::string TaskSpec::label() const { return data::task_name(kind) + "@" + std::to_string(context_tokens); }

std::vector<TaskSpec> parse_task_specs(const std::string& text, int64_t default_context, const std::string& where) {
  std::vector<TaskSpec> specs;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    pos = comma + 1;
    if (item.empty()) continue;
    const size_t at = item.find('@');
    TaskSpec spec;
    try {
      spec.kind = data::parse_task_kind(item.substr(0, at));
    } catch (const Error& e) {
      throw_error(where, std::string(e.what()));
    }
    spec.context_tokens = default_context;
    if (at != std::string::npos) {
      const std::string n = item.substr(at + 1);
      char* end = nullptr;
      const long long v = std::strtoll(n.c_str(), &end, 10);
      if (n.empty() || *end != '\0' || v < 16 || v > 1'000'000)
        throw_error(where, "'" + item + "': expected TASK@LENGTH with a length of 16..1000000 tokens");
      spec.context_tokens = v;
    }
    specs.push_back(spec);
  }
  if (specs.empty()) throw_error(where, "no task given");
  return specs;
}

data::TaskParams task_params(const TaskSpec& spec) {
  data::TaskParams p;
  p.context_tokens = spec.context_tokens;
  switch (spec.kind) {
    case data::TaskKind::KeyValueRetrieval:
      p.num_pairs = 4;  // the floor; pairs fill context_tokens
      p.num_queries = 2;
      p.key_length = 3;
      p.value_digits = 3;
      break;
    case data::TaskKind::Passkey:
      p.passkey_digits = 5;
      p.depth = -1;  // random depth
      break;
    case data::TaskKind::Cloze:
      p.num_choices = 4;
      p.cloze_continuation_tokens = 8;
      break;
    case data::TaskKind::Arithmetic:
      // Two operands below 100: a small model can learn + and -, and * is the hard part.
      p.max_operand = 99;
      p.arithmetic_terms = 2;
      break;
  }
  return p;
}

std::vector<TaskResult> evaluate_tasks(const std::vector<TaskSpec>& specs, const Tokenizer& tokenizer,
                                       const data::Scorer& scorer, int64_t n, uint64_t seed,
                                       const data::TokenDataset* heldout, int64_t batch_size) {
  std::vector<TaskResult> out;
  for (const TaskSpec& spec : specs) {
    const auto examples = data::make_examples(spec.kind, tokenizer, task_params(spec), n,
                                              seed + uint64_t(spec.context_tokens) * 7919u, heldout);
    out.push_back({spec, data::evaluate(spec.kind, examples, scorer, batch_size)});
  }
  return out;
}

std::vector<double> attention_attribution_importance(HybridModelImpl& model, data::TaskKind kind,
                                                     const std::vector<data::TaskExample>& examples,
                                                     torch::Device device, int64_t batch_size,
                                                     std::vector<double>* signed_sum) {
  JETLM_ASSERT(batch_size > 0);
  const int64_t L = int64_t(model.model->layers->size());
  std::vector<AttentionImpl*> attention(size_t(L), nullptr);
  for (int64_t i = 0; i < L; ++i)
    attention[size_t(i)] = dynamic_cast<AttentionImpl*>(
        model.model->layers[size_t(i)]->as<DecoderLayerImpl>()->self_attn.get());
  std::vector<double> score(size_t(L), 0.0);
  if (signed_sum) signed_sum->assign(size_t(L), 0.0);
  if (examples.empty()) return score;
  // The teacher is frozen; let the graph exist by making the embedding table require grad for the
  // duration (its gradient is discarded).
  torch::Tensor& table = model.model->embed_tokens->weight;
  const bool table_grad = table.requires_grad();
  table.set_requires_grad(true);
  std::vector<torch::Tensor> probs;
  for (AttentionImpl* a : attention)
    if (a) a->capture_probs = &probs;
  struct Restore {
    std::vector<AttentionImpl*>& attention;
    torch::Tensor& table;
    bool grad;
    ~Restore() {
      for (AttentionImpl* a : attention)
        if (a) a->capture_probs = nullptr;
      table.mutable_grad() = torch::Tensor();
      table.set_requires_grad(grad);
    }
  } restore{attention, table, table_grad};

  for (size_t first = 0; first < examples.size(); first += size_t(batch_size)) {
    const size_t last = std::min(examples.size(), first + size_t(batch_size));
    const int64_t B = int64_t(last - first);
    std::vector<std::vector<int32_t>> rows;
    std::vector<int64_t> answer_start;
    int64_t T = 0;
    for (size_t e = first; e < last; ++e) {
      const auto& ex = examples[e];
      const auto& answer = kind == data::TaskKind::Cloze ? ex.choices.at(size_t(ex.correct)) : ex.answer;
      if (ex.prompt.empty() || answer.empty()) throw_error("importance", "an example without prompt or answer");
      std::vector<int32_t> row = ex.prompt;
      row.insert(row.end(), answer.begin(), answer.end());
      answer_start.push_back(int64_t(ex.prompt.size()));
      T = std::max<int64_t>(T, int64_t(row.size()));
      rows.push_back(std::move(row));
    }
    // Right-padded ids and a mask of the positions that predict answer tokens (t - 1 for t >= start).
    std::vector<int64_t> ids(size_t(B * T), 0), targets(size_t(B * T), 0);
    std::vector<float> mask(size_t(B * T), 0.f);
    for (int64_t b = 0; b < B; ++b) {
      const auto& row = rows[size_t(b)];
      std::copy(row.begin(), row.end(), ids.begin() + b * T);
      const int64_t n_answer = int64_t(row.size()) - answer_start[size_t(b)];
      for (int64_t t = answer_start[size_t(b)]; t < int64_t(row.size()); ++t) {
        targets[size_t(b * T + t - 1)] = row[size_t(t)];
        mask[size_t(b * T + t - 1)] = 1.f / float(n_answer);
      }
    }
    const torch::Tensor id_tensor = torch::from_blob(ids.data(), {B, T}, torch::kLong).to(device);
    const torch::Tensor target_tensor = torch::from_blob(targets.data(), {B, T}, torch::kLong).to(device);
    probs.clear();
    const torch::Tensor logits = model.forward(id_tensor);
    const torch::Tensor logp = torch::log_softmax(at_least_f32(logits), -1);  // [B, T, V]
    const torch::Tensor mask_tensor = torch::from_blob(mask.data(), {B, T}, torch::kFloat).to(device, logp.scalar_type());
    // Sum over examples of the mean answer NLL: each example's attribution is its own.
    const torch::Tensor nll = -(logp.gather(2, target_tensor.unsqueeze(2)).squeeze(2) * mask_tensor).sum();
    nll.backward();
    JETLM_ASSERT(probs.size() == size_t(std::count_if(attention.begin(), attention.end(), [](auto* a) { return a; })));
    size_t p = 0;
    for (int64_t i = 0; i < L; ++i) {
      if (!attention[size_t(i)]) continue;
      const torch::Tensor& A = probs[p++];  // [B, Hq, T, T]
      JETLM_ASSERT(A.grad().defined(), "importance: no gradient reached the attention probabilities");
      const torch::Tensor attribution = A.detach() * A.grad();
      score[size_t(i)] += attribution.abs().sum().item<double>();
      if (signed_sum) (*signed_sum)[size_t(i)] += attribution.sum().item<double>();
    }
    probs.clear();
  }
  for (double& s : score) s /= double(examples.size());
  if (signed_sum)
    for (double& s : *signed_sum) s /= double(examples.size());
  return score;
}

}  // namespace jetlm::postnas
