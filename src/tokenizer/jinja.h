// A Jinja2 subset, enough for the chat templates of Qwen2/Qwen2.5/Qwen3/Jet-Nemotron and their
// relatives: text with {{ }}, {% %}, {# #} and whitespace control; if/elif/else, for (with
// tuple unpacking, `if` filter, else, loop.* and break/continue), set (also ns.attr and block
// set), macro with call; expressions with Python semantics (and/or/not/in/is, comparisons,
// arithmetic, ~, conditional, literals, slices), the filters and tests those templates use, and
// string/dict methods (strip, split, startswith, items, get, ...). Anything else is an error that
// names the template line and column; output size, loop iterations and nesting are bounded.
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
