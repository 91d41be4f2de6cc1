// Chat templates: every conversation of tests/tokenizer/data/chat_goldens.json (rendered by
// transformers, see tests/reference/make_chat_goldens.py) renders to exactly the same text, or
// fails where transformers fails; plus interpreter unit tests and bad-template errors.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "jetlm/chat_template.h"
#include "test_util.h"
#include "tokenizer/jinja.h"

namespace jetlm {
namespace {

using ojson = nlohmann::ordered_json;

std::string data_dir() { return test::source_dir() + "/tests/tokenizer/data"; }

std::string render(const std::string& source, const ojson& context = ojson::object()) {
  return jinja::Template(source).render(context);
}

std::string error_of(const std::string& source, const ojson& context = ojson::object()) {
  try {
    render(source, context);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ChatTemplate, MatchesTransformersOnEveryGoldenConversation) {
  const ojson goldens = ojson::parse(test::slurp(data_dir() + "/chat_goldens.json"));
  const std::string bos = goldens["bos_token"], eos = goldens["eos_token"];
  std::map<std::string, ChatTemplate> templates;
  std::map<std::string, int> passed, total;
  for (const ojson& c : goldens["cases"]) {
    const std::string name = c["template"];
    if (!templates.count(name))
      templates.emplace(name, ChatTemplate::from_string(test::slurp(data_dir() + "/templates/" + name), bos, eos));
    ++total[name];
    std::string got, error;
    try {
      got = templates.at(name).render(c["messages"], c["add_generation_prompt"], c["tools"], c["extra"]);
    } catch (const Error& e) {
      error = e.what();
    }
    if (c["expected"].is_null()) {
      EXPECT_FALSE(error.empty()) << name << ": transformers raised (" << c["error"] << ") but jetlm rendered\n" << got;
      if (!error.empty()) ++passed[name];
      continue;
    }
    const std::string expected = c["expected"];
    if (got == expected && error.empty()) {
      ++passed[name];
      continue;
    }
    size_t at = 0;
    while (at < got.size() && at < expected.size() && got[at] == expected[at]) ++at;
    ADD_FAILURE() << name << " messages=" << c["messages"].dump() << " agp=" << c["add_generation_prompt"]
                  << "\nerror: " << error << "\nfirst difference at byte " << at << "\nexpected: ..."
                  << expected.substr(at > 40 ? at - 40 : 0, 120) << "\ngot:      ..." << got.substr(at > 40 ? at - 40 : 0, 120);
  }
  for (const auto& [name, n] : total) std::printf("  %s: %d/%d conversations exact\n", name.c_str(), passed[name], n);
  EXPECT_GE(goldens["cases"].size(), 120u);
}

TEST(ChatTemplate, LoadsFromModelDirectory) {
  const std::string dir = test::shared_dir() + "/hf/jet-nemotron";
  const ChatTemplate t = ChatTemplate::load(dir);
  const ojson messages = ojson::parse(R"([{"role": "user", "content": "Hi"}])");
  EXPECT_EQ(t.render(messages, true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(Jinja, ExpressionsFiltersAndTests) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 1 / 2 }}"), "7 3 -4 1 1024 0.5");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none ~ true }}"), "a1NoneTrue");
  EXPECT_EQ(render("{{ [1, 'x', none] }} {{ {'k': 'v'} }}"), "[1, 'x', None] {'k': 'v'}");
  EXPECT_EQ(render("{{ x | tojson }}", {{"x", ojson::parse(R"({"b": [1, 2.5, "é\n"], "a": null, "t": true})")}}),
            R"({"b": [1, 2.5, "é\n"], "a": null, "t": true})");
  EXPECT_EQ(render("{{ x | tojson(indent=2) }}", {{"x", ojson::parse(R"({"a": [1]})")}}), "{\n  \"a\": [\n    1\n  ]\n}");
  EXPECT_EQ(render("{{ 'héllo' | length }} {{ [1,2,3] | length }} {{ 'Ab' | upper }}{{ 'Ab' | lower }}"), "5 3 ABab");
  EXPECT_EQ(render("{{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}"),
            "x|hi|['a', 'b', '', 'c']|['a', 'b']");
  EXPECT_EQ(render("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'b' in 'abc' }} {{ 2 not in [1] }}"),
            "True True True True");
  EXPECT_EQ(render("{{ x is defined }} {{ y is none }} {{ 'a' is string }} {{ {} is mapping }} {{ 3 is not string }}",
                   {{"y", nullptr}}),
            "False True True True True");
  EXPECT_EQ(render("{{ [1,2,3,4][::-1] }} {{ [1,2,3,4][1:3] }} {{ 'hello'[-3:] }} {{ [1,2,3][-1] }}"),
            "[4, 3, 2, 1] [2, 3] llo 3");
  EXPECT_EQ(render("{{ x | default('d') }} {{ '' | default('e', true) }} {{ [3,1] | first }} {{ ['a','b'] | join('-') }}"),
            "d e 3 a-b");
  EXPECT_EQ(render("{{ 'yes' if 1 > 2 else 'no' }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }}"), "no True True True");
  EXPECT_EQ(render("{{ d.items() | list }} {{ d.get('z', 0) }} {{ d['a'] }} {{ d.a }}", {{"d", {{"a", 1}}}}),
            "[['a', 1]] 0 1 1");
}

TEST(Jinja, StatementsLoopsAndScopes) {
  EXPECT_EQ(render("{% for x in [1,2,3] %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}"), "11,22,33");
  EXPECT_EQ(render("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {{"d", ojson::parse(R"({"b":1,"a":2})")}}), "b=1;a=2;");
  EXPECT_EQ(render("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}"), "2242");
  EXPECT_EQ(render("{% for x in [1,2,3] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}"), "1");
  // `set` inside a loop does not leak out; namespace() carries state across iterations.
  EXPECT_EQ(render("{% set a = 1 %}{% for x in [5] %}{% set a = x %}{% endfor %}{{ a }}"), "1");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for x in [1,2,3] %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}"), "6");
  EXPECT_EQ(render("{% for x in [1,2] %}{{ loop.previtem is defined }}{% endfor %}"), "FalseTrue");
  EXPECT_EQ(render("{% if a %}A{% elif b %}B{% else %}C{% endif %}", {{"b", true}}), "B");
  EXPECT_EQ(render("{% macro greet(name, p='!') %}hi {{ name }}{{ p }}{% endmacro %}{{ greet('x') }}{{ greet('y', p='?') }}"),
            "hi x!hi y?");
  EXPECT_EQ(render("{% set block %}in{{ 1 }}{% endset %}[{{ block }}]"), "[in1]");
}

TEST(Jinja, WhitespaceControlTrimAndLstripBlocks) {
  EXPECT_EQ(render("a  {{- 'b' -}}  c"), "abc");
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(render("x\n  {% if true %}\n  y\n  {% endif %}\nz"), "x\n  y\nz");
  EXPECT_EQ(render("{# comment #}\nA"), "A");
  EXPECT_EQ(render("{{ 'v' }}\nw"), "v\nw");  // no trimming after an expression
}

TEST(Jinja, ErrorsNameTheLineAndConstruct) {
  EXPECT_NE(error_of("line1\n{% unknowntag %}").find("line 2"), std::string::npos);
  EXPECT_NE(error_of("{% unknowntag %}").find("unsupported statement"), std::string::npos);
  EXPECT_NE(error_of("{{ x | nosuchfilter }}", {{"x", 1}}).find("unsupported filter 'nosuchfilter'"), std::string::npos);
  EXPECT_NE(error_of("{% if x %}never closed").find("missing {% endif %}"), std::string::npos);
  EXPECT_NE(error_of("{{ 'unterminated }}").find("string literal is not closed"), std::string::npos);
  EXPECT_NE(error_of("{{ raise_exception('bad role') }}").find("bad role"), std::string::npos);
  EXPECT_NE(error_of("{{ x.y }}").find("'x' is undefined"), std::string::npos);
  // Bounded: deep nesting and huge loops end with an error, not a crash or hang.
  std::string deep;
  for (int i = 0; i < 500; ++i) deep += "{% if true %}";
  EXPECT_NE(error_of(deep).find("too deep"), std::string::npos);
  jinja::Options small;
  small.max_iterations = 100000;
  try {
    jinja::Template("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", small).render(ojson::object());
    ADD_FAILURE() << "an unbounded loop rendered";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too many loop iterations"), std::string::npos);
  }
  EXPECT_NE(error_of("{{ 'x' * 1000000000 }}").find("size limit"), std::string::npos);
}

}  // namespace
}  // namespace jetlm
