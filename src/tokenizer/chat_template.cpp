#include "jetlm/chat_template.h"

#include <filesystem>

#include "core/error.h"
#include "io/mapped_file.h"
#include "tokenizer/jinja.h"

namespace jetlm {

namespace {

using ojson = nlohmann::ordered_json;

// bos_token / eos_token in tokenizer_config.json: a string or an AddedToken object.
std::string token_text(const ojson& config, const char* key) {
  if (!config.contains(key)) return "";
  const ojson& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

}  // namespace

ChatTemplate ChatTemplate::from_string(const std::string& source, std::string bos_token, std::string eos_token) {
  ChatTemplate t;
  t.template_ = std::make_shared<const jinja::Template>(source);
  t.bos_token_ = std::move(bos_token);
  t.eos_token_ = std::move(eos_token);
  return t;
}

ChatTemplate ChatTemplate::load(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const std::string jinja_path = model_dir + "/chat_template.jinja";
  const std::string config_path = model_dir + "/tokenizer_config.json";
  ojson config = ojson::object();
  if (fs::exists(config_path)) {
    config = ojson::parse(read_text_file(config_path), nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) throw_error(config_path, "is not a JSON object");
  }
  std::string source;
  std::string where;
  if (fs::exists(jinja_path)) {
    source = read_text_file(jinja_path);
    where = jinja_path;
  } else if (config.contains("chat_template")) {
    where = config_path + ": chat_template";
    const ojson& t = config["chat_template"];
    if (t.is_string()) {
      source = t.get<std::string>();
    } else if (t.is_array()) {
      for (const ojson& entry : t)
        if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template"))
          source = entry["template"].get<std::string>();
      if (source.empty()) throw_error(where, "a list of templates without one named \"default\"");
    } else {
      throw_error(where, "expected a string or a list of {name, template}");
    }
  } else {
    throw_error(model_dir, "no chat template: expected chat_template.jinja or a chat_template field in tokenizer_config.json");
  }
  try {
    return from_string(source, token_text(config, "bos_token"), token_text(config, "eos_token"));
  } catch (const Error& e) {
    throw_error(where, e.what());
  }
}

std::string ChatTemplate::render(const ojson& messages, bool add_generation_prompt, const ojson& tools,
                                 const ojson& extra) const {
  if (!messages.is_array()) throw_error("chat", "messages must be a JSON array");
  for (size_t i = 0; i < messages.size(); ++i)
    if (!messages[i].is_object() || !messages[i].contains("role") || !messages[i]["role"].is_string())
      throw_error("chat", "message " + std::to_string(i) + " needs a string 'role'");
  // As transformers does: a message's reasoning under any of its names is also readable as
  // `thinking` (first key) and `reasoning_content` (last key, unless already present).
  ojson aliased = ojson::array();
  for (const ojson& message : messages) {
    const ojson* reasoning = nullptr;
    for (const char* key : {"reasoning_content", "thinking", "reasoning"})
      if (reasoning == nullptr && message.contains(key) && !message[key].is_null()) reasoning = &message[key];
    if (reasoning == nullptr) {
      aliased.push_back(message);
      continue;
    }
    ojson copy = ojson::object();
    copy["thinking"] = *reasoning;
    for (const auto& [k, v] : message.items()) copy[k] = v;
    copy["reasoning_content"] = *reasoning;
    aliased.push_back(std::move(copy));
  }
  ojson context = ojson::object();
  context["messages"] = std::move(aliased);
  context["tools"] = tools;
  context["documents"] = nullptr;
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = bos_token_;
  context["eos_token"] = eos_token_;
  if (extra.is_object())
    for (const auto& [k, v] : extra.items()) context[k] = v;
  return template_->render(context);
}

}  // namespace jetlm
