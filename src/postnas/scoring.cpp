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

}  // namespace jetlm::postnas
