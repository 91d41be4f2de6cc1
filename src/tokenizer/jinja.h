// A Jinja2 subset, enough for the chat templates of Qwen2/Qwen2.5/Qwen3/QwQ/Jet-Nemotron and their
// relatives, with the semantics of the environment transformers builds (trim_blocks, lstrip_blocks,
// keep_trailing_newline off, default Undefined: printing or testing an undefined name is fine,
// reading an attribute of one raises). Text with {{ }}, {% %}, {# #}, whitespace control (- and +)
// and {% raw %}; if/elif/else, for (tuple unpacking, `if` filter, else, loop.* incl. previtem/
// nextitem/cycle, break/continue), set (also `a, b =`, ns.attr and block set), with, macro;
// expressions with Python semantics (and/or/not/in/is, comparisons, arithmetic, ~, conditional,
// list/tuple/dict literals, slices, unicode-aware string indexing), the filters and tests those
// templates use, and str/dict methods (strip, split, startswith, items, get, ...). Anything else
// ({% call %}, {% filter %}, include, str.format, ...) is an error that names the template line
// and column and the construct; nesting, output size, loop iterations and ranges are bounded.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace jetlm::jinja {

struct Node;

struct Options {
  bool trim_blocks = true;     // drop the first newline after a block tag
  bool lstrip_blocks = true;   // drop spaces/tabs from the line start up to a block tag
  size_t max_output = 64u << 20;
  int64_t max_iterations = 10'000'000;
};

class Template {
 public:
  // Parses `source`; throws jetlm::Error "template line L col C: ..." on syntax it does not know.
  Template(const std::string& source, Options options = {});
  ~Template();
  // Renders with the variables of `context` (a JSON object, key order kept).
  std::string render(const nlohmann::ordered_json& context) const;

 private:
  std::shared_ptr<Node> root_;
  Options options_;
};

}  // namespace jetlm::jinja
