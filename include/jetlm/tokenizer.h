// Byte-level BPE tokenizer, exact to Hugging Face `tokenizers` for the Qwen2 / Jet-Nemotron family.
//
// Loading: `tokenizer.json` from a model directory (BPE model with vocab + merges, NFC normalizer,
// Split(regex) + ByteLevel pre-tokenizers, ByteLevel decoder, added tokens with their flags), or,
// when it is absent, `vocab.json` + `merges.txt` + `tokenizer_config.json` (added tokens from its
// `added_tokens_decoder`) with the Qwen2 split regex. Missing or malformed files throw jetlm::Error.
//
// Encoding follows HF's pipeline: added tokens are found in the raw text first (honouring their
// lstrip/rstrip/single_word/normalized flags), every other piece goes NFC -> split regex -> bytes ->
// BPE merges by rank. Input that is not valid UTF-8 is first repaired the way Python's
// `bytes.decode("utf-8", "replace")` does (one U+FFFD per maximal invalid subsequence), since HF can
// only ever see text that went through such a conversion.
//
// Decoding concatenates the bytes of the tokens and turns invalid UTF-8 into one U+FFFD per maximal
// invalid subsequence, like HF's lossy ByteLevel decoder. Ids that have no token are skipped (as HF
// does); callers that want an error check `vocab_size()` / `has_token()` first.
//
// Thread safety: a loaded Tokenizer is immutable apart from an internal word cache that is guarded;
// encode/decode may be called from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace jetlm {

namespace tokenizer_detail {
struct TokenizerData;  // src/tokenizer/tokenizer_data.h
}

class Tokenizer {
 public:
  // Loads from `model_dir` (see above). Throws jetlm::Error naming the file and the field.
  static std::unique_ptr<Tokenizer> load(const std::string& model_dir);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Text -> ids, without any BOS/EOS added. With match_added_tokens=false the text is tokenized as if
  // the tokenizer had no added tokens at all ("<|im_start|>" becomes ordinary BPE pieces).
  std::vector<int32_t> encode(std::string_view text, bool match_added_tokens = true) const;

  // Ids -> text. skip_special leaves out added tokens marked special (non-special added tokens such
  // as <tool_call> stay). Ids without a token are skipped.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // Max id + 1, added tokens included.
  int32_t vocab_size() const;
  // True when `id` names a vocabulary entry or an added token.
  bool has_token(int32_t id) const;
  // Id of a vocabulary entry (in its byte-level form, e.g. "Ġthe") or of an added token's content.
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The raw token string (byte-level form for BPE entries, the content for added tokens); "" when
  // the id has no token.
  std::string id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  // The bytes one token contributes to decoded text (may be an incomplete UTF-8 sequence).
  std::string token_bytes(int32_t id) const;

  // Ids of the added tokens, in id order.
  std::vector<int32_t> added_token_ids() const;

 private:
  explicit Tokenizer(std::unique_ptr<tokenizer_detail::TokenizerData> data);
  std::unique_ptr<tokenizer_detail::TokenizerData> data_;
  friend class StreamingDetokenizer;
};

// Turns ids into text one at a time without ever emitting part of a UTF-8 character: text is
// returned as soon as it is complete, invalid bytes become U+FFFD as soon as they are known to be
// invalid, and the concatenation of every push() and the final flush() equals
// Tokenizer::decode(all ids, skip_special).
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tok, bool skip_special = true);
  // Returns the text completed by this token (often empty while a character is split over tokens).
  std::string push(int32_t id);
  // End of the stream: a dangling incomplete sequence becomes one U+FFFD. The detokenizer can be
  // reused afterwards.
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes of a character not yet complete (at most 3)
};

}  // namespace jetlm
