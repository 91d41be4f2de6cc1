#include "server/api.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <set>

#include "core/error.h"

namespace jetlm::server {

using json = nlohmann::json;

json error_body(const ApiError& e) {
  json error = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) error["param"] = e.param;
  if (!e.code.empty()) error["code"] = e.code;
  return json{{"error", error}};
}

json parse_body(const std::string& body) {
  json parsed;
  try {
    parsed = json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, std::string("We could not parse the JSON body of your request: ") + e.what() +
                            " (expected a JSON object, e.g. {\"model\": ..., \"prompt\": ...})");
  }
  if (!parsed.is_object())
    throw ApiError(400, std::string("The request body must be a JSON object, got ") + parsed.type_name());
  return parsed;
}

namespace {

std::string type_of(const json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number_float()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

[[noreturn]] void bad_type(const std::string& param, const json& v, const std::string& expected) {
  bad(param, "Invalid type for '" + param + "': expected " + expected + ", but got " + type_of(v) + ".");
}

// Field readers: absent or null -> nullopt; a wrong type or range -> 400 naming the field.
std::optional<double> number(const json& body, const char* name, double lo, double hi) {
  if (!body.contains(name) || body[name].is_null()) return std::nullopt;
  const json& v = body[name];
  if (!v.is_number()) bad_type(name, v, "a number");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(name, "Invalid value for '" + std::string(name) + "': " + v.dump() + " is out of range, expected " +
                  json(lo).dump() + " to " + json(hi).dump() + ".");
  return x;
}

std::optional<int64_t> integer(const json& body, const char* name, int64_t lo, int64_t hi) {
  if (!body.contains(name) || body[name].is_null()) return std::nullopt;
  const json& v = body[name];
  if (!v.is_number_integer()) bad_type(name, v, "an integer");
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    bad(name, "Invalid value for '" + std::string(name) + "': " + v.dump() + " is too large.");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    bad(name, "Invalid value for '" + std::string(name) + "': " + v.dump() + " is out of range, expected " +
                  (hi == std::numeric_limits<int64_t>::max() ? "at least " + std::to_string(lo)
                                                             : std::to_string(lo) + " to " + std::to_string(hi)) + ".");
  return x;
}

std::optional<bool> boolean(const json& body, const char* name) {
  if (!body.contains(name) || body[name].is_null()) return std::nullopt;
  if (!body[name].is_boolean()) bad_type(name, body[name], "a boolean");
  return body[name].get<bool>();
}

// Fields that OpenAI clients send but this server cannot honour beyond their default: accepted
// only with that default value, so a client never silently gets something it did not ask for.
void only_default(const json& body, const char* name, const std::function<bool(const json&)>& is_default,
                  const std::string& what) {
  if (!body.contains(name) || body[name].is_null()) return;
  if (!is_default(body[name]))
    bad(name, "Unsupported value for '" + std::string(name) + "': " + body[name].dump() + "; this server supports " +
                  what + ".");
}

const std::set<std::string>& allowed_fields(Endpoint endpoint) {
  static const std::set<std::string> common = {
      "model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "n", "stream",
      "stream_options", "presence_penalty", "frequency_penalty", "repetition_penalty", "user",
      "logprobs", "logit_bias", "ignore_eos"};
  static const std::set<std::string> completions = [] {
    std::set<std::string> s = common;
    s.insert({"prompt", "echo", "best_of", "suffix"});
    return s;
  }();
  static const std::set<std::string> chat = [] {
    std::set<std::string> s = common;
    s.insert({"messages", "max_completion_tokens", "top_logprobs", "chat_template_kwargs", "response_format"});
    return s;
  }();
  return endpoint == Endpoint::Chat ? chat : completions;
}

std::vector<std::string> read_stop(const json& body) {
  std::vector<std::string> stops;
  if (!body.contains("stop") || body["stop"].is_null()) return stops;
  const json& v = body["stop"];
  if (v.is_string()) {
    stops.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    if (v.size() > 4) bad("stop", "Invalid value for 'stop': at most 4 stop sequences are allowed, got " + std::to_string(v.size()) + ".");
    for (const json& s : v) {
      if (!s.is_string()) bad_type("stop", s, "a string or an array of strings");
      stops.push_back(s.get<std::string>());
    }
  } else {
    bad_type("stop", v, "a string or an array of strings");
  }
  for (const std::string& s : stops)
    if (s.empty()) bad("stop", "Invalid value for 'stop': stop sequences must not be empty.");
  return stops;
}

// Message content: a string, or an array of {"type": "text", "text": ...} parts (joined).
std::string message_text(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {
    std::string text;
    for (size_t i = 0; i < content.size(); ++i) {
      const json& part = content[i];
      const std::string at = where + "[" + std::to_string(i) + "]";
      if (!part.is_object() || !part.contains("type") || part["type"] != "text")
        bad(at, "Invalid content part '" + at + "': only {\"type\": \"text\", \"text\": ...} parts are supported.");
      for (const auto& [key, value] : part.items())
        if (key != "type" && key != "text") bad(at + "." + key, "Unrecognized field '" + at + "." + key + "'.");
      if (!part.contains("text") || !part["text"].is_string()) bad(at + ".text", "'" + at + ".text' must be a string.");
      text += part["text"].get<std::string>();
    }
    return text;
  }
  bad_type(where, content, "a string or an array of text parts");
}

nlohmann::ordered_json read_messages(const json& body) {
  if (!body.contains("messages")) bad("messages", "Missing required parameter: 'messages'.");
  const json& v = body["messages"];
  if (!v.is_array()) bad_type("messages", v, "an array of messages");
  if (v.empty()) bad("messages", "Invalid value for 'messages': expected at least one message.");
  static const std::set<std::string> roles = {"system", "developer", "user", "assistant", "tool"};
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string where = "messages[" + std::to_string(i) + "]";
    const json& m = v[i];
    if (!m.is_object()) bad_type(where, m, "an object");
    for (const auto& [key, value] : m.items())
      if (key != "role" && key != "content" && key != "name")
        bad(where + "." + key, "Unrecognized field '" + where + "." + key + "' (supported: role, content, name).");
    if (!m.contains("role") || !m["role"].is_string()) bad(where + ".role", "'" + where + ".role' must be a string.");
    const std::string role = m["role"].get<std::string>();
    if (!roles.count(role))
      bad(where + ".role", "Invalid value for '" + where + ".role': '" + role +
                               "', expected one of system, developer, user, assistant, tool.");
    std::string content;
    if (m.contains("content") && !m["content"].is_null()) content = message_text(m["content"], where + ".content");
    else if (role != "assistant") bad(where + ".content", "Missing required parameter: '" + where + ".content'.");
    // The Qwen-family templates know "system", not "developer" (OpenAI's newer name for it).
    nlohmann::ordered_json out = {{"role", role == "developer" ? "system" : role}, {"content", content}};
    if (m.contains("name") && !m["name"].is_null()) {
      if (!m["name"].is_string()) bad_type(where + ".name", m["name"], "a string");
      out["name"] = m["name"];
    }
    messages.push_back(out);
  }
  return messages;
}

std::vector<int32_t> read_prompt(const json& body, const ApiContext& ctx) {
  if (!body.contains("prompt")) bad("prompt", "Missing required parameter: 'prompt'.");
  const json& v = body["prompt"];
  auto check_id = [&](const json& id, size_t i) {
    if (!id.is_number_integer()) bad_type("prompt", id, "a string, an array of token ids or an array with one string");
    const int64_t x = id.get<int64_t>();
    if (x < 0 || x >= ctx.vocab || (id.is_number_unsigned() && id.get<uint64_t>() >= uint64_t(ctx.vocab)))
      bad("prompt", "Invalid token id " + id.dump() + " at prompt position " + std::to_string(i) + ", expected 0.." +
                        std::to_string(ctx.vocab - 1) + ".");
    return int32_t(x);
  };
  if (v.is_string()) return ctx.tokenizer->encode(v.get<std::string>());
  if (v.is_array()) {
    if (v.size() == 1 && v[0].is_string()) return ctx.tokenizer->encode(v[0].get<std::string>());
    if (!v.empty() && (v[0].is_string() || v[0].is_array()))
      bad("prompt", "Invalid value for 'prompt': only one prompt per request is supported (n = 1, no batches).");
    std::vector<int32_t> ids;
    for (size_t i = 0; i < v.size(); ++i) ids.push_back(check_id(v[i], i));
    return ids;
  }
  bad_type("prompt", v, "a string, an array of token ids or an array with one string");
}

}  // namespace

