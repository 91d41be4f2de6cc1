// Text in, text out: a Session plus a Tokenizer. Streams UTF-8 text as tokens are sampled, never
// splitting a character, and stops at end-of-sequence ids, at stop strings (also when a stop string
// spans several tokens), at the token limit, or when the caller cancels.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "jetlm/session.h"
#include "jetlm/tokenizer.h"

namespace jetlm {

// Finds stop strings in streamed text. Text that could still be the start of a stop string is
// held back until it is known not to be one, so the caller never sees any part of a stop string.
class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops);
  // Appends `text`; returns what is now safe to emit. After a stop string appears, stopped() is
  // true and nothing from the stop string on is ever returned.
  std::string push(std::string_view text);
  // The held-back tail at the end of generation (when no stop string was found).
  std::string flush();
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
  std::string matched_;
};

struct TextGenerateOptions {
  GenerateOptions generate;                // sampling, max_new_tokens, stop_ids, prefill_chunk
  std::vector<std::string> stop_strings;   // generation ends before any of these
  bool skip_special = true;                // leave special tokens out of the text
};

struct TextGenerateResult {
  GenerateResult tokens;
  std::string text;          // everything emitted through on_text
  std::string stop_string;   // the stop string that ended generation, if any
};

// Samples from `session` (which must have been fed a prompt) and streams text to on_text.
// `cancel`, when set by another thread or a signal handler, ends generation after the current
// token with finish_reason "cancelled".
TextGenerateResult generate_text(Session& session, const Tokenizer& tokenizer, const TextGenerateOptions& options,
                                 const std::function<void(std::string_view)>& on_text,
                                 const std::atomic<bool>* cancel = nullptr);

// End-of-sequence ids of a model directory: config.json's and generation_config.json's
// eos_token_id (a number or a list), without duplicates. Missing files are fine.
std::vector<int32_t> eos_token_ids(const std::string& model_dir, const ModelConfig& config);

}  // namespace jetlm
