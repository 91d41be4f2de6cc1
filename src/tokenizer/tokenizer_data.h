// Internals of jetlm::Tokenizer: the loaded tables and the pieces of the encode pipeline.
// Not part of the public API; tests may include it to check the parts in isolation.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace jetlm::tokenizer_detail {

// ---- UTF-8 and the byte-level alphabet (tokenizer_unicode.cpp) ----

// repair_utf8 replaces every maximal invalid subsequence by U+FFFD, like Python's
// bytes.decode("utf-8", "replace") and Rust's String::from_utf8_lossy.
bool is_valid_utf8(std::string_view text);
std::string repair_utf8(std::string_view text);

// Length of the complete, valid UTF-8 character at the start of `bytes`:
//  > 0: a valid character of that many bytes;
//  = 0: a valid but incomplete prefix of a character (more bytes could complete it);
//  < 0: -k, the first k bytes are a maximal invalid subsequence (to be one U+FFFD).
int utf8_char_status(const unsigned char* bytes, size_t available);

// NFC via utf8proc. `text` must be valid UTF-8. Returns `text` itself when nothing can change
// (ASCII), otherwise a view of `storage`.
std::string_view nfc_normalize(std::string_view text, std::string& storage);
// True when NFC leaves the code point alone and nothing before it can compose or reorder with it
// (combining class 0, no canonical decomposition, never the second of a composition pair).
bool nfc_inert(uint32_t cp);

// The GPT-2 byte-level alphabet: byte b <-> one code point (printable bytes map to themselves).
uint32_t byte_to_codepoint(uint8_t b);
// -1 when the code point is not in the alphabet.
int codepoint_to_byte(uint32_t cp);
// Bytes -> byte-level string ("Ġthe" for " the").
std::string bytes_to_byte_level(std::string_view bytes);
// What HF's ByteLevel decoder makes of one token: the bytes behind its characters when every
// character is in the alphabet, otherwise the token's own UTF-8 (used by added tokens like "a b").
std::string byte_level_token_to_bytes(std::string_view token);

// Decodes one code point from valid UTF-8 at `s[i]`, advancing i.
uint32_t next_codepoint(std::string_view s, size_t& i);
void append_utf8(std::string& out, uint32_t cp);
// Rust's char::is_whitespace (the Unicode White_Space property).
bool is_unicode_whitespace(uint32_t cp);

// ---- Regex splitting (tokenizer_pretokenize.cpp) ----

