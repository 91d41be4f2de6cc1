// Token sampling: penalties, temperature, top-k, top-p, min-p, seeded.
//
// Order (as Hugging Face's logits processors apply them): repetition penalty and
// presence/frequency penalties on the raw logits; temperature; then top-k, top-p and min-p on
// the tempered distribution; then one draw. temperature == 0 is greedy (the first maximum).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace jetlm {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 0;               // 0: off
  float top_p = 1.0f;          // 1: off
  float min_p = 0.0f;          // 0: off; keep tokens with p >= min_p * p_max
  float repeat_penalty = 1.0f; // 1: off; CTRL-style: logit / r if > 0 else logit * r
  int repeat_last_n = 64;      // how much history the repeat penalty looks at (-1: all)
  float presence_penalty = 0.0f;   // OpenAI: minus this once per token seen
  float frequency_penalty = 0.0f;  // OpenAI: minus this per occurrence
  uint64_t seed = 0;
};

// Throws jetlm::Error naming the parameter when one is out of range.
void validate(const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks the next token from logits[vocab] (modified in place by penalties) given the tokens
  // of the sequence so far.
  int32_t sample(float* logits, int64_t vocab, std::span<const int32_t> history);
  // The probabilities the draw would use (after every filter), for tests: p[vocab].
  std::vector<double> distribution(float* logits, int64_t vocab, std::span<const int32_t> history);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

}  // namespace jetlm
