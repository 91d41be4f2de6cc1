#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "core/error.h"
#include "jetlm/sampling.h"

namespace jetlm {

void validate(const SamplingParams& p) {
  auto bad = [](const char* name, const std::string& what) { throw_error(name, what); };
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) bad("temperature", "expected >= 0");
  if (p.top_k < 0) bad("top_k", "expected >= 0 (0 turns it off)");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) bad("top_p", "expected in (0, 1]");
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) bad("min_p", "expected in [0, 1]");
  if (!(p.repeat_penalty > 0.0f) || !std::isfinite(p.repeat_penalty)) bad("repeat_penalty", "expected > 0");
  if (!std::isfinite(p.presence_penalty) || std::fabs(p.presence_penalty) > 2.0f)
    bad("presence_penalty", "expected in [-2, 2]");
  if (!std::isfinite(p.frequency_penalty) || std::fabs(p.frequency_penalty) > 2.0f)
    bad("frequency_penalty", "expected in [-2, 2]");
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) { validate(params); }

namespace {

void apply_penalties(const SamplingParams& p, float* logits, int64_t vocab,
                     std::span<const int32_t> history) {
  if (p.repeat_penalty != 1.0f) {
    const size_t n = p.repeat_last_n < 0 ? history.size() : std::min(history.size(), size_t(p.repeat_last_n));
    std::vector<bool> seen(static_cast<size_t>(vocab), false);
    for (size_t i = history.size() - n; i < history.size(); ++i) {
      const int32_t t = history[i];
      if (t < 0 || t >= vocab || seen[size_t(t)]) continue;
      seen[size_t(t)] = true;
      logits[t] = logits[t] > 0 ? logits[t] / p.repeat_penalty : logits[t] * p.repeat_penalty;
    }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    std::unordered_map<int32_t, int> counts;
    for (int32_t t : history)
      if (t >= 0 && t < vocab) counts[t]++;
    for (const auto& [t, count] : counts)
      logits[t] -= p.presence_penalty + p.frequency_penalty * float(count);
  }
}

}  // namespace

std::vector<double> Sampler::distribution(float* logits, int64_t vocab, std::span<const int32_t> history) {
  const SamplingParams& p = params_;
  apply_penalties(p, logits, vocab, history);
  std::vector<double> probs(static_cast<size_t>(vocab), 0.0);
  if (p.temperature == 0.0f) {
    probs[size_t(std::max_element(logits, logits + vocab) - logits)] = 1.0;
    return probs;
  }
  // Candidates sorted by logit, highest first (stable: ties keep the lower id first).
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  size_t keep = size_t(vocab);
  if (p.top_k > 0 && size_t(p.top_k) < keep) {
    keep = size_t(p.top_k);
    std::partial_sort(order.begin(), order.begin() + keep, order.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  } else {
    std::sort(order.begin(), order.end(),
              [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  }
  const double max_logit = double(logits[order[0]]) / p.temperature;
  std::vector<double> weights(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i) {
    weights[i] = std::exp(double(logits[order[i]]) / p.temperature - max_logit);
    total += weights[i];
  }
  if (p.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p (at least one token)
    double cumulative = 0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      cumulative += weights[i] / total;
      if (cumulative >= double(p.top_p)) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
  }
  if (p.min_p > 0.0f) {  // weights[0] is the most probable token
    const double threshold = double(p.min_p) * weights[0];
    size_t cut = 1;
    while (cut < keep && weights[cut] >= threshold) ++cut;
    keep = cut;
  }
  total = 0;
  for (size_t i = 0; i < keep; ++i) total += weights[i];
  for (size_t i = 0; i < keep; ++i) probs[size_t(order[i])] = weights[i] / total;
  return probs;
}

int32_t Sampler::sample(float* logits, int64_t vocab, std::span<const int32_t> history) {
  if (params_.temperature == 0.0f) {
    apply_penalties(params_, logits, vocab, history);
    return int32_t(std::max_element(logits, logits + vocab) - logits);
  }
  const std::vector<double> probs = distribution(logits, vocab, history);
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  double cumulative = 0;
  int32_t last_nonzero = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (probs[size_t(i)] == 0.0) continue;
    last_nonzero = int32_t(i);
    cumulative += probs[size_t(i)];
    if (u < cumulative) return int32_t(i);
  }
  return last_nonzero;  // rounding left u above the total
}

}  // namespace jetlm
