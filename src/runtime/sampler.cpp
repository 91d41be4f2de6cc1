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
  const double max_logit = double(*std::max_element(logits, logits + vocab)) / p.temperature;
  auto weight = [&](int32_t id) { return std::exp(double(logits[id]) / p.temperature - max_logit); };
  // Highest logit first; ties keep the lower id first.
  auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);

  if (!(p.top_k > 0 && p.top_k < vocab) && p.top_p >= 1.0f) {
    // No ranking filter: no sort over the vocabulary (150k entries would dominate a decode step).
    // min_p keeps tokens with weight >= min_p * (the top weight, which is exactly 1 here).
    std::vector<double> weights(static_cast<size_t>(vocab));
    double total = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      const double w = weight(int32_t(i));
      weights[size_t(i)] = w >= double(p.min_p) ? w : 0.0;
      total += weights[size_t(i)];
    }
    for (int64_t i = 0; i < vocab; ++i) probs[size_t(i)] = weights[size_t(i)] / total;
    return probs;
  }

  // Candidates sorted best first: the top_k, or for top_p alone a prefix that grows until it holds
  // top_p of the mass (the same prefix a full sort would give, at the cost of a partial sort).
  size_t keep = size_t(vocab);
  double top_p_total = 0;  // the mass top_p is a fraction of: the top_k's, or the whole vocabulary's
  if (p.top_k > 0 && size_t(p.top_k) < keep) {
    keep = size_t(p.top_k);
    std::partial_sort(order.begin(), order.begin() + int64_t(keep), order.end(), better);
  } else {
    for (int64_t i = 0; i < vocab; ++i) top_p_total += weight(int32_t(i));
    for (size_t k = std::min<size_t>(256, keep);; k = std::min(size_t(vocab), k * 8)) {
      std::partial_sort(order.begin(), order.begin() + int64_t(k), order.end(), better);
      double mass = 0;
      for (size_t i = 0; i < k; ++i) mass += weight(order[i]);
      keep = k;
      if (k == size_t(vocab) || mass / top_p_total >= double(p.top_p)) break;
    }
  }
  std::vector<double> weights(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i) {
    weights[i] = weight(order[i]);
    total += weights[i];
  }
  if (top_p_total == 0) top_p_total = total;
  if (p.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p (at least one token)
    double cumulative = 0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      cumulative += weights[i] / top_p_total;
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
