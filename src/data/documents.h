// Document boundaries in corpus text files (scripts/extract_corpus.sh writes them; docs/data.md).
// A file is a sequence of documents separated by a line that holds only a form feed ("\n\f\n").
// Each document is trimmed of surrounding whitespace; empty documents are skipped. A file without
// separators is one document.
#pragma once

#include <string_view>

namespace jetlm::data {

inline bool is_trim_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

inline std::string_view trim_document(std::string_view s) {
  while (!s.empty() && is_trim_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_trim_space(s.back())) s.remove_suffix(1);
  return s;
}

// Calls on_document(std::string_view) for each non-empty document of `text`, in order.
template <typename F>
void for_each_document(std::string_view text, F&& on_document) {
  size_t pos = 0;
  while (pos <= text.size()) {
    // A separator is "\f" alone on its line: preceded by '\n' or the start, followed by '\n' or the
    // end.
    size_t end = pos;
    for (;;) {
      end = text.find('\f', end);
      if (end == std::string_view::npos) {
        end = text.size();
        break;
      }
      const bool line_start = end == 0 || text[end - 1] == '\n';
      const bool line_end =
          end + 1 == text.size() || text[end + 1] == '\n' ||
          (text[end + 1] == '\r' && end + 2 < text.size() && text[end + 2] == '\n');
      if (line_start && line_end) break;
      ++end;  // a form feed inside a line is text
    }
    const std::string_view doc = trim_document(text.substr(pos, end - pos));
    if (!doc.empty()) on_document(doc);
    pos = end + 1;
  }
}

}  // namespace jetlm::data
