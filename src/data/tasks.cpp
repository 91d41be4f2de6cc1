// Synthetic tasks. Each text generator builds (prompt text, answer text) with its own RNG helpers
// (no std::uniform_int_distribution: its output differs between standard libraries, and examples
// must be the same everywhere for a seed). Formats: docs/data.md.
#include "data/tasks.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_map>

#include "core/error.h"
#include "data/token_dataset.h"

namespace jetlm::data {

namespace {

// Uniform in [0, n) without modulo bias.
uint64_t uniform(std::mt19937_64& rng, uint64_t n) {
  if (n <= 1) return 0;
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return x % n;
}
int64_t uniform_range(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return lo + int64_t(uniform(rng, uint64_t(hi - lo + 1)));
}
double uniform01(std::mt19937_64& rng) {
  return double(rng() >> 11) * 0x1.0p-53;
}

// Counts tokens of a piece of text: exact with a tokenizer, estimated without one (training_text).
using TokenCounter = std::function<int64_t(std::string_view)>;

// Rough count for the Qwen2 pre-tokenizer with a small vocabulary: digits are one token each,
// a word is ~1.5 tokens, other symbols one each.
int64_t estimate_tokens(std::string_view s) {
  double n = 0;
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (std::isalpha(c) || c >= 0x80) {
      while (i < s.size() && (std::isalpha(static_cast<unsigned char>(s[i])) ||
                              static_cast<unsigned char>(s[i]) >= 0x80))
        ++i;
      n += 1.5;
    } else if (c == ' ') {
      ++i;
    } else {
      n += 1;
      ++i;
    }
  }
  return int64_t(std::ceil(n));
}

struct TextExample {
  std::string prompt, answer;
};

std::string random_key(std::mt19937_64& rng, int length) {
  std::string key;
  for (int i = 0; i < length; ++i) key += char('a' + uniform(rng, 26));
  return key;
}

std::string random_digits(std::mt19937_64& rng, int digits) {
  std::string s(1, char('1' + uniform(rng, 9)));  // no leading zero: the number reads as itself
  for (int i = 1; i < digits; ++i) s += char('0' + uniform(rng, 10));
  return s;
}

// kv-retrieval:
//   Remember the value of each key.\n
//   <key>: <value>\n   (pairs)
//   Query: <k1> <k2> ...\n
//   Answer:                      answer: " <v1> <v2> ..."
TextExample kv_text(const TaskParams& p, std::mt19937_64& rng, const TokenCounter& count) {
  if (p.key_length < 1 || p.value_digits < 1 || p.num_queries < 1 || p.num_pairs < 0)
    throw_error("kv-retrieval",
                "expected key_length >= 1, value_digits >= 1, num_queries >= 1, num_pairs >= 0");
  const int64_t key_space = int64_t(std::pow(26.0, std::min(p.key_length, 10)));
  const std::string header = "Remember the value of each key.\n";
  std::vector<std::pair<std::string, std::string>> pairs;
  std::set<std::string> used;
  auto add_pair = [&] {
    std::string key;
    do key = random_key(rng, p.key_length);
    while (used.count(key));
    used.insert(key);
    pairs.emplace_back(key, random_digits(rng, p.value_digits));
  };
  const int min_pairs = std::max(p.num_pairs, p.num_queries);
  if (min_pairs > key_space / 2)
    throw_error("kv-retrieval",
                "too many pairs for keys of " + std::to_string(p.key_length) + " letters");
  for (int i = 0; i < min_pairs; ++i) add_pair();
  // The query line's length does not depend on which keys are asked (all keys have one length).
  std::string query_probe = "Query:";
  for (int q = 0; q < p.num_queries; ++q) query_probe += " " + pairs[size_t(q)].first;
  int64_t tokens = count(header) + count(query_probe + "\nAnswer:");
  for (const auto& [k, v] : pairs) tokens += count(k + ": " + v + "\n");
  // Fill up to context_tokens with more pairs (each line is its own run of pre-tokens).
  while (p.context_tokens > 0 && int64_t(used.size()) < key_space / 2) {
    const size_t before = pairs.size();
    add_pair();
    const int64_t line = count(pairs.back().first + ": " + pairs.back().second + "\n");
    if (tokens + line > p.context_tokens) {
      used.erase(pairs.back().first);
      pairs.resize(before);
      break;
    }
    tokens += line;
  }
  // Queries: distinct keys at random positions of the list.
  std::vector<size_t> order(pairs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = 0; i < size_t(p.num_queries); ++i)
    std::swap(order[i], order[i + uniform(rng, order.size() - i)]);
  auto render = [&](TextExample& ex) {
    ex.prompt = header;
    ex.answer.clear();
    for (const auto& [k, v] : pairs) ex.prompt += k + ": " + v + "\n";
    ex.prompt += "Query:";
    for (int q = 0; q < p.num_queries; ++q) {
      ex.prompt += " " + pairs[order[size_t(q)]].first;
      ex.answer += " " + pairs[order[size_t(q)]].second;
    }
    ex.prompt += "\nAnswer:";
  };
  TextExample ex;
  render(ex);
  // The estimate above used the first keys for the query line; the real keys may take a token or
  // two more. Drop unqueried pairs from the end until the prompt fits.
  while (p.context_tokens > 0 && int64_t(pairs.size()) > min_pairs &&
         count(ex.prompt) > p.context_tokens) {
    size_t victim = pairs.size() - 1;
    while (std::find(order.begin(), order.begin() + p.num_queries, victim) !=
           order.begin() + p.num_queries)
      --victim;
    pairs.erase(pairs.begin() + std::ptrdiff_t(victim));
    for (int q = 0; q < p.num_queries; ++q)
      if (order[size_t(q)] > victim) --order[size_t(q)];
    render(ex);
  }
  return ex;
}

const char* const kFillerSentences[] = {
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
    "The river flows past the old mill.",
    "A quiet wind moves through the trees.",
    "The road goes on and on.",
};

// passkey:
//   There is a pass key hidden in the text below. Find it and remember it.\n
//   <filler ...> The pass key is <digits>. Remember it. <digits> is the pass key. <filler ...>\n
//   What is the pass key? The pass key is        answer: " <digits>"
// `filler` (optional) is text to use instead of the fixed sentences; it is cut at spaces.
TextExample passkey_text(const TaskParams& p, std::mt19937_64& rng, const TokenCounter& count,
                         const std::string& filler) {
  if (p.passkey_digits < 1 || p.passkey_digits > 18)
    throw_error("passkey", "expected passkey_digits in 1..18");
  const std::string key = random_digits(rng, p.passkey_digits);
  const std::string intro =
      "There is a pass key hidden in the text below. Find it and remember it.\n";
  const std::string needle =
      "The pass key is " + key + ". Remember it. " + key + " is the pass key.";
  const std::string question = "\nWhat is the pass key? The pass key is";
  const double depth = p.depth >= 0 ? std::min(p.depth, 1.0) : uniform01(rng);
  const int64_t budget = p.context_tokens - count(intro) - count(" " + needle) - count(question);
  // Filler pieces (sentences or words of the given text), each with its token count.
  std::vector<std::string> pieces;
  std::vector<int64_t> piece_tokens;
  int64_t filler_tokens = 0;
  if (filler.empty()) {
    std::vector<int64_t> cost;
    for (const char* sentence : kFillerSentences)
      cost.push_back(count(std::string(" ") + sentence));
    // Random sentences among those that still fit, so the filler ends within one short sentence
    // of the budget.
    std::vector<size_t> fits;
    for (;;) {
      fits.clear();
      for (size_t s = 0; s < cost.size(); ++s)
        if (filler_tokens + cost[s] <= budget) fits.push_back(s);
      if (fits.empty()) break;
      const size_t s = fits[uniform(rng, fits.size())];
      pieces.emplace_back(kFillerSentences[s]);
      piece_tokens.push_back(cost[s]);
      filler_tokens += cost[s];
    }
  } else {
    size_t pos = 0;
    while (pos < filler.size() && filler_tokens < budget) {
      size_t end = filler.find(' ', pos + 1);
      if (end == std::string::npos) end = filler.size();
      std::string word = filler.substr(pos, end - pos);
      pos = end;
      while (!word.empty() && word.front() == ' ') word.erase(0, 1);
      if (word.empty()) continue;
      const int64_t t = count(" " + word);
      if (filler_tokens + t > budget) break;
      pieces.push_back(std::move(word));
      piece_tokens.push_back(t);
      filler_tokens += t;
    }
  }
  // The needle goes before the first piece at which depth * filler_tokens tokens have passed.
  size_t cut = 0;
  for (int64_t passed = 0; cut < pieces.size() &&
                           double(passed + piece_tokens[cut] / 2) < depth * double(filler_tokens);
       ++cut)
    passed += piece_tokens[cut];
  TextExample ex;
  ex.prompt = intro;
  for (size_t i = 0; i <= pieces.size(); ++i) {
    if (i == cut) ex.prompt += (i == 0 ? "" : " ") + needle;
    if (i < pieces.size()) ex.prompt += (i == 0 && cut != 0 ? "" : " ") + pieces[i];
  }
  ex.prompt += question;
  ex.answer = " " + key;
  return ex;
}

// arithmetic:  "<a> <op> <b> [<op> <c>] ="   answer: " <value>"   (* before + and -)
TextExample arithmetic_text(const TaskParams& p, std::mt19937_64& rng) {
  if (p.max_operand < 0 || p.max_operand > 1000000)
    throw_error("arithmetic", "expected max_operand in 0..1000000");
  if (p.arithmetic_terms < 2 || p.arithmetic_terms > 3)
    throw_error("arithmetic", "expected arithmetic_terms 2 or 3");
  const char ops[] = {'+', '-', '*'};
  std::vector<int64_t> v;
  std::vector<char> op;
  for (int i = 0; i < p.arithmetic_terms; ++i) {
    v.push_back(uniform_range(rng, 0, p.max_operand));
    if (i > 0) op.push_back(ops[uniform(rng, 3)]);
  }
  // Evaluate with precedence: fold products first, then sum left to right.
  std::vector<int64_t> terms = {v[0]};
  std::vector<char> add_ops;
  for (size_t i = 0; i < op.size(); ++i) {
    if (op[i] == '*')
      terms.back() *= v[i + 1];
    else {
      add_ops.push_back(op[i]);
      terms.push_back(v[i + 1]);
    }
  }
  int64_t value = terms[0];
  for (size_t i = 0; i < add_ops.size(); ++i)
    value = add_ops[i] == '+' ? value + terms[i + 1] : value - terms[i + 1];
  TextExample ex;
  ex.prompt = std::to_string(v[0]);
  for (size_t i = 0; i < op.size(); ++i)
    ex.prompt += std::string(" ") + op[i] + " " + std::to_string(v[i + 1]);
  ex.prompt += " =";
  ex.answer = " ";  // (appending avoids a GCC 12 -Wrestrict false positive on " " + string)
  ex.answer += std::to_string(value);
  return ex;
}

// Encodes prompt and answer so that prompt + answer is exactly the encoding of the whole text.
TaskExample encode_example(const Tokenizer& tok, const TextExample& t, const char* task) {
  TaskExample ex;
  ex.prompt = tok.encode(t.prompt, false);
  std::vector<int32_t> full = tok.encode(t.prompt + t.answer, false);
  if (full.size() <= ex.prompt.size() ||
      !std::equal(ex.prompt.begin(), ex.prompt.end(), full.begin()))
    throw_error(task,
                "the answer does not start at a token boundary of the prompt with this tokenizer "
                "(prompt + answer encodes differently from the prompt alone); answer text: '" +
                    t.answer + "'");
  ex.answer.assign(full.begin() + std::ptrdiff_t(ex.prompt.size()), full.end());
  return ex;
}

bool starts_word(const Tokenizer& tok, int32_t id) {
  const std::string b = tok.token_bytes(id);
  return !b.empty() && (b[0] == ' ' || b[0] == '\n');
}

// A random window of `n` heldout tokens without eos whose first token and token at `aligned_at`
// (if >= 0) begin a word. Returns false after many tries (documents too short for n).
bool sample_window(const TokenDataset& ds, const Tokenizer& tok, std::mt19937_64& rng, int64_t n,
                   int64_t aligned_at, std::vector<int32_t>& out) {
  if (ds.size() < n) return false;
  out.resize(size_t(n));
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int64_t start = int64_t(uniform(rng, uint64_t(ds.size() - n + 1)));
    ds.read(start, n, out.data());
    if (std::find(out.begin(), out.end(), ds.eos_id()) != out.end()) continue;
    if (!starts_word(tok, out[0]) ||
        (aligned_at >= 0 && !starts_word(tok, out[size_t(aligned_at)])))
      continue;
    return true;
  }
  return false;
}