// A compiled PCRE2 pattern (UTF + UCP, JIT when available). Not copyable.
class Regex {
 public:
  Regex(const std::string& pattern, bool literal, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Finds the non-overlapping matches of the pattern in valid UTF-8 `text` (leftmost first, empty
  // matches skipped) and calls on_span(begin, end, is_match) for each match and each gap between
  // matches, in order, covering all of `text`.
  template <typename F>
  void for_each_span(std::string_view text, F&& on_span) const;
  // Next match at or after `offset`; false when there is none.
  bool find(std::string_view text, size_t offset, size_t& begin, size_t& end) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

template <typename F>
void Regex::for_each_span(std::string_view text, F&& on_span) const {
  size_t pos = 0, search = 0;
  while (search < text.size()) {
    size_t begin = 0, end = 0;
    if (!find(text, search, begin, end)) break;
    if (end == begin) {  // an empty match: step over one character and search again
      size_t i = begin;
      if (i < text.size()) next_codepoint(text, i);
      search = i;
      continue;
    }
    if (begin > pos) on_span(pos, begin, false);
    on_span(begin, end, true);
    pos = search = end;
  }
  if (pos < text.size()) on_span(pos, text.size(), false);
}

enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

// One step of the pre-tokenizer: HF's Split, or ByteLevel's own regex split (use_regex).
struct PreTokenizerStep {
  std::unique_ptr<Regex> regex;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel(add_prefix_space): " " before pieces not starting with one
};

// ---- The BPE model (tokenizer_bpe.cpp) ----

// Open-addressing map from a pair of token ids to the merge (rank and result) that joins them.
class MergeTable {
 public:
  struct Merge {
    int32_t rank = -1;
    int32_t merged = -1;
  };
  void reserve(size_t n);
  // A later insertion of the same pair replaces the earlier one (HF builds a HashMap the same way).
  void insert(int32_t left, int32_t right, Merge merge);
  const Merge* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pack(left, right);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.key == key) return &slot.merge;
      if (slot.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge;
  };
  static uint64_t pack(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  static size_t hash(uint64_t key) {
    key ^= key >> 29;
    key *= 0xbf58476d1ce4e5b9ull;
    key ^= key >> 32;
    return size_t(key);
  }
  void grow();
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, TransparentStringHash, std::equal_to<>>;

// Remembers the ids of words already merged: an open-addressing table over one byte arena and one
// id arena, so a lookup is a hash, a probe or two and a memcmp. Bounded: cleared when full.
class WordCache {
 public:
  // Appends the cached ids of `word` to `out`; false when not cached.
  bool lookup(std::string_view word, std::vector<int32_t>& out) const;
  void store(std::string_view word, const int32_t* ids, size_t n);

  static constexpr size_t kMaxWordBytes = 64;

 private:
  static constexpr size_t kMaxEntries = 1 << 17;
  struct Slot {
    uint64_t hash = 0;  // 0: empty
    uint32_t word_offset = 0, ids_offset = 0;
    uint16_t word_length = 0, ids_length = 0;
  };
  static uint64_t hash_word(std::string_view word);
  std::vector<Slot> slots_;
  std::string words_;
  std::vector<int32_t> ids_;
  size_t size_ = 0;
};

struct BpeModel {
  int32_t byte_to_id[256];      // the id of each one-byte token, -1 when the vocab lacks it
  MergeTable merges;
  bool ignore_merges = false;   // HF's ignore_merges: a whole word found in the vocab is one token
  StringIdMap bytes_to_id;      // only filled when ignore_merges

  // Appends the ids of one pre-tokenized word (raw bytes) to `out`.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

 private:
  void merge_small(std::vector<int32_t>& symbols) const;
  void merge_large(std::vector<int32_t>& symbols) const;
};

// ---- Added tokens (tokenizer_added.cpp) ----

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool normalized = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

// Finds added tokens in text the way HF does: leftmost-longest non-overlapping matches of the
// contents, then the single_word / lstrip / rstrip rules on each match.
class AddedTokenMatcher {
 public:
  // `tokens` whose content is to be matched (for normalized tokens: their NFC form).
  void build(std::vector<std::pair<std::string, const AddedToken*>> patterns);
  bool empty() const { return patterns_.empty(); }
  // Calls on_piece(begin, end, token) for every piece of `text` in order; token is null for text
  // between added tokens. Empty pieces are not reported.
  template <typename F>
  void split(std::string_view text, F&& on_piece) const;

 private:
  struct Match {
    size_t begin, end;
    const AddedToken* token;
  };
  void find_matches(std::string_view text, std::vector<Match>& out) const;
  std::vector<std::pair<std::string, const AddedToken*>> patterns_;  // sorted by first byte, longest first
  std::vector<uint32_t> first_byte_begin_;                           // 257 offsets into patterns_
};

template <typename F>
void AddedTokenMatcher::split(std::string_view text, F&& on_piece) const {
  std::vector<Match> matches;
  find_matches(text, matches);
  size_t pos = 0;
  for (const Match& m : matches) {
    if (m.begin > pos) on_piece(pos, m.begin, nullptr);
    on_piece(m.begin, m.end, m.token);
    pos = std::max(pos, m.end);
  }
  if (pos < text.size()) on_piece(pos, text.size(), nullptr);
}

// ---- Everything loaded (tokenizer_load.cpp) ----

struct TokenizerData {
  // Pipeline.
  bool nfc = false;
  std::vector<PreTokenizerStep> pre_tokenizer;
  BpeModel bpe;

  // Tokens.
  std::vector<std::string> id_to_token;   // byte-level form / added content; "" for unused ids
  std::vector<std::string> token_bytes;   // what each id decodes to
  std::vector<uint8_t> has_token;         // 1 where an id names a token
  std::vector<uint8_t> special;           // 1 for special added tokens
  StringIdMap vocab;                      // byte-level token string -> id (the BPE vocab)
  std::vector<AddedToken> added_tokens;   // in id order
  StringIdMap added_by_content;
  AddedTokenMatcher raw_matcher;          // tokens with normalized=false, matched in the raw text
  AddedTokenMatcher normalized_matcher;   // tokens with normalized=true, matched after NFC

  // Word cache shared by encode calls (a call that finds it busy uses its own).
  mutable std::mutex cache_mutex;
  mutable WordCache cache;

  // Fills id_to_token / token_bytes / matchers after vocab, merges and added tokens are set.
  void finish();
};

std::unique_ptr<TokenizerData> load_tokenizer_data(const std::string& model_dir);

// The pre-tokenizer regex of Qwen2's tokenizer (used for vocab.json + merges.txt directories).
extern const char* const kQwen2SplitPattern;

}  // namespace jetlm::tokenizer_detail
