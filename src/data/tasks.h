// Synthetic tasks that separate full attention from linear attention (PostNAS), and a
// model-agnostic evaluator. Every generator is deterministic by seed. Text formats: docs/data.md.
//
//   KeyValueRetrieval  multi-query associative recall: "key: value" pairs in the context, then
//   query
//                      keys; the answer is the queried values ("kv-retrieval").
//   Passkey            a number hidden at a controlled depth in filler text, asked for at the end.
//   Cloze              a held-out passage; choose its true continuation among continuations taken
//                      from other passages (scored by total logprob, MMLU-style).
//   Arithmetic         small + - * problems with an exact integer answer.
//
// Prompts are plain text encoded with the given tokenizer (no chat template, no special tokens);
// the answer tokens are the encoding of the answer text that follows the prompt, split at a
// pre-token boundary so prompt + answer tokenizes the same as the two parts.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "jetlm/tokenizer.h"

namespace jetlm::data {

class TokenDataset;

enum class TaskKind { KeyValueRetrieval, Passkey, Cloze, Arithmetic };

struct TaskParams {
  int64_t context_tokens =
      256;              // prompt length in tokens (kv: pairs are added until the prompt would
                        // exceed it; passkey: filler fills it; cloze: the passage length)
  int num_pairs = 16;   // kv: at least this many pairs (exactly this many when context_tokens <= 0)
  int num_queries = 1;  // kv: keys asked for (answer = their values, space-separated)
  int num_choices = 4;  // cloze: candidates including the right one
  int max_operand = 999;  // arithmetic: operands in [0, max_operand]
  // Added members.
  double depth = -1;       // passkey: relative depth of the key in the filler, 0..1; < 0 = random
  int passkey_digits = 5;  // passkey: digits of the number
  int key_length = 3;      // kv: letters per key
  int value_digits = 3;    // kv: digits per value
  int cloze_continuation_tokens = 8;  // cloze: tokens of each continuation
  int arithmetic_terms = 2;           // arithmetic: operands per expression (2 or 3)
};

struct TaskExample {
  std::vector<int32_t> prompt;  // context + question
  std::vector<int32_t> answer;  // the correct continuation (retrieval/passkey/arithmetic)
  std::vector<std::vector<int32_t>> choices;  // Cloze only: candidate continuations
  int correct = -1;                           // Cloze only: index of the right choice
};

// "kv-retrieval", "passkey", "cloze", "arithmetic"; throws jetlm::Error listing the names.
TaskKind parse_task_kind(const std::string& name);
std::string task_name(TaskKind);

// n examples; Cloze draws its passages from a held-out TokenDataset (pass nullptr for the others;
// Cloze with nullptr throws). Token ids are those of `tokenizer`.
std::vector<TaskExample> make_examples(TaskKind, const Tokenizer&, const TaskParams&, int64_t n,
                                       uint64_t seed, const TokenDataset* heldout = nullptr);

// One training document (prompt + answer as text) for mixing tasks into pretraining data. Cloze
// has no training text (it is a held-out evaluation of language modelling): throws.
// context_tokens is approximated by characters (~4 per token) since no tokenizer is given.
std::string training_text(TaskKind, const TaskParams&, std::mt19937_64& rng);

// Scoring is model-agnostic: the caller scores a batch of token sequences.
struct ScoreRequest {
  std::vector<int32_t> tokens;
  int64_t answer_start;  // score tokens[answer_start..] (each given the tokens before it)
};
struct ScoreResult {
  std::vector<float> logprobs;     // one per scored token: log p(tokens[i] | tokens[..i])
  std::vector<uint8_t> is_argmax;  // 1 when tokens[i] is the argmax of that distribution
};
using Scorer = std::function<void(const std::vector<ScoreRequest>&, std::vector<ScoreResult>&)>;

struct TaskMetrics {
  double accuracy = 0;
  double loss = 0;
  int64_t examples = 0;
};

// accuracy: retrieval/passkey/arithmetic = every answer token is the argmax under teacher forcing
// (== greedy exact match); cloze = the correct choice has the highest total logprob (a tie of m
// choices at the top that includes the correct one scores 1/m, the expectation of a random
// tie-break, so a scorer that knows nothing gets chance level; all choices have the same length).
// loss: mean negative logprob per answer token (cloze: of the correct choice). Throws when the
// scorer returns the wrong number of results or of logprobs.
TaskMetrics evaluate(TaskKind, const std::vector<TaskExample>&, const Scorer&,
                     int64_t batch_size = 16);

}  // namespace jetlm::data
