// Task generators checked by independent parsers of their text (answers correct by construction,
// lengths and depths as asked, prompt + answer tokenizes as one text), determinism by seed, and
// evaluate() with fake scorers (oracle = accuracy 1 / loss 0, uniform = loss log V and chance-level
// cloze, malformed scorer output = error).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <regex>

#include "core/error.h"
#include "data/data_test_util.h"
#include "data/dataset_builder.h"
#include "data/tasks.h"
#include "data/token_dataset.h"

namespace jetlm {
namespace {

using data::TaskKind;
using data::TaskParams;

std::string decode(const std::vector<int32_t>& ids) {
  return test::small_tokenizer().decode(ids);
}

// prompt + answer must be exactly what the whole text encodes to, so that a model trained on the
// text sees the same tokens at evaluation.
void expect_consistent_tokens(const data::TaskExample& e) {
  std::vector<int32_t> joined = e.prompt;
  joined.insert(joined.end(), e.answer.begin(), e.answer.end());
  EXPECT_EQ(test::small_tokenizer().encode(decode(e.prompt) + decode(e.answer), false), joined);
}

// Evaluates "a op b [op c]" with * before + and -, by reduction over a token list.
int64_t eval_expression(std::vector<std::string> tokens) {
  for (size_t i = 1; i < tokens.size();) {
    if (tokens[i] == "*") {
      tokens[i - 1] = std::to_string(std::stoll(tokens[i - 1]) * std::stoll(tokens[i + 1]));
      tokens.erase(tokens.begin() + std::ptrdiff_t(i), tokens.begin() + std::ptrdiff_t(i) + 2);
    } else {
      i += 2;
    }
  }
  int64_t v = std::stoll(tokens[0]);
  for (size_t i = 1; i + 1 < tokens.size(); i += 2)
    v += (tokens[i] == "+" ? 1 : -1) * std::stoll(tokens[i + 1]);
  return v;
}

void check_arithmetic(const std::string& prompt, const std::string& answer, int max_operand) {
  static const std::regex re(R"(^(\d+) ([-+*]) (\d+)(?: ([-+*]) (\d+))? =$)");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(prompt, m, re)) << prompt;
  std::vector<std::string> tokens = {m[1], m[2], m[3]};
  if (m[4].matched) tokens.insert(tokens.end(), {m[4], m[5]});
  for (size_t i = 0; i < tokens.size(); i += 2) EXPECT_LE(std::stoll(tokens[i]), max_operand);
  EXPECT_EQ(answer, " " + std::to_string(eval_expression(tokens))) << prompt;
}

TEST(Tasks, Arithmetic) {
  for (int terms : {2, 3}) {
    TaskParams p;
    p.arithmetic_terms = terms;
    p.max_operand = 99;
    const auto examples =
        data::make_examples(TaskKind::Arithmetic, test::small_tokenizer(), p, 200, 7);
    std::map<char, int> ops;
    for (const auto& e : examples) {
      const std::string prompt = decode(e.prompt);
      check_arithmetic(prompt, decode(e.answer), 99);
      expect_consistent_tokens(e);
      for (char c : prompt) ops[c] += c == '+' || c == '-' || c == '*';
    }
    EXPECT_GT(ops['+'], 20);
    EXPECT_GT(ops['-'], 20);
    EXPECT_GT(ops['*'], 20);
  }
  std::mt19937_64 rng(3);
  for (int i = 0; i < 50; ++i) {
    const std::string text = data::training_text(TaskKind::Arithmetic, TaskParams{}, rng);
    const size_t eq = text.find('=');
    ASSERT_NE(eq, std::string::npos);
    check_arithmetic(text.substr(0, eq + 1), text.substr(eq + 1), 999);
  }
}

// Parses a kv prompt; returns key -> value and the queried keys.
void parse_kv(const std::string& text, std::map<std::string, std::string>& pairs,
              std::vector<std::string>& queries) {
  static const std::regex line_re(R"(^([a-z]+): (\d+)$)");
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "Remember the value of each key.");
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, line_re)) {
      EXPECT_EQ(pairs.count(m[1]), 0u) << "duplicate key " << m[1];
      pairs[m[1]] = m[2];
    } else if (line.rfind("Query:", 0) == 0) {
      std::istringstream q(line.substr(6));
      std::string k;
      while (q >> k) queries.push_back(k);
    } else {
      EXPECT_EQ(line, "Answer:");
    }
  }
}

