// Request validation of the OpenAI-compatible API (server/api.h), without sockets: every field's
// type and range, unknown fields, the model name, the context, chat rendering.
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>

#include "server/api.h"
#include "test_util.h"

namespace jetlm::server {
namespace {

using json = nlohmann::json;

class Api : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = test::shared_dir() + "/hf/jet-nemotron";
    if (!std::filesystem::exists(dir + "/tokenizer.json")) return;
    tokenizer_ = Tokenizer::load(dir).release();
    chat_ = new ChatTemplate(ChatTemplate::load(dir));
  }
  void SetUp() override {
    if (tokenizer_ == nullptr) GTEST_SKIP() << "no shared tokenizer (../shared/hf/jet-nemotron)";
    ctx_.tokenizer = tokenizer_;
    ctx_.chat_template = chat_;
    ctx_.model_name = "m";
    ctx_.vocab = 151936;
    ctx_.context_limit = 64;
    ctx_.eos_ids = {151643};
    ctx_.chat_stop_ids = {151643, 151645};
  }
  // The status and `param` of the error a body gets, or (0, "") when it is accepted.
  std::pair<int, std::string> error_of(const json& body, Endpoint endpoint = Endpoint::Completions) {
    try {
      parse_request(body, endpoint, ctx_);
      return {0, ""};
    } catch (const ApiError& e) {
      EXPECT_FALSE(e.message.empty());
      const json err = error_body(e)["error"];
      EXPECT_TRUE(err.contains("message") && err.contains("type") && err.contains("param") && err.contains("code"));
      return {e.status, e.param};
    }
  }
  json ok() const { return {{"model", "m"}, {"prompt", "hello"}}; }
  json with(const char* key, const json& value) const {
    json b = ok();
    b[key] = value;
    return b;
  }

  static inline Tokenizer* tokenizer_ = nullptr;
  static inline ChatTemplate* chat_ = nullptr;
  ApiContext ctx_;
};

TEST_F(Api, DefaultsAndAcceptedFields) {
  const ApiRequest r = parse_request(ok(), Endpoint::Completions, ctx_);
  EXPECT_EQ(r.options.prompt, tokenizer_->encode("hello"));
  EXPECT_EQ(r.options.max_tokens, 16);  // OpenAI's completions default
  EXPECT_EQ(r.options.sampling.temperature, 1.0f);
  EXPECT_EQ(r.options.stop_ids, ctx_.eos_ids);
  EXPECT_FALSE(r.stream);
  // What the openai client may send with harmless values.
  json b = ok();
  b.update({{"n", 1}, {"user", "u"}, {"logprobs", nullptr}, {"echo", false}, {"stream", true},
            {"stream_options", {{"include_usage", true}}}, {"seed", -5}, {"stop", "x"}, {"top_k", -1},
            {"temperature", 0}, {"max_tokens", 60}, {"logit_bias", json::object()}, {"ignore_eos", true}});
  const ApiRequest s = parse_request(b, Endpoint::Completions, ctx_);
  EXPECT_TRUE(s.stream && s.include_usage);
  EXPECT_EQ(s.options.sampling.seed, uint64_t(int64_t(-5)));
  EXPECT_EQ(s.options.sampling.top_k, 0);
  EXPECT_TRUE(s.options.stop_ids.empty());
  EXPECT_EQ(s.options.stop_strings, std::vector<std::string>{"x"});
  // Token-id prompts.
  EXPECT_EQ(parse_request(with("prompt", {1, 2, 3}), Endpoint::Completions, ctx_).options.prompt,
            (std::vector<int32_t>{1, 2, 3}));
}

TEST_F(Api, TypesRangesAndUnknownFields) {
  EXPECT_EQ(error_of(with("frobnicate", 1)), std::make_pair(400, std::string("frobnicate")));
  EXPECT_EQ(error_of(with("temperature", "hot")), std::make_pair(400, std::string("temperature")));
  EXPECT_EQ(error_of(with("temperature", 2.5)), std::make_pair(400, std::string("temperature")));
  EXPECT_EQ(error_of(with("top_p", 0)), std::make_pair(400, std::string("top_p")));
  EXPECT_EQ(error_of(with("top_p", true)), std::make_pair(400, std::string("top_p")));
  EXPECT_EQ(error_of(with("min_p", -0.1)), std::make_pair(400, std::string("min_p")));
  EXPECT_EQ(error_of(with("presence_penalty", 3)), std::make_pair(400, std::string("presence_penalty")));
  EXPECT_EQ(error_of(with("frequency_penalty", "x")), std::make_pair(400, std::string("frequency_penalty")));
  EXPECT_EQ(error_of(with("seed", 1.5)), std::make_pair(400, std::string("seed")));
  EXPECT_EQ(error_of(with("max_tokens", -1)), std::make_pair(400, std::string("max_tokens")));
  EXPECT_EQ(error_of(with("max_tokens", 0)), std::make_pair(400, std::string("max_tokens")));
  EXPECT_EQ(error_of(with("max_tokens", 1e30)), std::make_pair(400, std::string("max_tokens")));
  EXPECT_EQ(error_of(with("max_tokens", json(uint64_t(1) << 63))), std::make_pair(400, std::string("max_tokens")));
  EXPECT_EQ(error_of(with("max_tokens", 64)), std::make_pair(400, std::string("max_tokens")));  // prompt + 64 > 64
  // prompt + max_tokens must not overflow into an accepted request (it crashed the engine thread).
  EXPECT_EQ(error_of(with("max_tokens", std::numeric_limits<int64_t>::max())), std::make_pair(400, std::string("max_tokens")));
  EXPECT_EQ(error_of(with("max_tokens", std::numeric_limits<int64_t>::max() - 1)), std::make_pair(400, std::string("max_tokens")));
  json chat = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}},
               {"max_completion_tokens", std::numeric_limits<int64_t>::max()}};
  EXPECT_EQ(error_of(chat, Endpoint::Chat), std::make_pair(400, std::string("max_tokens")));
  EXPECT_EQ(error_of(with("n", 2)), std::make_pair(400, std::string("n")));
  EXPECT_EQ(error_of(with("stream", 1)), std::make_pair(400, std::string("stream")));
  EXPECT_EQ(error_of(with("stream_options", {{"include_usage", true}})), std::make_pair(400, std::string("stream_options")));
  EXPECT_EQ(error_of(with("stop", json::array({"a", "b", "c", "d", "e"}))), std::make_pair(400, std::string("stop")));
  EXPECT_EQ(error_of(with("stop", "")), std::make_pair(400, std::string("stop")));
  EXPECT_EQ(error_of(with("stop", 5)), std::make_pair(400, std::string("stop")));
  EXPECT_EQ(error_of(with("logprobs", 3)), std::make_pair(400, std::string("logprobs")));
  EXPECT_EQ(error_of(with("echo", true)), std::make_pair(400, std::string("echo")));
  EXPECT_EQ(error_of(with("logit_bias", {{"5", 10}})), std::make_pair(400, std::string("logit_bias")));
  EXPECT_EQ(error_of(with("model", 5)), std::make_pair(400, std::string("model")));
  EXPECT_EQ(error_of(with("model", "other")), std::make_pair(404, std::string("model")));
  EXPECT_EQ(error_of({{"prompt", "x"}}), std::make_pair(400, std::string("model")));
  EXPECT_EQ(error_of({{"model", "m"}}), std::make_pair(400, std::string("prompt")));
}

