// Finding added tokens (<|im_start|>, <tool_call>, ...) in text, the way HF's AddedVocabulary does:
// leftmost-longest non-overlapping matches of every token's content (HF uses Aho-Corasick with
// LeftmostLongest), then per match the token's flags:
//  - single_word: the match counts only when no word character touches it on either side;
//  - lstrip / rstrip: the token also swallows the whitespace before / after it.
#include <utf8proc.h>

#include <algorithm>

#include "tokenizer/tokenizer_data.h"

namespace jetlm::tokenizer_detail {

namespace {

// HF tests word boundaries with the Rust regex `\w`: Alphabetic, marks, decimal digits, connector
// punctuation ('_') and the joiners. Alphabetic is taken as letters, letter numbers and the
// enclosed letters (Ⓐ, 🄰) that Unicode also counts as alphabetic.
bool is_word_char(uint32_t cp) {
  if (cp < 0x80) return cp == '_' || (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
  if (cp == 0x200C || cp == 0x200D) return true;
  if ((cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) || (cp >= 0x1F150 && cp <= 0x1F169) ||
      (cp >= 0x1F170 && cp <= 0x1F189))
    return true;
  switch (utf8proc_category(utf8proc_int32_t(cp))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

uint32_t last_codepoint(std::string_view text) {
  size_t start = text.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return next_codepoint(text, start);
}

}  // namespace

void AddedTokenMatcher::build(std::vector<std::pair<std::string, const AddedToken*>> patterns) {
  patterns.erase(std::remove_if(patterns.begin(), patterns.end(), [](const auto& p) { return p.first.empty(); }),
                 patterns.end());
  // By first byte, then longest first: the first pattern that matches at a position is the longest.
  std::stable_sort(patterns.begin(), patterns.end(), [](const auto& a, const auto& b) {
    const auto fa = uint8_t(a.first[0]), fb = uint8_t(b.first[0]);
    return fa != fb ? fa < fb : a.first.size() > b.first.size();
  });
  patterns_ = std::move(patterns);
  first_byte_begin_.assign(257, 0);
  for (const auto& p : patterns_) ++first_byte_begin_[size_t(uint8_t(p.first[0])) + 1];
  for (size_t b = 1; b <= 256; ++b) first_byte_begin_[b] += first_byte_begin_[b - 1];
}

void AddedTokenMatcher::find_matches(std::string_view text, std::vector<Match>& out) const {
  if (patterns_.empty()) return;
  size_t covered = 0;  // end of the last accepted token (HF's start_offset)
  size_t p = 0;
  while (p < text.size()) {
    const auto first = uint8_t(text[p]);
    const uint32_t lo = first_byte_begin_[first], hi = first_byte_begin_[size_t(first) + 1];
    const std::pair<std::string, const AddedToken*>* found = nullptr;
    for (uint32_t k = lo; k < hi; ++k) {
      const std::string& content = patterns_[k].first;
      if (text.compare(p, content.size(), content) == 0) {
        found = &patterns_[k];
        break;
      }
    }
    if (found == nullptr) {
      ++p;
      continue;
    }
    size_t begin = p, end = p + found->first.size();
    p = end;  // matching resumes after the raw match whatever the flags decide
    const AddedToken& token = *found->second;
    if (token.single_word) {
      const bool free_before = begin == 0 || !is_word_char(last_codepoint(text.substr(0, begin)));
      size_t after = end;
      const bool free_after = end == text.size() || !is_word_char(next_codepoint(text, after));
      if (!free_before || !free_after) continue;
    }
    if (token.lstrip) {
      size_t new_begin = begin;
      while (new_begin > 0) {
        size_t s = new_begin - 1;
        while (s > 0 && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
        size_t i = s;
        if (!is_unicode_whitespace(next_codepoint(text, i))) break;
        new_begin = s;
      }
      begin = std::max(new_begin, covered);  // whitespace a previous token already took stays there
    }
    if (token.rstrip) {
      size_t i = end;
      while (i < text.size()) {
        size_t j = i;
        if (!is_unicode_whitespace(next_codepoint(text, j))) break;
        i = j;
      }
      end = i;
    }
    begin = std::max(begin, covered);
    out.push_back({begin, end, &token});
    covered = end;
  }
}

}  // namespace jetlm::tokenizer_detail
