// jetlm::Tokenizer: the encode pipeline (added tokens -> NFC -> split -> BPE), decoding and the
// streaming detokenizer.
#include "jetlm/tokenizer.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/tokenizer_data.h"

namespace jetlm {

using namespace tokenizer_detail;

namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// One encode call: appends ids for the pieces it is given.
class Encoder {
 public:
  Encoder(const TokenizerData& data, WordCache& cache, std::vector<int32_t>& ids)
      : data_(data), cache_(cache), ids_(ids) {}

  // Text between raw-matched added tokens: NFC, then normalized added tokens (unless told not to
  // match added tokens at all), then split + BPE.
  void text_piece(std::string_view text, bool match_normalized_tokens) {
    std::string storage;
    const std::string_view normalized = data_.nfc ? nfc_normalize(text, storage) : text;
    if (!match_normalized_tokens || data_.normalized_matcher.empty()) {
      pre_tokenize(0, normalized);
      return;
    }
    data_.normalized_matcher.split(normalized, [&](size_t begin, size_t end, const AddedToken* token) {
      if (token != nullptr)
        ids_.push_back(token->id);
      else
        pre_tokenize(0, normalized.substr(begin, end - begin));
    });
  }

 private:
  // Applies pre-tokenizer step `step` (and the following ones) to `piece`, then BPE.
  void pre_tokenize(size_t step_index, std::string_view piece) {
    if (step_index == data_.pre_tokenizer.size()) {
      word(piece);
      return;
    }
    const PreTokenizerStep& step = data_.pre_tokenizer[step_index];
    std::string prefixed;
    if (step.add_prefix_space && !piece.starts_with(' ')) {
      prefixed.reserve(piece.size() + 1);
      prefixed += ' ';
      prefixed += piece;
      piece = prefixed;
    }
    if (!step.regex) {
      pre_tokenize(step_index + 1, piece);
      return;
    }
    if (step.behavior == SplitBehavior::kIsolated) {  // every match and every gap is its own piece
      step.regex->for_each_span(piece, [&](size_t begin, size_t end, bool) {
        pre_tokenize(step_index + 1, piece.substr(begin, end - begin));
      });
      return;
    }
    struct Span {
      size_t begin, end;
      bool match;
    };
    std::vector<Span> spans;
    step.regex->for_each_span(piece, [&](size_t begin, size_t end, bool match) {
      spans.push_back({begin, end, match != step.invert});
    });
    // HF's SplitDelimiterBehavior, on the (offsets, is_match) list.
    std::vector<Span> pieces;
    switch (step.behavior) {
      case SplitBehavior::kIsolated:  // handled above without the span list
        break;
      case SplitBehavior::kRemoved:
        for (const Span& s : spans)
          if (!s.match) pieces.push_back(s);
        break;
      case SplitBehavior::kMergedWithPrevious: {
        bool previous_match = false;
        for (const Span& s : spans) {
          if (s.match && !previous_match && !pieces.empty())
            pieces.back().end = s.end;
          else
            pieces.push_back(s);
          previous_match = s.match;
        }
        break;
      }
      case SplitBehavior::kMergedWithNext: {
        bool previous_match = false;
        for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
          if (it->match && !previous_match && !pieces.empty())
            pieces.back().begin = it->begin;
          else
            pieces.push_back(*it);
          previous_match = it->match;
        }
        std::reverse(pieces.begin(), pieces.end());
        break;
      }
      case SplitBehavior::kContiguous: {
        bool previous_match = false;
        for (const Span& s : spans) {
          if (s.match == previous_match && !pieces.empty())
            pieces.back().end = s.end;
          else
            pieces.push_back(s);
          previous_match = s.match;
        }
        break;
      }
    }
    for (const Span& s : pieces)
      if (s.end > s.begin) pre_tokenize(step_index + 1, piece.substr(s.begin, s.end - s.begin));
  }

