// jetlm data: token datasets for training (src/data, docs/data.md).
//
//   jetlm data build --tokenizer DIR --input FILES... --out DIR [--heldout-fraction F]
//                    [--shard-tokens N] [--seed S] [--threads K] [--match-special] [--force]
//   jetlm data info DIR                      -> the splits, their tokens and documents
//   jetlm data sample --task NAME --tokenizer DIR [--n N] [--seed S] [--context-tokens T]
//                    [--heldout DIR]         -> generated task examples as text (for a look)
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "data/dataset_builder.h"
#include "data/file_util.h"
#include "data/tasks.h"
#include "data/token_dataset.h"
#include "jetlm/tokenizer.h"

namespace jetlm::cli {

namespace {

struct SampleArgs {
  std::string task, tokenizer, heldout;
  int64_t n = 2;
  uint64_t seed = 0;
  data::TaskParams params;
};

void run_build(const data::BuildOptions& options) {
  const data::BuildStats s = data::build_dataset(options);
  std::fprintf(stderr,
               "data build: %s -> %s: train %lld tokens / %lld documents, heldout %lld tokens / "
               "%lld documents "
               "in %s (%s/s)\n",
               data::format_bytes(double(s.bytes)).c_str(), options.out_dir.c_str(),
               (long long)s.train_tokens, (long long)s.train_documents, (long long)s.heldout_tokens,
               (long long)s.heldout_documents, data::format_seconds(s.seconds).c_str(),
               data::format_bytes(double(s.bytes) / std::max(s.seconds, 1e-9)).c_str());
}

void run_info(const std::string& dir) {
  for (const char* split : {"train", "heldout"}) {
    const data::TokenDataset ds = data::TokenDataset::open(dir, split);
    std::printf("%-8s %12lld tokens  %9lld documents  %zu shards  (vocab %d, eos %d)\n", split,
                (long long)ds.size(), (long long)ds.documents(), ds.shards().size(),
                ds.vocab_size(), ds.eos_id());
  }
}

void run_sample(const SampleArgs& args) {
  const data::TaskKind kind = data::parse_task_kind(args.task);
  auto tok = Tokenizer::load(args.tokenizer);
  std::unique_ptr<data::TokenDataset> heldout;
  if (!args.heldout.empty())
    heldout =
        std::make_unique<data::TokenDataset>(data::TokenDataset::open(args.heldout, "heldout"));
  const auto examples =
      data::make_examples(kind, *tok, args.params, args.n, args.seed, heldout.get());
  for (size_t i = 0; i < examples.size(); ++i) {
    const auto& e = examples[i];
    std::printf("=== example %zu: %zu prompt tokens\n%s", i, e.prompt.size(),
                tok->decode(e.prompt).c_str());
    if (kind == data::TaskKind::Cloze) {
      for (size_t c = 0; c < e.choices.size(); ++c)
        std::printf("\n--- choice %zu%s: %s", c, int(c) == e.correct ? " (correct)" : "",
                    tok->decode(e.choices[c]).c_str());
      std::printf("\n");
    } else {
      std::printf("[[%s]]\n", tok->decode(e.answer).c_str());
    }
  }
}

void register_data(CLI::App& app) {
  CLI::App* data_cmd =
      app.add_subcommand("data", "token datasets: build, info, sample synthetic tasks");
  data_cmd->require_subcommand(1);

  auto b = std::make_shared<data::BuildOptions>();
  b->progress = true;
  CLI::App* build =
      data_cmd->add_subcommand("build", "tokenize text files into uint32 shards + index.json");
  build->add_option("--tokenizer", b->tokenizer_dir, "tokenizer directory (tokenizer.json)")
      ->required();
  build->add_option("--input", b->inputs, "text files (documents separated by a form-feed line)")
      ->required();
  build
      ->add_option("--out", b->out_dir,
                   "output directory (must not exist or be empty, unless --force)")
      ->required();
  build->add_option("--heldout-fraction", b->heldout_fraction, "fraction of documents held out")
      ->capture_default_str();
  build
      ->add_option("--shard-tokens", b->shard_tokens,
                   "tokens per shard (shards hold whole documents)")
      ->capture_default_str();
  build->add_option("--seed", b->seed, "seed of the train/heldout assignment")
      ->capture_default_str();
  build->add_option("--threads", b->threads, "encoding threads (0 = all cores)");
  build->add_flag("--match-special", b->match_special,
                  "turn special-token text such as <|im_start|> into its id");
  build->add_flag("--force", b->force, "replace an existing non-empty output directory");
  build->callback([b] { run_build(*b); });

  auto dir = std::make_shared<std::string>();
  CLI::App* info = data_cmd->add_subcommand("info", "print the splits of a token dataset");
  info->add_option("dir", *dir, "dataset directory")->required();
  info->callback([dir] { run_info(*dir); });

  auto s = std::make_shared<SampleArgs>();
  CLI::App* sample = data_cmd->add_subcommand("sample", "print generated task examples");
  sample->add_option("--task", s->task, "kv-retrieval, passkey, cloze or arithmetic")->required();
  sample->add_option("--tokenizer", s->tokenizer, "tokenizer directory")->required();
  sample->add_option("--heldout", s->heldout, "token dataset directory (cloze passages)");
  sample->add_option("--n", s->n, "examples")->capture_default_str();
  sample->add_option("--seed", s->seed, "seed")->capture_default_str();
  sample->add_option("--context-tokens", s->params.context_tokens, "context length")
      ->capture_default_str();
  sample->add_option("--num-pairs", s->params.num_pairs, "kv pairs")->capture_default_str();
  sample->add_option("--num-queries", s->params.num_queries, "kv queries")->capture_default_str();
  sample->add_option("--depth", s->params.depth, "passkey depth 0..1 (< 0: random)")
      ->capture_default_str();
  sample->callback([s] { run_sample(*s); });
}

}  // namespace

static const CommandRegistrar registrar(register_data);

}  // namespace jetlm::cli
