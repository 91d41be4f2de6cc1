// jetlm perplexity: held-out perplexity of a model on the CPU engine, over a token dataset split
// (`jetlm data build`) or a text file tokenized with the model's tokenizer.
//
//   jetlm perplexity --model DIR --data TOKENS [--split heldout] [--ctx 1024] [--max-tokens N]
//   jetlm perplexity --model DIR --text FILE [--weights q8]
//
// The tokens are cut into consecutive windows of --ctx tokens; each window starts from an empty
// cache and every token after its first is scored (-log p(token | the window before it)).
// Perplexity = exp(mean of those losses).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/ops.h"
#include "commands.h"
#include "core/error.h"
#include "data/token_dataset.h"
#include "io/mapped_file.h"
#include "jetlm/model.h"
#include "jetlm/tokenizer.h"

namespace jetlm::cli {

namespace {

struct PerplexityArgs {
  std::string model_dir, data, split = "heldout", text, weights = "as-stored";
  int64_t ctx = 1024, max_tokens = 65536;
  int threads = 0;
  bool json = false;
};

// -log softmax(logits)[target], in double.
double token_loss(const float* logits, int64_t vocab, int32_t target) {
  float mx = logits[0];
  for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, logits[v]);
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(logits[v]) - mx);
  return std::log(sum) + mx - double(logits[target]);
}

void run_perplexity(const PerplexityArgs& a) {
  if (a.data.empty() == a.text.empty()) throw_error("perplexity", "give exactly one of --data and --text");
  if (a.threads > 0) cpu::set_num_threads(a.threads);
  const auto model = Model::load(a.model_dir, parse_weight_format(a.weights, "--weights"));
  const int64_t vocab = model->config().vocab;

  std::vector<int32_t> tokens;
  std::string source;
  if (!a.data.empty()) {
    const auto ds = data::TokenDataset::open(a.data, a.split);
    if (ds.vocab_size() > vocab)
      throw_error(a.data, "the dataset's vocab_size " + std::to_string(ds.vocab_size()) + " exceeds the model's " +
                              std::to_string(vocab) + " (a different tokenizer?)");
    const int64_t n = a.max_tokens > 0 ? std::min(a.max_tokens, ds.size()) : ds.size();
    tokens.resize(size_t(n));
    ds.read(0, n, tokens.data());
    source = a.data + " (" + a.split + ")";
  } else {
    const auto tokenizer = Tokenizer::load(a.model_dir);
    tokens = tokenizer->encode(read_text_file(a.text), /*match_added_tokens=*/false);
    if (a.max_tokens > 0 && int64_t(tokens.size()) > a.max_tokens) tokens.resize(size_t(a.max_tokens));
    source = a.text;
  }
  if (tokens.size() < 2) throw_error("perplexity", source + " holds fewer than 2 tokens");

  const auto t0 = std::chrono::steady_clock::now();
  double loss_sum = 0;
  int64_t scored = 0, windows = 0;
  std::vector<float> logits;
  for (size_t start = 0; start + 1 < tokens.size(); start += size_t(a.ctx)) {
    const int64_t T = std::min<int64_t>(a.ctx, int64_t(tokens.size() - start));
    if (T < 2) break;
    HybridCache cache = model->new_cache();
    logits.resize(size_t(T * vocab));
    model->forward(tokens.data() + start, T, cache, logits.data());
    for (int64_t t = 0; t + 1 < T; ++t) loss_sum += token_loss(logits.data() + t * vocab, vocab, tokens[start + t + 1]);
    scored += T - 1;
    ++windows;
    std::fprintf(stderr, "\rperplexity: %lld / %zu tokens, running ppl %.3f   ", (long long)(start + T), tokens.size(),
                 std::exp(loss_sum / double(scored)));
  }
  std::fprintf(stderr, "\n");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double mean = loss_sum / double(scored);
  if (a.json) {
    const nlohmann::json j = {{"model", a.model_dir}, {"weights", a.weights}, {"source", source},
                              {"ctx", a.ctx},         {"windows", windows},   {"scored_tokens", scored},
                              {"loss", mean},         {"perplexity", std::exp(mean)},
                              {"tokens_per_s", double(scored + windows) / seconds}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("perplexity %.4f (loss %.5f nats/token) over %lld scored tokens in %lld windows of <= %lld, %s weights, "
                "%.0f tok/s\n",
                std::exp(mean), mean, (long long)scored, (long long)windows, (long long)a.ctx, a.weights.c_str(),
                double(scored + windows) / seconds);
  }
}

void register_perplexity(CLI::App& app) {
  auto a = std::make_shared<PerplexityArgs>();
  CLI::App* cmd = app.add_subcommand("perplexity", "held-out perplexity of a model (CPU engine)");
  cmd->add_option("--model", a->model_dir, "model directory")->required();
  cmd->add_option("--data", a->data, "token dataset dir (`jetlm data build`)");
  cmd->add_option("--split", a->split, "split of --data")->capture_default_str();
  cmd->add_option("--text", a->text, "a text file, tokenized with the model's tokenizer");
  cmd->add_option("--ctx", a->ctx, "window length in tokens")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--max-tokens", a->max_tokens, "score at most this many tokens (0 = all)")->capture_default_str();
  cmd->add_option("--weights", a->weights, "as-stored (default) or q8 (quantize at load time)");
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)")->check(kPositive);
  cmd->add_flag("--json", a->json, "print one JSON object");
  cmd->callback([a] { run_perplexity(*a); });
}

}  // namespace

static const CommandRegistrar registrar(register_perplexity);

}  // namespace jetlm::cli
