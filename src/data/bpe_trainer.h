// Byte-level BPE training (GPT-2 / Qwen2 style) and the tokenizer files it writes.
//
// Pipeline (the same one jetlm::Tokenizer and HF `tokenizers` encode with): each document is
// repaired to valid UTF-8, special tokens are cut out of it, every piece is NFC-normalized and
// split by the Qwen2 pre-tokenizer regex; the distinct pre-tokens ("words") are counted. Merges are
// then learned greedily over word frequencies: at every step the adjacent symbol pair with the
// highest total count is merged (ties: the smallest (left id, right id), ids as below), occurrences
// inside a word are merged left to right without overlap, and only the words holding the pair are
// revisited (pair counts are updated incrementally; a lazy max-heap picks the next pair).
//
// Ids: 0..255 are the 256 byte tokens in the order of their byte-level code point (GPT-2's
// bytes_to_unicode, so "!" is 0); merged tokens follow in creation order (a merge whose result is
// already a token reuses its id, as HF's trainer does); the special tokens come last, after the
// BPE vocabulary (Qwen2's layout), so vocab_size counts them too.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace jetlm::data {

struct BpeTrainOptions {
  int32_t vocab_size = 8192;  // BPE tokens + special tokens
  std::vector<std::string> special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  std::string eos_token = "<|endoftext|>";  // must be one of special_tokens
  int64_t min_frequency = 2;                // stop when the best pair occurs fewer times than this
  int threads = 0;                          // pre-tokenization threads; 0 = hardware concurrency
  bool progress = false;                    // progress line on stderr
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
// Pre-token (raw bytes after NFC) -> occurrences.
using WordCounts = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;

// Adds the pre-tokens of one document to `counts` (see the pipeline above).
void count_words(std::string_view document, const std::vector<std::string>& special_tokens,
                 WordCounts& counts);

// Counts the words of many documents on several threads.
WordCounts count_words_parallel(const std::vector<std::string_view>& documents,
                                const std::vector<std::string>& special_tokens, int threads,
                                bool progress);

struct BpeVocab {
  std::vector<std::string> tokens;  // byte-level strings, index = id (no specials)
  std::vector<std::pair<std::string, std::string>> merges;  // byte-level, in rank order
  std::vector<int64_t> merge_counts;  // count of each merge's pair when chosen
};

// Learns merges until tokens.size() + special_tokens.size() == vocab_size or no pair reaches
// min_frequency. Throws jetlm::Error when vocab_size < 256 + specials.
BpeVocab train_bpe(const WordCounts& counts, const BpeTrainOptions& options);

// The 256 byte tokens in id order (byte-level strings).
std::vector<std::string> byte_alphabet();

// Writes dir/tokenizer.json (HF `tokenizers` format), vocab.json, merges.txt and
// tokenizer_config.json (eos_token, ChatML chat_template). Each file is written atomically.
void write_tokenizer_files(const std::string& dir, const BpeVocab& vocab,
                           const BpeTrainOptions& options);

}  // namespace jetlm::data