// cloze: the prompt is a heldout passage of context_tokens tokens; the choices are the true next
// cloze_continuation_tokens tokens and num_choices - 1 windows of the same length from elsewhere
// in the heldout split. Every continuation starts at a word boundary.
TaskExample cloze_example(const TaskParams& p, const Tokenizer& tok, const TokenDataset& ds,
                          std::mt19937_64& rng) {
  const int64_t ctx = std::max<int64_t>(p.context_tokens, 1),
                cont = std::max(p.cloze_continuation_tokens, 1);
  if (p.num_choices < 2)
    throw_error("cloze", "expected num_choices >= 2, got " + std::to_string(p.num_choices));
  std::vector<int32_t> window;
  if (!sample_window(ds, tok, rng, ctx + cont, ctx, window))
    throw_error("cloze", "the heldout split has no eos-free window of " +
                             std::to_string(ctx + cont) +
                             " tokens (lower context_tokens or use more heldout text)");
  TaskExample ex;
  ex.prompt.assign(window.begin(), window.begin() + ctx);
  const std::vector<int32_t> truth(window.begin() + ctx, window.end());
  std::vector<std::vector<int32_t>> distractors;
  for (int attempt = 0; int(distractors.size()) < p.num_choices - 1 && attempt < 1000; ++attempt) {
    std::vector<int32_t> d;
    if (!sample_window(ds, tok, rng, cont, -1, d)) break;
    if (d == truth || std::find(distractors.begin(), distractors.end(), d) != distractors.end())
      continue;
    distractors.push_back(std::move(d));
  }
  if (int(distractors.size()) < p.num_choices - 1)
    throw_error("cloze", "could not find enough distinct distractors in the heldout split");
  ex.correct = int(uniform(rng, uint64_t(p.num_choices)));
  for (int c = 0, d = 0; c < p.num_choices; ++c)
    ex.choices.push_back(c == ex.correct ? truth : distractors[size_t(d++)]);
  ex.answer = truth;
  return ex;
}

}  // namespace