TEST(Tasks, KeyValueRetrieval) {
  const Tokenizer& tok = test::small_tokenizer();
  for (int queries : {1, 4}) {
    TaskParams p;
    p.context_tokens = 300;
    p.num_pairs = 4;
    p.num_queries = queries;
    const auto examples = data::make_examples(TaskKind::KeyValueRetrieval, tok, p, 30, 11);
    for (const auto& e : examples) {
      std::map<std::string, std::string> pairs;
      std::vector<std::string> keys;
      parse_kv(decode(e.prompt), pairs, keys);
      ASSERT_EQ(int(keys.size()), queries);
      std::string expected;
      for (const std::string& k : keys) {
        ASSERT_TRUE(pairs.count(k)) << "queried key " << k << " is not in the context";
        expected += " " + pairs[k];
      }
      EXPECT_EQ(decode(e.answer), expected);
      EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), keys.size());
      // Filled to the context length: within one pair line of it, never over.
      EXPECT_LE(int64_t(e.prompt.size()), p.context_tokens);
      EXPECT_GT(int64_t(e.prompt.size()), p.context_tokens - 20);
      EXPECT_GT(pairs.size(), 10u);
      expect_consistent_tokens(e);
    }
  }
  // context_tokens <= 0: exactly num_pairs pairs.
  TaskParams p;
  p.context_tokens = 0;
  p.num_pairs = 5;
  for (const auto& e : data::make_examples(TaskKind::KeyValueRetrieval, tok, p, 5, 1)) {
    std::map<std::string, std::string> pairs;
    std::vector<std::string> keys;
    parse_kv(decode(e.prompt), pairs, keys);
    EXPECT_EQ(pairs.size(), 5u);
  }
  std::mt19937_64 rng(5);
  const std::string text = data::training_text(TaskKind::KeyValueRetrieval, TaskParams{}, rng);
  const size_t answer_at = text.rfind("Answer:") + 7;
  std::map<std::string, std::string> pairs;
  std::vector<std::string> keys;
  parse_kv(text.substr(0, answer_at), pairs, keys);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(text.substr(answer_at), " " + pairs[keys[0]]);
}

TEST(Tasks, Passkey) {
  const Tokenizer& tok = test::small_tokenizer();
  static const std::regex needle_re(
      R"(The pass key is (\d+)\. Remember it\. (\d+) is the pass key\.)");
  for (double depth : {0.0, 0.25, 0.5, 1.0}) {
    TaskParams p;
    p.context_tokens = 600;
    p.depth = depth;
    const auto examples = data::make_examples(TaskKind::Passkey, tok, p, 5, 21);
    for (const auto& e : examples) {
      const std::string text = decode(e.prompt);
      std::smatch m;
      ASSERT_TRUE(std::regex_search(text, m, needle_re)) << text;
      EXPECT_EQ(m[1].str(), m[2].str());
      EXPECT_EQ(decode(e.answer), " " + m[1].str());
      EXPECT_EQ(m[1].str().size(), size_t(p.passkey_digits));
      ASSERT_TRUE(text.ends_with("\nWhat is the pass key? The pass key is")) << text;
      // Depth: where the needle sits between the end of the intro line and the question.
      const size_t filler_begin = text.find('\n') + 1, filler_end = text.rfind('\n');
      const double at = double(size_t(m.position(0)) - filler_begin) /
                        double(filler_end - filler_begin - size_t(m.length(0)));
      EXPECT_NEAR(at, depth, 0.05) << text;
      EXPECT_LE(int64_t(e.prompt.size()), p.context_tokens + 2);
      EXPECT_GE(int64_t(e.prompt.size()), p.context_tokens - 15);
      expect_consistent_tokens(e);
    }
  }
}

// A heldout split of the test corpus for cloze (and passkey filler).
const data::TokenDataset& heldout() {
  static test::TempDir dir("cloze");
  static const data::TokenDataset ds = [] {
    test::write_text(dir.path + "/c.txt", test::join_documents(test::corpus_documents()));
    data::BuildOptions o;
    o.tokenizer_dir = test::small_tokenizer_dir();
    o.inputs = {dir.path + "/c.txt"};
    o.out_dir = dir.path + "/ds";
    o.heldout_fraction = 1.0;  // everything held out
    data::build_dataset(o);
    return data::TokenDataset::open(dir.path + "/ds", "heldout");
  }();
  return ds;
}