ApiRequest parse_request(const json& body, Endpoint endpoint, const ApiContext& ctx) {
  JETLM_ASSERT(ctx.tokenizer != nullptr);
  if (!body.is_object()) throw ApiError(400, "The request body must be a JSON object.");
  const std::set<std::string>& allowed = allowed_fields(endpoint);
  for (const auto& [key, value] : body.items())
    if (!allowed.count(key)) bad(key, "Unrecognized request argument supplied: " + key);

  if (!body.contains("model")) bad("model", "Missing required parameter: 'model'.");
  if (!body["model"].is_string()) bad_type("model", body["model"], "a string");
  if (body["model"].get<std::string>() != ctx.model_name)
    throw ApiError(404, "The model '" + body["model"].get<std::string>() + "' does not exist; this server serves '" +
                            ctx.model_name + "'.", "model", "model_not_found");

  ApiRequest r;
  r.endpoint = endpoint;
  RequestOptions& o = r.options;
  // Defaults are OpenAI's: temperature 1, top_p 1, no penalties.
  SamplingParams& s = o.sampling;
  s.temperature = float(number(body, "temperature", 0, 2).value_or(1.0));
  s.top_p = float(number(body, "top_p", 0, 1).value_or(1.0));
  if (s.top_p <= 0) bad("top_p", "Invalid value for 'top_p': expected a value in (0, 1].");
  // top_k: -1 means off (as vLLM spells it), like 0.
  s.top_k = int(std::max<int64_t>(0, integer(body, "top_k", -1, std::numeric_limits<int32_t>::max()).value_or(0)));
  s.min_p = float(number(body, "min_p", 0, 1).value_or(0.0));
  s.presence_penalty = float(number(body, "presence_penalty", -2, 2).value_or(0.0));
  s.frequency_penalty = float(number(body, "frequency_penalty", -2, 2).value_or(0.0));
  s.repeat_penalty = float(number(body, "repetition_penalty", 0, 10).value_or(1.0));
  if (s.repeat_penalty <= 0) bad("repetition_penalty", "Invalid value for 'repetition_penalty': expected > 0.");
  s.repeat_last_n = -1;
  if (const auto seed = integer(body, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
    s.seed = uint64_t(*seed);
  else
    s.seed = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  try {
    validate(s);
  } catch (const Error& e) {
    bad("", e.what());
  }

  if (integer(body, "n", 1, 1).value_or(1) != 1) bad("n", "Only n = 1 is supported.");
  r.stream = boolean(body, "stream").value_or(false);
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    const json& so = body["stream_options"];
    if (!so.is_object()) bad_type("stream_options", so, "an object");
    for (const auto& [key, value] : so.items())
      if (key != "include_usage" && key != "continuous_usage_stats")
        bad("stream_options." + key, "Unrecognized field 'stream_options." + key + "'.");
    r.include_usage = boolean(so, "include_usage").value_or(false);
    if (!r.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true.");
  }
  if (body.contains("user") && !body["user"].is_null() && !body["user"].is_string()) bad_type("user", body["user"], "a string");
  only_default(body, "logit_bias", [](const json& v) { return v.is_object() && v.empty(); }, "no logit_bias");
  if (endpoint == Endpoint::Completions) {
    only_default(body, "logprobs", [](const json& v) { return (v.is_number_integer() && v.get<int64_t>() == 0) || v == false; },
                 "no logprobs");
    only_default(body, "echo", [](const json& v) { return v == false; }, "echo = false only");
    only_default(body, "best_of", [](const json& v) { return v.is_number_integer() && v.get<int64_t>() == 1; }, "best_of = 1 only");
    only_default(body, "suffix", [](const json& v) { return v.is_string() && v.get<std::string>().empty(); }, "no suffix");
  } else {
    only_default(body, "logprobs", [](const json& v) { return v == false; }, "no logprobs");
    only_default(body, "top_logprobs", [](const json& v) { return v.is_number_integer() && v.get<int64_t>() == 0; },
                 "no top_logprobs");
    only_default(body, "response_format", [](const json& v) { return v.is_object() && v.size() == 1 && v.value("type", "") == "text"; },
                 "response_format {\"type\": \"text\"} only");
  }
  o.stop_strings = read_stop(body);
  const bool ignore_eos = boolean(body, "ignore_eos").value_or(false);

  if (endpoint == Endpoint::Completions) {
    o.prompt = read_prompt(body, ctx);
    o.label = "completion";
    if (!ignore_eos) o.stop_ids = ctx.eos_ids;
  } else {
    if (ctx.chat_template == nullptr)
      throw ApiError(400, "This model has no chat template (chat_template.jinja or tokenizer_config.json); use /v1/completions.",
                     "messages");
    const nlohmann::ordered_json messages = read_messages(body);
    nlohmann::ordered_json extra = nlohmann::ordered_json::object();
    if (body.contains("chat_template_kwargs") && !body["chat_template_kwargs"].is_null()) {
      if (!body["chat_template_kwargs"].is_object()) bad_type("chat_template_kwargs", body["chat_template_kwargs"], "an object");
      extra = nlohmann::ordered_json::parse(body["chat_template_kwargs"].dump());
    }
    std::string text;
    try {
      text = ctx.chat_template->render(messages, /*add_generation_prompt=*/true, nullptr, extra);
    } catch (const Error& e) {
      bad("messages", std::string("The chat template rejected the messages: ") + e.what());
    }
    o.prompt = ctx.tokenizer->encode(text);
    o.label = "chat";
    if (!ignore_eos) o.stop_ids = ctx.chat_stop_ids;
  }

  const int64_t P = int64_t(o.prompt.size());
  if (P == 0) bad(endpoint == Endpoint::Chat ? "messages" : "prompt", "The prompt is empty (0 tokens); expected at least one token.");
  if (P >= ctx.context_limit)
    throw ApiError(400, "This model's maximum context length is " + std::to_string(ctx.context_limit) +
                            " tokens, however your prompt has " + std::to_string(P) +
                            " tokens, leaving no room for a completion. Please reduce the length of the prompt.",
                   endpoint == Endpoint::Chat ? "messages" : "prompt", "context_length_exceeded");
  std::optional<int64_t> max_tokens = integer(body, "max_tokens", 1, std::numeric_limits<int64_t>::max());
  if (endpoint == Endpoint::Chat)
    if (const auto m = integer(body, "max_completion_tokens", 1, std::numeric_limits<int64_t>::max())) max_tokens = m;
  // Compared as `max_tokens > limit - P`: a max_tokens near INT64_MAX would overflow P + max_tokens.
  if (max_tokens && *max_tokens > ctx.context_limit - P)
    throw ApiError(400, "This model's maximum context length is " + std::to_string(ctx.context_limit) +
                            " tokens. However, you requested " + std::to_string(uint64_t(P) + uint64_t(*max_tokens)) + " tokens (" +
                            std::to_string(P) + " in the prompt, " + std::to_string(*max_tokens) +
                            " for the completion). Please reduce the prompt or the completion length.",
                   "max_tokens", "context_length_exceeded");
  // Defaults as OpenAI's: 16 for completions, the rest of the context for chat.
  o.max_tokens = max_tokens.value_or(endpoint == Endpoint::Completions ? std::min<int64_t>(16, ctx.context_limit - P)
                                                                       : ctx.context_limit - P);
  return r;
}

}  // namespace jetlm::server
