// jetlm tokenize / detokenize: text <-> token ids with a model directory's tokenizer files only
// (no weights needed).
//
//   jetlm tokenize --model DIR [--no-special] (--text STR | --file F)   -> "id,id,...\n" on stdout
//   jetlm tokenize --model DIR --file F --bench [--repeat N]           -> timing (see below)
//   jetlm detokenize --model DIR --ids 1,2,3 [--skip-special]          -> the text, byte-exact,
//                                                                         with no newline added
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "cli_util.h"
#include "commands.h"
#include "core/error.h"
#include "io/mapped_file.h"
#include "jetlm/tokenizer.h"

namespace jetlm::cli {

namespace {

struct TokenizeArgs {
  std::string model_dir;
  std::string text;
  std::string file;
  bool no_special = false;
  bool bench = false;
  int repeat = 5;
};

struct DetokenizeArgs {
  std::string model_dir;
  std::string ids_text;
  bool skip_special = false;
};

void write_stdout(const std::string& bytes) {
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size())
    throw_error("stdout", "write failed");
  std::fflush(stdout);
}

// Encode throughput on one thread. The first run starts with an empty word cache (the tokenizer
// was just loaded); the others see it warm. Prints one JSON line on stdout and a summary on stderr.
void run_bench(const Tokenizer& tokenizer, const std::string& text, const TokenizeArgs& args) {
  using clock = std::chrono::steady_clock;
  std::vector<double> seconds;
  size_t n_tokens = 0;
  for (int run = 0; run < std::max(args.repeat, 1); ++run) {
    const auto start = clock::now();
    const std::vector<int32_t> ids = tokenizer.encode(text, !args.no_special);
    seconds.push_back(std::chrono::duration<double>(clock::now() - start).count());
    n_tokens = ids.size();
  }
  const double cold = seconds.front();
  std::vector<double> warm(seconds.begin() + (seconds.size() > 1 ? 1 : 0), seconds.end());
  std::sort(warm.begin(), warm.end());
  const double best = warm.front();
  const double mb = double(text.size()) / 1e6;
  std::printf("{\"bytes\": %zu, \"tokens\": %zu, \"runs\": %zu, \"cold_s\": %.6f, \"best_s\": %.6f, "
              "\"cold_mb_per_s\": %.3f, \"best_mb_per_s\": %.3f, \"best_tokens_per_s\": %.1f}\n",
              text.size(), n_tokens, seconds.size(), cold, best, mb / cold, mb / best, double(n_tokens) / best);
  std::fprintf(stderr, "jetlm tokenize --bench: %zu bytes -> %zu tokens; cold %.2f MB/s, warm %.2f MB/s, %.0f tokens/s\n",
               text.size(), n_tokens, mb / cold, mb / best, double(n_tokens) / best);
}

void run_tokenize(const TokenizeArgs& args) {
  const std::string text = args.file.empty() ? args.text : read_text_file(args.file);
  auto tokenizer = Tokenizer::load(args.model_dir);
  if (args.bench) {
    run_bench(*tokenizer, text, args);
    return;
  }
  const std::vector<int32_t> ids = tokenizer->encode(text, !args.no_special);
  std::string line;
  line.reserve(ids.size() * 7 + 1);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) line += ',';
    line += std::to_string(ids[i]);
  }
  line += '\n';
  write_stdout(line);
}

void run_detokenize(const DetokenizeArgs& args) {
  const std::vector<int32_t> ids = parse_id_list(args.ids_text, "--ids");
  auto tokenizer = Tokenizer::load(args.model_dir);
  const int32_t vocab = tokenizer->vocab_size();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab)
      throw_error("--ids", "token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                               " is out of range, expected 0.." + std::to_string(vocab - 1) + " (vocab size " +
                               std::to_string(vocab) + " of " + args.model_dir + ")");
    if (!tokenizer->has_token(ids[i]))
      throw_error("--ids", "token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                               " has no token in the vocabulary of " + args.model_dir);
  }
  write_stdout(tokenizer->decode(ids, args.skip_special));
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto tok = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "text -> token ids (comma-separated on one line)");
  cmd->add_option("--model", tok->model_dir, "model directory with tokenizer.json (or vocab.json + merges.txt)")
      ->required();
  CLI::Option* text = cmd->add_option("--text", tok->text, "the text to tokenize");
  CLI::Option* file = cmd->add_option("--file", tok->file, "read the text from a file (its bytes exactly)");
  text->excludes(file);
  file->excludes(text);
  cmd->add_flag("--no-special", tok->no_special,
                "do not match added tokens such as <|im_start|>: tokenize them as plain text");
  cmd->add_flag("--bench", tok->bench,
                "time encoding on one thread instead of printing ids (JSON line on stdout, summary on stderr)");
  cmd->add_option("--repeat", tok->repeat, "runs for --bench (the first one starts with a cold word cache)")
      ->check(kPositive);
  cmd->callback([tok, text, file] {
    if (text->count() == 0 && file->count() == 0) throw_error("tokenize", "give the text with --text STR or --file F");
    run_tokenize(*tok);
  });

  auto detok = std::make_shared<DetokenizeArgs>();
  CLI::App* dcmd = app.add_subcommand("detokenize", "token ids -> text (printed exactly, no newline added)");
  dcmd->add_option("--model", detok->model_dir, "model directory with tokenizer.json (or vocab.json + merges.txt)")
      ->required();
  dcmd->add_option("--ids", detok->ids_text, "comma-separated token ids, e.g. 9707,11,1879")->required();
  dcmd->add_flag("--skip-special", detok->skip_special, "leave special tokens (<|im_start|>, ...) out of the text");
  dcmd->callback([detok] { run_detokenize(*detok); });
}

}  // namespace jetlm::cli