bool is_window_of(const std::vector<int32_t>& all, const std::vector<int32_t>& w) {
  return std::search(all.begin(), all.end(), w.begin(), w.end()) != all.end();
}

TEST(Tasks, Cloze) {
  const data::TokenDataset& ds = heldout();
  std::vector<int32_t> all(size_t(ds.size()));
  ds.read(0, ds.size(), all.data());
  TaskParams p;
  p.context_tokens = 48;
  p.num_choices = 4;
  const auto examples =
      data::make_examples(TaskKind::Cloze, test::small_tokenizer(), p, 40, 9, &ds);
  std::vector<int> correct_counts(4);
  for (const auto& e : examples) {
    ASSERT_EQ(e.choices.size(), 4u);
    ASSERT_GE(e.correct, 0);
    ASSERT_LT(e.correct, 4);
    correct_counts[size_t(e.correct)]++;
    EXPECT_EQ(e.prompt.size(), 48u);
    std::vector<int32_t> passage = e.prompt;
    passage.insert(passage.end(), e.choices[size_t(e.correct)].begin(),
                   e.choices[size_t(e.correct)].end());
    EXPECT_TRUE(is_window_of(all, passage))
        << "the true continuation does not follow the passage in the heldout data";
    for (size_t c = 0; c < e.choices.size(); ++c) {
      EXPECT_EQ(e.choices[c].size(), size_t(p.cloze_continuation_tokens));
      EXPECT_TRUE(is_window_of(all, e.choices[c]));
      EXPECT_EQ(std::count(e.choices[c].begin(), e.choices[c].end(), ds.eos_id()), 0);
      if (int(c) != e.correct) {
        EXPECT_NE(e.choices[c], e.choices[size_t(e.correct)]);
      }
    }
  }
  for (int c : correct_counts) EXPECT_GT(c, 2);  // the right answer is not always in one place
  EXPECT_THROW(data::make_examples(TaskKind::Cloze, test::small_tokenizer(), p, 1, 0, nullptr),
               Error);
  std::mt19937_64 rng(1);
  EXPECT_THROW(data::training_text(TaskKind::Cloze, p, rng), Error);
}

TEST(Tasks, PasskeyWithHeldoutFiller) {
  TaskParams p;
  p.context_tokens = 200;
  p.depth = 0.5;
  const auto examples =
      data::make_examples(TaskKind::Passkey, test::small_tokenizer(), p, 3, 4, &heldout());
  for (const auto& e : examples) {
    const std::string text = decode(e.prompt);
    const size_t at = text.find("The pass key is ");
    ASSERT_NE(at, std::string::npos);
    EXPECT_EQ(decode(e.answer), std::string(" ").append(text, at + 16, 5));
    EXPECT_EQ(text.find("The grass is green"), std::string::npos);  // filler came from the data
  }
}

TEST(Tasks, DeterministicBySeed) {
  const Tokenizer& tok = test::small_tokenizer();
  for (TaskKind kind :
       {TaskKind::KeyValueRetrieval, TaskKind::Passkey, TaskKind::Arithmetic, TaskKind::Cloze}) {
    const data::TokenDataset* ds = kind == TaskKind::Cloze ? &heldout() : nullptr;
    TaskParams p;
    p.context_tokens = 64;
    const auto a = data::make_examples(kind, tok, p, 5, 42, ds);
    const auto b = data::make_examples(kind, tok, p, 5, 42, ds);
    const auto c = data::make_examples(kind, tok, p, 5, 43, ds);
    bool same_ab = true, same_ac = true;
    for (size_t i = 0; i < a.size(); ++i) {
      same_ab = same_ab && a[i].prompt == b[i].prompt && a[i].answer == b[i].answer &&
                a[i].choices == b[i].choices;
      same_ac = same_ac && a[i].prompt == c[i].prompt && a[i].answer == c[i].answer;
    }
    EXPECT_TRUE(same_ab) << data::task_name(kind);
    EXPECT_FALSE(same_ac) << data::task_name(kind);
  }
}

TEST(Tasks, Names) {
  for (TaskKind kind :
       {TaskKind::KeyValueRetrieval, TaskKind::Passkey, TaskKind::Arithmetic, TaskKind::Cloze})
    EXPECT_EQ(data::parse_task_kind(data::task_name(kind)), kind);
  EXPECT_EQ(data::task_name(TaskKind::KeyValueRetrieval), "kv-retrieval");
  EXPECT_THROW(data::parse_task_kind("mmlu"), Error);
}