TEST_F(Api, PromptChecks) {
  EXPECT_EQ(error_of(with("prompt", "")), std::make_pair(400, std::string("prompt")));
  EXPECT_EQ(error_of(with("prompt", {1, 151936})), std::make_pair(400, std::string("prompt")));
  EXPECT_EQ(error_of(with("prompt", {1, -2})), std::make_pair(400, std::string("prompt")));
  EXPECT_EQ(error_of(with("prompt", {"a", "b"})), std::make_pair(400, std::string("prompt")));
  EXPECT_EQ(error_of(with("prompt", 7)), std::make_pair(400, std::string("prompt")));
  EXPECT_EQ(error_of(with("prompt", std::vector<int>(64, 5))), std::make_pair(400, std::string("prompt")));
  try {
    parse_request(with("prompt", std::vector<int>(100, 5)), Endpoint::Completions, ctx_);
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.code, "context_length_exceeded");
  }
  // The whole context may be used: 63 prompt tokens and 1 to generate.
  EXPECT_EQ(parse_request(with("prompt", std::vector<int>(63, 5)), Endpoint::Completions, ctx_).options.max_tokens, 1);
}

TEST_F(Api, MalformedBodies) {
  for (const char* text : {"", "{", "[1,2]", "null", "\"x\"", "{\"a\":}"}) {
    try {
      parse_body(text);
      FAIL() << text;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400) << text;
    }
  }
  EXPECT_TRUE(parse_body("{\"a\": 1}").is_object());
}

TEST_F(Api, ChatRendersTheTemplate) {
  json body = {{"model", "m"},
               {"messages", {{{"role", "system"}, {"content", "Be brief."}},
                             {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Hi"}}}}}}}};
  const ApiRequest r = parse_request(body, Endpoint::Chat, ctx_);
  nlohmann::ordered_json messages = {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}};
  EXPECT_EQ(r.options.prompt, tokenizer_->encode(chat_->render(messages, true)));
  EXPECT_EQ(r.options.stop_ids, ctx_.chat_stop_ids);
  EXPECT_EQ(r.options.max_tokens, ctx_.context_limit - int64_t(r.options.prompt.size()));  // chat default: the rest
  EXPECT_EQ(error_of({{"model", "m"}, {"messages", json::array()}}, Endpoint::Chat), std::make_pair(400, std::string("messages")));
  EXPECT_EQ(error_of({{"model", "m"}, {"messages", "hi"}}, Endpoint::Chat), std::make_pair(400, std::string("messages")));
  EXPECT_EQ(error_of({{"model", "m"}, {"messages", {{{"role", "bot"}, {"content", "x"}}}}}, Endpoint::Chat),
            std::make_pair(400, std::string("messages[0].role")));
  EXPECT_EQ(error_of({{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "x"}, {"extra", 1}}}}}, Endpoint::Chat),
            std::make_pair(400, std::string("messages[0].extra")));
  EXPECT_EQ(error_of({{"model", "m"}, {"messages", {{{"role", "user"}}}}}, Endpoint::Chat),
            std::make_pair(400, std::string("messages[0].content")));
  EXPECT_EQ(error_of({{"model", "m"}, {"prompt", "x"}, {"messages", {{{"role", "user"}, {"content", "x"}}}}}, Endpoint::Chat),
            std::make_pair(400, std::string("prompt")));  // prompt is not a chat field
  ApiContext no_template = ctx_;
  no_template.chat_template = nullptr;
  EXPECT_THROW(parse_request({{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "x"}}}}}, Endpoint::Chat, no_template),
               ApiError);
}

}  // namespace
}  // namespace jetlm::server
