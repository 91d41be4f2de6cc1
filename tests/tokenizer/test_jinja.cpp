// The Jinja-subset interpreter behind chat templates: every small template of
// chat_goldens.json's "jinja_cases" renders exactly as the Jinja environment transformers builds
// (or fails where it fails), plus hand-written checks of expressions, statements, whitespace
// control, error messages and the bounds that keep a hostile template from crashing or hanging.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/jinja.h"

namespace jetlm {
namespace {

using ojson = nlohmann::ordered_json;

// A string as a JSON literal, readable even when it holds control bytes or broken UTF-8.
std::string quoted(const std::string& s) { return ojson(s).dump(-1, ' ', false, ojson::error_handler_t::replace); }

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

TEST(Jinja, MatchesJinja2OnEveryGoldenSnippet) {
  const ojson goldens = ojson::parse(test::slurp(test::source_dir() + "/tests/tokenizer/data/chat_goldens.json"));
  ojson context = goldens["jinja_context"];
  for (const auto& [k, v] : goldens["special_tokens"].items()) context[k] = v;
  int passed = 0, total = 0;
  for (const ojson& c : goldens["jinja_cases"]) {
    ++total;
    const std::string source = c["template"];
    std::string got, error;
    try {
      got = render(source, context);
    } catch (const Error& e) {
      error = e.what();
    }
    if (c["unsupported"]) {  // jinja2 renders it, jetlm refuses clearly
      if (!error.empty()) ++passed;
      else ADD_FAILURE() << quoted(source) << "\nis not supported on purpose, but jetlm rendered " << quoted(got);
      continue;
    }
    if (c["expected"].is_null()) {
      if (!error.empty()) ++passed;
      else ADD_FAILURE() << quoted(source) << "\njinja2 raised (" << c["error"] << ") but jetlm rendered " << quoted(got);
      continue;
    }
    const std::string expected = c["expected"];
    if (error.empty() && got == expected) {
      ++passed;
      continue;
    }
    ADD_FAILURE() << quoted(source) << "\nexpected: " << quoted(expected) << "\ngot:      " << quoted(got)
                  << (error.empty() ? "" : "\nerror: " + error);
  }
  std::printf("  jinja snippets: %d/%d as jinja2\n", passed, total);
  EXPECT_GE(total, 300);
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
            "[('a', 1)] 0 1 1");
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

TEST(Jinja, HostileTemplatesEndWithAnErrorNotACrash) {
  // Deep nesting of every recursive construct is refused at parse time.
  const std::pair<std::string, std::string> nestings[] = {{"(", ")"}, {"[", "]"}, {"not ", ""}, {"- ", ""}, {"{'k': ", "}"}};
  for (const auto& [open, close] : nestings) {
    std::string source = "{{ ";
    for (int i = 0; i < 20000; ++i) source += open;
    source += "1";
    for (int i = 0; i < 20000; ++i) source += close;
    EXPECT_NE(error_of(source + " }}").find("too deep"), std::string::npos) << open;
  }
  std::string blocks;
  for (int i = 0; i < 20000; ++i) blocks += "{% for x in [1] %}";
  EXPECT_NE(error_of(blocks).find("too deep"), std::string::npos);
  // Runaway recursion, growth and loops at render time.
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("too deeply"), std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace(s='ab') %}{% for i in range(99999) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}")
                .find("size limit"), std::string::npos);
  EXPECT_NE(error_of("{{ [1] * 1000000000 }}").find("size limit"), std::string::npos);
  EXPECT_NE(error_of("{{ range(1000000000) | length }}").find("too long"), std::string::npos);
}

TEST(Jinja, MutatedChatTemplatesNeverCrashOrHang) {
  // Byte-level mutations of the real templates (cut, duplicate, swap in syntax characters): each
  // must render or throw jetlm::Error, quickly.
  const std::string dir = test::source_dir() + "/tests/tokenizer/data/templates";
  std::vector<std::string> sources;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".jinja") sources.push_back(test::slurp(entry.path().string()));
  ASSERT_FALSE(sources.empty());
  const ojson context = ojson::parse(R"({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
      {"role": "assistant", "content": "<think>r</think>a", "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]},
      {"role": "tool", "content": "t"}], "tools": [{"type": "function", "function": {"name": "f"}}],
      "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"})");
  const std::string alphabet = "{}%#-+()[]|~.,:'\"\n =!<>*/abcdefghijklmnopqrstuvwxyz0123456789_";
  std::mt19937 rng(1234);
  jinja::Options options;
  options.max_output = 1 << 20;
  options.max_iterations = 100000;
  int rendered = 0, refused = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int trial = 0; trial < 3000; ++trial) {
    std::string s = sources[size_t(trial) % sources.size()];
    const int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const size_t at = rng() % s.size();
      switch (rng() % 4) {
        case 0: s.erase(at, 1 + rng() % 8); break;
        case 1: s.insert(at, s.substr(rng() % s.size(), 1 + rng() % 16)); break;
        case 2: s[at] = alphabet[rng() % alphabet.size()]; break;
        default: s.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
      }
    }
    try {
      jinja::Template(s, options).render(context);
      ++rendered;
    } catch (const Error&) {
      ++refused;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("  mutated templates: %d rendered, %d refused with an error, %.2f s\n", rendered, refused, seconds);
  EXPECT_GT(rendered, 0);
  EXPECT_GT(refused, 0);
  EXPECT_LT(seconds, 5.0);
}

}  // namespace
}  // namespace jetlm