TaskKind parse_task_kind(const std::string& name) {
  if (name == "kv-retrieval") return TaskKind::KeyValueRetrieval;
  if (name == "passkey") return TaskKind::Passkey;
  if (name == "cloze") return TaskKind::Cloze;
  if (name == "arithmetic") return TaskKind::Arithmetic;
  throw_error("task",
              "unknown task '" + name + "', expected kv-retrieval, passkey, cloze or arithmetic");
}

std::string task_name(TaskKind kind) {
  switch (kind) {
    case TaskKind::KeyValueRetrieval:
      return "kv-retrieval";
    case TaskKind::Passkey:
      return "passkey";
    case TaskKind::Cloze:
      return "cloze";
    case TaskKind::Arithmetic:
      return "arithmetic";
  }
  return "?";
}

std::vector<TaskExample> make_examples(TaskKind kind, const Tokenizer& tok,
                                       const TaskParams& params, int64_t n, uint64_t seed,
                                       const TokenDataset* heldout) {
  std::mt19937_64 rng(seed);
  std::vector<TaskExample> out;
  if (n < 0) throw_error(task_name(kind), "expected a non-negative number of examples");
  out.reserve(size_t(n));
  const TokenCounter count = [&tok](std::string_view s) {
    return int64_t(tok.encode(s, false).size());
  };
  if (heldout != nullptr && heldout->vocab_size() != tok.vocab_size())
    throw_error(task_name(kind), "the heldout dataset has vocab_size " +
                                     std::to_string(heldout->vocab_size()) +
                                     " but the tokenizer has " + std::to_string(tok.vocab_size()) +
                                     ": not the same tokenizer");
  for (int64_t i = 0; i < n; ++i) {
    switch (kind) {
      case TaskKind::KeyValueRetrieval:
        out.push_back(encode_example(tok, kv_text(params, rng, count), "kv-retrieval"));
        break;
      case TaskKind::Arithmetic:
        out.push_back(encode_example(tok, arithmetic_text(params, rng), "arithmetic"));
        break;
      case TaskKind::Passkey: {
        std::string filler;
        if (heldout != nullptr) {
          // Filler from heldout text: a window a little longer than needed, decoded.
          std::vector<int32_t> window;
          const int64_t len =
              std::min<int64_t>(heldout->size(), std::max<int64_t>(params.context_tokens + 64, 64));
          if (len > 0) {
            const int64_t start = int64_t(uniform(rng, uint64_t(heldout->size() - len + 1)));
            window.resize(size_t(len));
            heldout->read(start, len, window.data());
            window.erase(std::remove(window.begin(), window.end(), heldout->eos_id()),
                         window.end());
            filler = tok.decode(window, true);
            for (char& c : filler)
              if (c == '\n' || c == '\t' || c == '\r') c = ' ';
          }
        }
        out.push_back(encode_example(tok, passkey_text(params, rng, count, filler), "passkey"));
        break;
      }
      case TaskKind::Cloze:
        if (heldout == nullptr)
          throw_error("cloze", "needs a heldout TokenDataset for its passages");
        out.push_back(cloze_example(params, tok, *heldout, rng));
        break;
    }
  }
  return out;
}