// --- evaluate() with fake scorers ---

// Knows the right answers: logprob 0 and argmax on them; for cloze, -1 per token on wrong choices.
data::Scorer oracle(const std::vector<data::TaskExample>& examples) {
  return [&examples](const std::vector<data::ScoreRequest>& batch,
                     std::vector<data::ScoreResult>& out) {
    out.clear();
    for (const auto& r : batch) {
      bool right = false;
      for (const auto& e : examples) {
        std::vector<int32_t> want = e.prompt;
        const auto& ans = e.correct >= 0 ? e.choices[size_t(e.correct)] : e.answer;
        want.insert(want.end(), ans.begin(), ans.end());
        right = right || want == r.tokens;
      }
      const size_t n = r.tokens.size() - size_t(r.answer_start);
      out.push_back(
          {std::vector<float>(n, right ? 0.0f : -1.0f), std::vector<uint8_t>(n, right ? 1 : 0)});
    }
  };
}

data::Scorer uniform_scorer(int32_t vocab) {
  return [vocab](const std::vector<data::ScoreRequest>& batch,
                 std::vector<data::ScoreResult>& out) {
    out.clear();
    for (const auto& r : batch) {
      const size_t n = r.tokens.size() - size_t(r.answer_start);
      out.push_back({std::vector<float>(n, -std::log(float(vocab))), std::vector<uint8_t>(n, 0)});
    }
  };
}

TEST(Evaluate, OracleAndUniform) {
  const Tokenizer& tok = test::small_tokenizer();
  const int32_t vocab = tok.vocab_size();
  for (TaskKind kind :
       {TaskKind::KeyValueRetrieval, TaskKind::Passkey, TaskKind::Arithmetic, TaskKind::Cloze}) {
    TaskParams p;
    p.context_tokens = 64;
    p.num_choices = 4;
    const auto examples =
        data::make_examples(kind, tok, p, 24, 5, kind == TaskKind::Cloze ? &heldout() : nullptr);
    const data::TaskMetrics best = data::evaluate(kind, examples, oracle(examples), 5);
    EXPECT_EQ(best.examples, 24);
    EXPECT_DOUBLE_EQ(best.accuracy, 1.0) << data::task_name(kind);
    EXPECT_DOUBLE_EQ(best.loss, 0.0) << data::task_name(kind);
    const data::TaskMetrics chance = data::evaluate(kind, examples, uniform_scorer(vocab), 7);
    EXPECT_NEAR(chance.loss, std::log(double(vocab)), 1e-5) << data::task_name(kind);
    EXPECT_NEAR(chance.accuracy, kind == TaskKind::Cloze ? 0.25 : 0.0, 1e-12)
        << data::task_name(kind);
  }
}

TEST(Evaluate, PartialCreditAndMalformedScorer) {
  const Tokenizer& tok = test::small_tokenizer();
  const auto examples = data::make_examples(TaskKind::Arithmetic, tok, TaskParams{}, 10, 2);
  // Every answer's last token is wrong on odd examples: accuracy 1/2; loss = mean of -logprob.
  int call = 0;
  const data::Scorer half = [&](const std::vector<data::ScoreRequest>& batch,
                                std::vector<data::ScoreResult>& out) {
    out.clear();
    for (const auto& r : batch) {
      const size_t n = r.tokens.size() - size_t(r.answer_start);
      data::ScoreResult s{std::vector<float>(n, -0.5f), std::vector<uint8_t>(n, 1)};
      if (call++ % 2 == 1) s.is_argmax.back() = 0;
      out.push_back(s);
    }
  };
  const data::TaskMetrics m = data::evaluate(TaskKind::Arithmetic, examples, half, 3);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.5);
  EXPECT_NEAR(m.loss, 0.5, 1e-7);
  const data::Scorer short_result = [](const std::vector<data::ScoreRequest>& batch,
                                       std::vector<data::ScoreResult>& out) {
    out.assign(batch.size(), {{-1.0f}, {1}});
  };
  EXPECT_THROW(data::evaluate(TaskKind::Arithmetic, examples, short_result), Error);
  const data::Scorer missing = [](const std::vector<data::ScoreRequest>&,
                                  std::vector<data::ScoreResult>& out) { out.clear(); };
  EXPECT_THROW(data::evaluate(TaskKind::Arithmetic, examples, missing), Error);
}

}  // namespace
}  // namespace jetlm
