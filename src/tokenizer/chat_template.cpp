#include "jetlm/chat_template.h"

#include <filesystem>

#include "core/error.h"
#include "io/mapped_file.h"
#include "tokenizer/jinja.h"

namespace jetlm {

namespace {

using ojson = nlohmann::ordered_json;

// The special tokens transformers passes to every template (PreTrainedTokenizerBase.special_tokens_map).
constexpr const char* kSpecialTokenNames[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                              "pad_token", "cls_token", "mask_token"};

// A special token in a config: a string or an AddedToken object {content: ...}; null if unset.
ojson token_text(const ojson& v) {
  if (v.is_string()) return v;
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"];
  return nullptr;
}

ojson read_json_object(const std::string& path) {
  ojson parsed = ojson::parse(read_text_file(path), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) throw_error(path, "is not a JSON object");
  return parsed;
}

}  // namespace

ChatTemplate ChatTemplate::from_string(const std::string& source, std::string bos_token, std::string eos_token) {
  ChatTemplate t;
  t.template_ = std::make_shared<const jinja::Template>(source);
  if (!bos_token.empty()) t.special_tokens_["bos_token"] = std::move(bos_token);
  if (!eos_token.empty()) t.special_tokens_["eos_token"] = std::move(eos_token);
  return t;
}

ChatTemplate ChatTemplate::load(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const std::string jinja_path = model_dir + "/chat_template.jinja";
  const std::string config_path = model_dir + "/tokenizer_config.json";
  const std::string map_path = model_dir + "/special_tokens_map.json";
  const ojson config = fs::exists(config_path) ? read_json_object(config_path) : ojson::object();
  std::string source, where;
  if (fs::exists(jinja_path)) {
    source = read_text_file(jinja_path);
    where = jinja_path;
  } else if (config.contains("chat_template") && !config["chat_template"].is_null()) {
    where = config_path + ": chat_template";
    const ojson& t = config["chat_template"];
    if (t.is_string()) {
      source = t.get<std::string>();
    } else if (t.is_array()) {
      bool found = false;
      for (const ojson& entry : t)
        if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") && entry["template"].is_string()) {
          source = entry["template"].get<std::string>();
          found = true;
        }
      if (!found) throw_error(where, "a list of templates without one named \"default\"");
    } else {
      throw_error(where, "expected a string or a list of {name, template}, got " + std::string(t.type_name()));
    }
  } else {
    throw_error(model_dir, "no chat template: expected chat_template.jinja or a chat_template field in tokenizer_config.json");
  }
  ChatTemplate result;
  try {
    result.template_ = std::make_shared<const jinja::Template>(source);
  } catch (const Error& e) {
    throw_error(where, e.what());
  }
  ojson tokens = ojson::object();
  for (const char* name : kSpecialTokenNames)
    if (config.contains(name)) tokens[name] = token_text(config[name]);
  // Legacy layout: without added_tokens_decoder, transformers lets special_tokens_map.json override.
  if (!config.contains("added_tokens_decoder") && fs::exists(map_path)) {
    const ojson map = read_json_object(map_path);
    for (const char* name : kSpecialTokenNames)
      if (map.contains(name)) tokens[name] = token_text(map[name]);
  }
  for (const char* name : kSpecialTokenNames)
    if (tokens.contains(name) && tokens[name].is_string()) result.special_tokens_[name] = tokens[name];
  return result;
}

std::string ChatTemplate::render(const ojson& messages, bool add_generation_prompt, const ojson& tools,
                                 const ojson& extra) const {
  if (!messages.is_array()) throw_error("chat", "messages must be a JSON array, got " + std::string(messages.type_name()));
  if (messages.empty()) throw_error("chat", "cannot apply a chat template to an empty conversation");
  ojson normalized = ojson::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const ojson& message = messages[i];
    if (!message.is_object())
      throw_error("chat", "message " + std::to_string(i) + " must be a JSON object, got " + std::string(message.type_name()));
    // apply_chat_template drops null-valued keys (an OpenAI-style content: null reads as undefined)...
    ojson kept = ojson::object();
    for (const auto& [k, v] : message.items())
      if (!v.is_null()) kept[k] = v;
    // ...then exposes reasoning as `thinking` (first key) and `reasoning_content` (last key).
    const ojson* reasoning = nullptr;
    for (const char* key : {"reasoning_content", "thinking", "reasoning"})
      if (reasoning == nullptr && kept.contains(key)) reasoning = &kept[key];
    if (reasoning == nullptr) {
      normalized.push_back(std::move(kept));
      continue;
    }
    ojson aliased = ojson::object();
    aliased["thinking"] = *reasoning;
    for (const auto& [k, v] : kept.items()) aliased[k] = v;
    aliased["reasoning_content"] = *reasoning;
    normalized.push_back(std::move(aliased));
  }
  ojson context = special_tokens_;
  if (extra.is_object())
    for (const auto& [k, v] : extra.items()) context[k] = v;
  else if (!extra.is_null())
    throw_error("chat", "extra template variables must be a JSON object, got " + std::string(extra.type_name()));
  context["messages"] = std::move(normalized);
  context["tools"] = tools;
  context["documents"] = nullptr;
  context["add_generation_prompt"] = add_generation_prompt;
  return template_->render(context);
}

}  // namespace jetlm
