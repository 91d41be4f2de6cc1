// Chat templates: the model's own Jinja `chat_template` rendered by a Jinja-subset interpreter
// (src/tokenizer/jinja.cpp) with the settings transformers uses (trim_blocks, lstrip_blocks,
// loop controls, `tojson` as json.dumps(ensure_ascii=False), `raise_exception`, `strftime_now`,
// `namespace`, `dict`), so the prompt text equals transformers'
// tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=..., tools=..., **extra).
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
  // DIR/chat_template.jinja if present (transformers prefers it), else tokenizer_config.json's
  // `chat_template` (a string, or a list of {name, template} where "default" is used). The named
  // special tokens (bos/eos/unk/sep/pad/cls/mask; strings or {content: ...} objects) come from
  // tokenizer_config.json, or from special_tokens_map.json for a config without
  // `added_tokens_decoder`, as transformers reads them; null ones stay undefined in the template.
  // Throws jetlm::Error naming the file (and for template syntax errors, the line and construct).
  static ChatTemplate load(const std::string& model_dir);
  // An empty bos/eos token is left undefined, like a null one in tokenizer_config.json.
  static ChatTemplate from_string(const std::string& source, std::string bos_token = "", std::string eos_token = "");

  // messages: array of objects {role, content, [tool_calls], [reasoning_content], ...}. Key order
  // is kept (it shows in `tojson`), hence ordered_json; a plain nlohmann::json converts implicitly
  // but its keys come sorted. As transformers does: keys whose value is null are dropped, and a
  // message's reasoning under reasoning_content/thinking/reasoning is readable under the first two.
  // tools: array or null; extra: more template variables, e.g. {"enable_thinking": false} (they
  // override the special tokens of the same name). Throws jetlm::Error for an empty conversation,
  // a message that is not an object, or an error the template raises (raise_exception, undefined
  // attribute, unsupported construct, ...), with the template line and column.
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& tools = nullptr,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

 private:
  std::shared_ptr<const jinja::Template> template_;
  nlohmann::ordered_json special_tokens_ = nlohmann::ordered_json::object();  // name -> text, set ones only
};

}  // namespace jetlm
