// Sampling: empirical frequencies of many seeded draws against distributions written out here
// from the definitions (softmax with temperature, then top-k / top-p / min-p truncation).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "core/error.h"
#include "jetlm/sampling.h"

namespace jetlm {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.5f, -1.0f, 0.0f, 2.9f, 0.5f};

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  std::vector<double> p(logits.size());
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) total += p[i] = std::exp(logits[i] / temperature);
  for (double& x : p) x /= total;
  return p;
}

std::vector<double> renormalised(std::vector<double> p, const std::vector<int>& keep) {
  std::vector<double> out(p.size(), 0.0);
  double total = 0;
  for (int i : keep) total += p[size_t(i)];
  for (int i : keep) out[size_t(i)] = p[size_t(i)] / total;
  return out;
}

// Draws `n` samples and checks every token's frequency within 5 standard errors of `expected`.
void expect_frequencies(const SamplingParams& params, const std::vector<double>& expected,
                        const std::vector<int32_t>& history = {}) {
  Sampler sampler(params);
  const int n = 200000;
  std::vector<int> counts(kLogits.size(), 0);
  for (int i = 0; i < n; ++i) {
    std::vector<float> logits = kLogits;
    counts[size_t(sampler.sample(logits.data(), int64_t(logits.size()), history))]++;
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    const double freq = double(counts[i]) / n;
    const double sigma = std::sqrt(expected[i] * (1 - expected[i]) / n) + 1e-9;
    if (expected[i] == 0.0) EXPECT_EQ(counts[i], 0) << "token " << i << " must never be drawn";
    else EXPECT_NEAR(freq, expected[i], 5 * sigma) << "token " << i;
  }
}

TEST(Sampler, GreedyIsArgmaxAndIgnoresSeed) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    SamplingParams p;
    p.temperature = 0;
    p.seed = seed;
    Sampler s(p);
    std::vector<float> logits = kLogits;
    EXPECT_EQ(s.sample(logits.data(), int64_t(logits.size()), {}), 1);
  }
}

TEST(Sampler, Temperature) {
  SamplingParams p;
  p.temperature = 0.7f;
  expect_frequencies(p, softmax(kLogits, 0.7));
  p.temperature = 1.5f;
  expect_frequencies(p, softmax(kLogits, 1.5));
}

TEST(Sampler, TopK) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 3;  // tokens 1 (3.0), 5 (2.9), 2 (2.5)
  expect_frequencies(p, renormalised(softmax(kLogits, 1.0), {1, 5, 2}));
}

TEST(Sampler, TopP) {
  SamplingParams p;
  p.temperature = 1.0f;
  const std::vector<double> probs = softmax(kLogits, 1.0);
  // Sorted: 1, 5, 2, 0, 6, 4, 3. Smallest prefix with mass >= top_p.
  const std::vector<int> order = {1, 5, 2, 0, 6, 4, 3};
  for (double top_p : {0.3, 0.6, 0.9}) {
    std::vector<int> keep;
    double mass = 0;
    for (int i : order) {
      keep.push_back(i);
      mass += probs[size_t(i)];
      if (mass >= top_p) break;
    }
    p.top_p = float(top_p);
    expect_frequencies(p, renormalised(probs, keep));
  }
}

TEST(Sampler, MinP) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.5f;  // keep p >= 0.5 * p(token 1): exp(l - 3) >= 0.5 <=> l >= 3 - ln 2 = 2.307
  expect_frequencies(p, renormalised(softmax(kLogits, 1.0), {1, 5, 2}));
}

TEST(Sampler, SeedReproducesTheSameDraws) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 99;
  Sampler a(p), b(p);
  for (int i = 0; i < 100; ++i) {
    std::vector<float> la = kLogits, lb = kLogits;
    EXPECT_EQ(a.sample(la.data(), 7, {}), b.sample(lb.data(), 7, {}));
  }
}

TEST(Sampler, RepeatAndPresencePenalties) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.repeat_penalty = 2.0f;
  std::vector<float> penalised = kLogits;
  penalised[1] /= 2.0f;   // positive logit divided
  penalised[3] *= 2.0f;   // negative logit multiplied
  expect_frequencies(p, softmax(penalised, 1.0), {1, 3, 1});
  SamplingParams q;
  q.temperature = 1.0f;
  q.presence_penalty = 0.5f;
  q.frequency_penalty = 0.25f;
  penalised = kLogits;
  penalised[1] -= 0.5f + 0.25f * 2;
  penalised[5] -= 0.5f + 0.25f * 1;
  expect_frequencies(q, softmax(penalised, 1.0), {1, 5, 1});
}

TEST(Sampler, RejectsBadParameters) {
  SamplingParams p;
  p.top_p = 0.0f;
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.temperature = -1;
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.min_p = 2;
  EXPECT_THROW(Sampler{p}, Error);
}

}  // namespace
}  // namespace jetlm