  void word(std::string_view word) {
    if (word.empty()) return;
    if (word.size() == 1 || word.size() > WordCache::kMaxWordBytes) {
      data_.bpe.encode_word(word, ids_);
      return;
    }
    if (cache_.lookup(word, ids_)) return;
    const size_t before = ids_.size();
    data_.bpe.encode_word(word, ids_);
    cache_.store(word, ids_.data() + before, ids_.size() - before);
  }

  const TokenizerData& data_;
  WordCache& cache_;
  std::vector<int32_t>& ids_;
};

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<TokenizerData> data) : data_(std::move(data)) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& model_dir) {
  return std::unique_ptr<Tokenizer>(new Tokenizer(load_tokenizer_data(model_dir)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool match_added_tokens) const {
  // HF only ever sees Python strings, i.e. valid UTF-8; invalid input is repaired the way
  // bytes.decode("utf-8", "replace") would have.
  std::string repaired;
  if (!is_valid_utf8(text)) {
    repaired = repair_utf8(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  // The shared word cache, unless another thread is using it right now.
  std::unique_lock<std::mutex> lock(data_->cache_mutex, std::try_to_lock);
  WordCache local_cache;
  Encoder encoder(*data_, lock.owns_lock() ? data_->cache : local_cache, ids);
  if (!match_added_tokens || data_->raw_matcher.empty()) {
    encoder.text_piece(text, match_added_tokens);
    return ids;
  }
  data_->raw_matcher.split(text, [&](size_t begin, size_t end, const AddedToken* token) {
    if (token != nullptr)
      ids.push_back(token->id);
    else
      encoder.text_piece(text.substr(begin, end - begin), true);
  });
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (const int32_t id : ids) {
    if (!has_token(id) || (skip_special && data_->special[size_t(id)])) continue;
    bytes += data_->token_bytes[size_t(id)];
  }
  return is_valid_utf8(bytes) ? bytes : repair_utf8(bytes);
}

int32_t Tokenizer::vocab_size() const { return int32_t(data_->id_to_token.size()); }

bool Tokenizer::has_token(int32_t id) const {
  return id >= 0 && size_t(id) < data_->has_token.size() && data_->has_token[size_t(id)];
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (const auto it = data_->added_by_content.find(token); it != data_->added_by_content.end()) return it->second;
  if (const auto it = data_->vocab.find(token); it != data_->vocab.end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const { return has_token(id) ? data_->id_to_token[size_t(id)] : ""; }

bool Tokenizer::is_special(int32_t id) const { return has_token(id) && data_->special[size_t(id)]; }

std::string Tokenizer::token_bytes(int32_t id) const { return has_token(id) ? data_->token_bytes[size_t(id)] : ""; }

std::vector<int32_t> Tokenizer::added_token_ids() const {
  std::vector<int32_t> ids;
  for (const AddedToken& token : data_->added_tokens) ids.push_back(token.id);
  return ids;
}

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tok, bool skip_special)
    : tokenizer_(tok), skip_special_(skip_special) {}

std::string StreamingDetokenizer::push(int32_t id) {
  if (!tokenizer_.has_token(id) || (skip_special_ && tokenizer_.is_special(id))) return "";
  pending_ += tokenizer_.data_->token_bytes[size_t(id)];
  // Emit every complete character and every subsequence already known to be invalid; keep a
  // trailing prefix that later bytes may still complete.
  std::string out;
  const auto* bytes = reinterpret_cast<const unsigned char*>(pending_.data());
  size_t i = 0;
  while (i < pending_.size()) {
    const int status = utf8_char_status(bytes + i, pending_.size() - i);
    if (status > 0) {
      out.append(pending_, i, size_t(status));
      i += size_t(status);
    } else if (status < 0) {
      out += kReplacement;
      i += size_t(-status);
    } else {
      break;
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamingDetokenizer::flush() {
  const bool dangling = !pending_.empty();
  pending_.clear();
  return dangling ? kReplacement : "";
}

}  // namespace jetlm