std::string training_text(TaskKind kind, const TaskParams& params, std::mt19937_64& rng) {
  TextExample t;
  switch (kind) {
    case TaskKind::KeyValueRetrieval:
      t = kv_text(params, rng, estimate_tokens);
      break;
    case TaskKind::Passkey:
      t = passkey_text(params, rng, estimate_tokens, "");
      break;
    case TaskKind::Arithmetic:
      t = arithmetic_text(params, rng);
      break;
    case TaskKind::Cloze:
      throw_error("cloze",
                  "has no training text: it evaluates language modelling on heldout passages");
  }
  return t.prompt + t.answer;
}

TaskMetrics evaluate(TaskKind kind, const std::vector<TaskExample>& examples, const Scorer& scorer,
                     int64_t batch_size) {
  if (batch_size < 1) throw_error("evaluate", "expected batch_size >= 1");
  const bool cloze = kind == TaskKind::Cloze;
  // Flatten to requests: one per example, or one per choice for cloze.
  struct Ref {
    size_t example;
    int choice;
  };
  std::vector<ScoreRequest> requests;
  std::vector<Ref> refs;
  for (size_t i = 0; i < examples.size(); ++i) {
    const TaskExample& e = examples[i];
    if (cloze) {
      if (e.choices.empty() || e.correct < 0 || e.correct >= int(e.choices.size()))
        throw_error("evaluate", "cloze example " + std::to_string(i) +
                                    " has no choices or a bad 'correct' index");
      for (size_t c = 0; c < e.choices.size(); ++c) {
        ScoreRequest r{e.prompt, int64_t(e.prompt.size())};
        r.tokens.insert(r.tokens.end(), e.choices[c].begin(), e.choices[c].end());
        requests.push_back(std::move(r));
        refs.push_back({i, int(c)});
      }
    } else {
      if (e.answer.empty())
        throw_error("evaluate", "example " + std::to_string(i) + " has an empty answer");
      ScoreRequest r{e.prompt, int64_t(e.prompt.size())};
      r.tokens.insert(r.tokens.end(), e.answer.begin(), e.answer.end());
      requests.push_back(std::move(r));
      refs.push_back({i, -1});
    }
  }
  std::vector<double> logprob_sum(requests.size());
  std::vector<uint8_t> all_argmax(requests.size());
  std::vector<int64_t> n_tokens(requests.size());
  for (size_t begin = 0; begin < requests.size(); begin += size_t(batch_size)) {
    const size_t end = std::min(requests.size(), begin + size_t(batch_size));
    const std::vector<ScoreRequest> batch(requests.begin() + std::ptrdiff_t(begin),
                                          requests.begin() + std::ptrdiff_t(end));
    std::vector<ScoreResult> results;
    scorer(batch, results);
    if (results.size() != batch.size())
      throw_error("evaluate", "the scorer returned " + std::to_string(results.size()) +
                                  " results for " + std::to_string(batch.size()) + " requests");
    for (size_t j = 0; j < batch.size(); ++j) {
      const size_t expected = batch[j].tokens.size() - size_t(batch[j].answer_start);
      const ScoreResult& r = results[j];
      if (r.logprobs.size() != expected || r.is_argmax.size() != expected)
        throw_error("evaluate", "the scorer returned " + std::to_string(r.logprobs.size()) +
                                    " logprobs and " + std::to_string(r.is_argmax.size()) +
                                    " argmax flags for a request with " + std::to_string(expected) +
                                    " scored tokens");
      double sum = 0;
      bool all = true;
      for (size_t t = 0; t < expected; ++t) {
        sum += double(r.logprobs[t]);
        all = all && r.is_argmax[t] != 0;
      }
      logprob_sum[begin + j] = sum;
      all_argmax[begin + j] = all;
      n_tokens[begin + j] = int64_t(expected);
    }
  }
  TaskMetrics m;
  m.examples = int64_t(examples.size());
  if (examples.empty()) return m;
  double correct = 0, loss = 0;
  int64_t loss_tokens = 0;
  if (!cloze) {
    for (size_t k = 0; k < requests.size(); ++k) {
      correct += all_argmax[k];
      loss -= logprob_sum[k];
      loss_tokens += n_tokens[k];
    }
  } else {
    size_t k = 0;
    while (k < requests.size()) {
      const size_t ex = refs[k].example;
      const int right = examples[ex].correct;
      double best = -INFINITY;
      size_t end = k;
      while (end < requests.size() && refs[end].example == ex)
        best = std::max(best, logprob_sum[end++]);
      // The right choice wins outright for 1, or shares a tie among m choices for 1/m (the
      // expected accuracy of breaking ties at random, so a scorer that knows nothing scores
      // chance).
      int tied = 0;
      for (size_t j = k; j < end; ++j) tied += logprob_sum[j] == best;
      if (logprob_sum[k + size_t(right)] == best) correct += 1.0 / tied;
      loss -= logprob_sum[k + size_t(right)];
      loss_tokens += n_tokens[k + size_t(right)];
      k = end;
    }
  }
  m.accuracy = correct / double(examples.size());
  m.loss = loss_tokens > 0 ? loss / double(loss_tokens) : 0;
  return m;
}

}  // namespace jetlm::data
