// Chat templates: every golden conversation of tests/tokenizer/data/chat_goldens.json (rendered by
// transformers' apply_chat_template, see tests/reference/make_chat_goldens.py) renders to exactly
// the same text through ChatTemplate, or fails where transformers fails; loading from a model
// directory follows transformers' precedence.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "jetlm/chat_template.h"
#include "test_util.h"

namespace jetlm {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

std::string data_dir() { return test::source_dir() + "/tests/tokenizer/data"; }

const ojson& goldens() {
  static const ojson parsed = ojson::parse(test::slurp(data_dir() + "/chat_goldens.json"));
  return parsed;
}

// "first difference at byte N" with some context from both sides: enough to see a whitespace slip.
std::string describe_difference(const std::string& expected, const std::string& got) {
  size_t at = 0;
  while (at < got.size() && at < expected.size() && got[at] == expected[at]) ++at;
  const size_t from = at > 60 ? at - 60 : 0;
  return "first difference at byte " + std::to_string(at) + " (expected " + std::to_string(expected.size()) +
         " bytes, got " + std::to_string(got.size()) + ")\nexpected: ..." + ojson(expected.substr(from, 160)).dump() +
         "\ngot:      ..." + ojson(got.substr(from, 160)).dump();
}

TEST(ChatTemplate, MatchesTransformersOnEveryGoldenConversation) {
  const ojson& g = goldens();
  const std::string bos = g["special_tokens"].value("bos_token", ""), eos = g["special_tokens"].value("eos_token", "");
  std::map<std::string, ChatTemplate> templates;
  std::map<std::string, int> passed, total;
  std::map<std::string, std::set<size_t>> conversations;
  for (const ojson& c : g["cases"]) {
    const std::string name = c["template"];
    if (!templates.count(name))
      templates.emplace(name, ChatTemplate::from_string(test::slurp(data_dir() + "/templates/" + name), bos, eos));
    ++total[name];
    const size_t index = c["conversation"];
    conversations[name].insert(index);
    const ojson& messages = g["conversations"][index];
    std::string got, error;
    try {
      got = templates.at(name).render(messages, c["add_generation_prompt"], c["tools"] ? g["tools"] : ojson(nullptr),
                                      c["extra"]);
    } catch (const Error& e) {
      error = e.what();
    }
    const std::string where = name + " conversation " + std::to_string(index) + " " + messages.dump() +
                              " add_generation_prompt=" + c["add_generation_prompt"].dump() + " tools=" +
                              c["tools"].dump() + " extra=" + c["extra"].dump();
    if (c["expected"].is_null()) {
      if (!error.empty()) ++passed[name];
      else ADD_FAILURE() << where << "\ntransformers raised (" << c["error"] << ") but jetlm rendered\n" << got;
      continue;
    }
    if (error.empty() && got == c["expected"].get<std::string>()) {
      ++passed[name];
      continue;
    }
    ADD_FAILURE() << where << "\nerror: " << error << "\n" << describe_difference(c["expected"], got);
  }
  for (const auto& [name, n] : total)
    std::printf("  %-32s %3d/%3d cases exact (%zu conversations)\n", name.c_str(), passed[name], n,
                conversations[name].size());
  EXPECT_GE(templates.size(), 6u);
  for (const auto& [name, seen] : conversations) EXPECT_GE(seen.size(), 40u) << name;
}

TEST(ChatTemplate, LoadsFromModelDirectory) {
  const std::string dir = test::shared_dir() + "/hf/jet-nemotron";
  if (!fs::exists(dir + "/tokenizer_config.json")) GTEST_SKIP() << "../shared/hf not present";
  const ChatTemplate t = ChatTemplate::load(dir);
  const ojson messages = ojson::parse(R"([{"role": "user", "content": "Hi"}])");
  EXPECT_EQ(t.render(messages, true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

// A scratch model directory holding only what a test writes into it.
class ScratchDir {
 public:
  ScratchDir() : path_(fs::temp_directory_path() / ("jetlm_chat_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++))) {
    fs::create_directories(path_);
  }
  ~ScratchDir() { fs::remove_all(path_); }
  void write(const std::string& name, const std::string& text) const { std::ofstream(path_ / name, std::ios::binary) << text; }
  std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

std::string error_of_load(const ScratchDir& dir) {
  try {
    ChatTemplate::load(dir.path());
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ChatTemplate, TemplateSourcesAndSpecialTokensFollowTransformers) {
  const ojson hi = ojson::parse(R"([{"role": "user", "content": "Hi"}])");
  {
    // A list of named templates: "default" is used; bos/eos may be AddedToken objects; a null bos is
    // left undefined, as transformers leaves it out of the template variables.
    ScratchDir dir;
    dir.write("tokenizer_config.json", R"({"bos_token": null, "eos_token": {"content": "</s>", "special": true},
      "pad_token": "<pad>", "chat_template": [{"name": "tool_use", "template": "T"},
      {"name": "default", "template": "{{ bos_token is defined }}|{{ eos_token }}|{{ pad_token }}|{{ messages[0].content }}"}]})");
    EXPECT_EQ(ChatTemplate::load(dir.path()).render(hi, false), "False|</s>|<pad>|Hi");
  }
  {
    // chat_template.jinja wins over the config's field.
    ScratchDir dir;
    dir.write("tokenizer_config.json", R"({"bos_token": "<s>", "chat_template": "from config"})");
    dir.write("chat_template.jinja", "{{ bos_token }}from file");
    EXPECT_EQ(ChatTemplate::load(dir.path()).render(hi, false), "<s>from file");
  }
  {
    ScratchDir dir;
    dir.write("tokenizer_config.json", R"({"chat_template": [{"name": "tool_use", "template": "T"}]})");
    EXPECT_NE(error_of_load(dir).find("\"default\""), std::string::npos) << error_of_load(dir);
  }
  {
    ScratchDir dir;
    dir.write("tokenizer_config.json", R"({"eos_token": "</s>"})");
    EXPECT_NE(error_of_load(dir).find("no chat template"), std::string::npos) << error_of_load(dir);
  }
  {
    // A syntax error names the file, the line and the construct.
    ScratchDir dir;
    dir.write("chat_template.jinja", "ok\n{% frobnicate %}");
    const std::string error = error_of_load(dir);
    EXPECT_NE(error.find("chat_template.jinja"), std::string::npos) << error;
    EXPECT_NE(error.find("line 2"), std::string::npos) << error;
    EXPECT_NE(error.find("frobnicate"), std::string::npos) << error;
  }
}

TEST(ChatTemplate, MessagesAreNormalizedAsTransformersDoes) {
  const ChatTemplate t = ChatTemplate::from_string(
      "{% for m in messages %}{{ m.role }}:{{ m.content is defined }}:{{ m.reasoning_content | default('-') }}"
      "{{ m.thinking | default('-') }};{% endfor %}{{ tools | length }}{{ enable_thinking }}");
  // None-valued keys are dropped; reasoning under any name is readable as reasoning_content and thinking.
  const ojson messages = ojson::parse(R"([{"role": "user", "content": null},
      {"role": "assistant", "content": "a", "reasoning": "r"}])");
  EXPECT_EQ(t.render(messages, false, ojson::parse(R"([{"a": 1}])"), {{"enable_thinking", false}}),
            "user:False:--;assistant:True:rr;1False");
  try {
    t.render(ojson::array(), false);
    ADD_FAILURE() << "an empty conversation rendered";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.render(ojson::parse(R"(["not an object"])"), false), Error);
  // transformers does not insist on a role: the template decides.
  EXPECT_EQ(ChatTemplate::from_string("{{ messages[0].role is defined }}").render(ojson::parse(R"([{"content": "x"}])"), false),
            "False");
}

}  // namespace
}  // namespace jetlm
