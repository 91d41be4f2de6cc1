// Chat templates: the model's own Jinja `chat_template` rendered by a Jinja-subset interpreter
// (src/tokenizer/jinja.cpp) with the settings transformers uses (trim_blocks, lstrip_blocks,
// loop controls, `tojson` as json.dumps(ensure_ascii=False), `raise_exception`, `strftime_now`),
// so the prompt text equals transformers' apply_chat_template(..., tokenize=False).
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace jetlm {

namespace jinja {
class Template;
}

class ChatTemplate {
 public:
  // DIR/chat_template.jinja if present (as transformers prefers it), else tokenizer_config.json's
  // `chat_template` (a string, or a list of {name, template} where "default" is used). bos/eos
  // tokens come from tokenizer_config.json (strings or {content: ...}). Throws jetlm::Error.
  static ChatTemplate load(const std::string& model_dir);
  static ChatTemplate from_string(const std::string& source, std::string bos_token = "", std::string eos_token = "");

  // messages: array of {role, content, [tool_calls], [reasoning_content], ...} (key order kept);
  // tools: array or null; extra: more template variables, e.g. {"enable_thinking": false}.
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& tools = nullptr,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

 private:
  std::shared_ptr<const jinja::Template> template_;
  std::string bos_token_, eos_token_;
};

}  // namespace jetlm
