// The OpenAI-compatible request layer: strict validation of /v1/completions and
// /v1/chat/completions bodies into scheduler requests, and the response / error JSON. Pure
// functions of their inputs (no sockets), so the unit tests drive them directly.
#pragma once

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "jetlm/chat_template.h"
#include "jetlm/tokenizer.h"
#include "server/scheduler.h"

namespace jetlm::server {

// A request the server turns away: HTTP status plus an OpenAI-style error body
// {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::exception {
  ApiError(int status, std::string message, std::string param = {}, std::string code = {},
           std::string type = "invalid_request_error")
      : status(status), message(std::move(message)), param(std::move(param)), code(std::move(code)),
        type(std::move(type)) {}
  const char* what() const noexcept override { return message.c_str(); }
  int status;
  std::string message, param, code, type;
};

nlohmann::json error_body(const ApiError& e);

enum class Endpoint { Completions, Chat };

// What the validation needs to know about the served model.
struct ApiContext {
  const Tokenizer* tokenizer = nullptr;          // required
  const ChatTemplate* chat_template = nullptr;   // null: chat requests get a 400
  std::string model_name;                        // the id /v1/models lists; `model` must match it
  int64_t vocab = 0;
  int64_t context_limit = 0;                     // tokens per slot (prompt + completion)
  std::vector<int32_t> eos_ids;                  // completions stop at these
  std::vector<int32_t> chat_stop_ids;            // chat: eos ids plus the end-of-turn token
};

struct ApiRequest {
  Endpoint endpoint = Endpoint::Completions;
  RequestOptions options;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Validates a parsed JSON body: every field's type and range, unknown fields (400 naming the
// field), the model name (404), the prompt against the context (400 context_length_exceeded).
// Throws ApiError.
ApiRequest parse_request(const nlohmann::json& body, Endpoint endpoint, const ApiContext& context);

// Parses the raw body; malformed JSON or a non-object throws ApiError 400.
nlohmann::json parse_body(const std::string& body);

}  // namespace jetlm::server
