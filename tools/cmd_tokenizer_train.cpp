// jetlm tokenizer train: learns a byte-level BPE tokenizer (Qwen2 pre-tokenizer) from text files
// and writes it in Hugging Face `tokenizers` format (src/data/bpe_trainer.h, docs/data.md).
//
//   jetlm tokenizer train --input FILES... --vocab-size N --out DIR [--special-tokens T...]
//                         [--eos T] [--max-mb M] [--min-frequency F] [--threads K]
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "data/bpe_trainer.h"
#include "data/documents.h"
#include "data/file_util.h"
#include "io/mapped_file.h"

namespace jetlm::cli {

namespace {

struct TrainArgs {
  std::vector<std::string> inputs;
  std::string out;
  int vocab_size = 8192;
  std::vector<std::string> special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  std::string eos = "<|endoftext|>";
  double max_mb = 0;
  int64_t min_frequency = 2;
  int threads = 0;
  uint64_t seed = 0;
};

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void run_train(const TrainArgs& args) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  if (args.inputs.empty()) throw_error("--input", "no input files given");
  std::vector<MappedFile> files;
  size_t total = 0;
  for (const std::string& path : args.inputs) {
    if (!std::filesystem::is_regular_file(path))
      throw_error(path, "input file not found (or not a regular file)");
    files.emplace_back(path);
    total += files.back().size();
  }
  // With --max-mb, keep a deterministic sample of whole documents from every file, so the mix of
  // sources stays the same as in the full corpus.
  const double keep =
      args.max_mb > 0 ? std::min(1.0, args.max_mb * 1e6 / double(std::max<size_t>(total, 1))) : 1.0;
  std::vector<std::string_view> documents;
  size_t kept_bytes = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::string_view text(reinterpret_cast<const char*>(files[f].data()), files[f].size());
    uint64_t index = 0;
    data::for_each_document(text, [&](std::string_view doc) {
      const uint64_t h = mix64(mix64(args.seed ^ (uint64_t(f) << 40)) ^ index++);
      if (keep < 1.0 && double(h >> 11) * 0x1.0p-53 >= keep) return;
      documents.push_back(doc);
      kept_bytes += doc.size();
    });
  }
  std::fprintf(stderr, "tokenizer train: %zu files, %s; training on %zu documents, %s\n",
               files.size(), data::format_bytes(double(total)).c_str(), documents.size(),
               data::format_bytes(double(kept_bytes)).c_str());

  data::BpeTrainOptions options;
  options.vocab_size = args.vocab_size;
  options.special_tokens = args.special_tokens;
  options.eos_token = args.eos;
  options.min_frequency = args.min_frequency;
  options.threads = args.threads;
  options.progress = true;
  bool eos_found = false;
  for (const std::string& s : options.special_tokens) {
    if (s.empty()) throw_error("--special-tokens", "a special token cannot be empty");
    eos_found |= s == options.eos_token;
  }
  if (!eos_found)
    throw_error("--eos", "'" + options.eos_token + "' is not one of --special-tokens");
  if (options.vocab_size < 256 + int(options.special_tokens.size()))
    throw_error("--vocab-size", "expected at least " +
                                    std::to_string(256 + options.special_tokens.size()) +
                                    " (256 byte tokens + the special tokens), got " +
                                    std::to_string(options.vocab_size));

  const data::WordCounts counts =
      data::count_words_parallel(documents, options.special_tokens, options.threads, true);
  const data::BpeVocab vocab = data::train_bpe(counts, options);
  data::write_tokenizer_files(args.out, vocab, options);
  std::fprintf(
      stderr,
      "tokenizer train: wrote %s/tokenizer.json (%zu BPE tokens + %zu special, %zu merges) in %s\n",
      args.out.c_str(), vocab.tokens.size(), options.special_tokens.size(), vocab.merges.size(),
      data::format_seconds(std::chrono::duration<double>(clock::now() - start).count()).c_str());
}

void register_tokenizer(CLI::App& app) {
  CLI::App* tok = app.add_subcommand("tokenizer", "tokenizer tools (train)");
  tok->require_subcommand(1);
  auto args = std::make_shared<TrainArgs>();
  CLI::App* train = tok->add_subcommand(
      "train", "learn a byte-level BPE tokenizer (HF tokenizers format) from text files");
  train
      ->add_option("--input", args->inputs,
                   "text files (documents separated by a form-feed line, docs/data.md)")
      ->required();
  train
      ->add_option("--vocab-size", args->vocab_size,
                   "total vocabulary size, special tokens included")
      ->required();
  train
      ->add_option(
          "--out", args->out,
          "output directory (tokenizer.json, vocab.json, merges.txt, tokenizer_config.json)")
      ->required();
  train
      ->add_option("--special-tokens", args->special_tokens,
                   "special tokens, appended after the BPE vocabulary")
      ->capture_default_str();
  train->add_option("--eos", args->eos, "the end-of-sequence token (one of --special-tokens)")
      ->capture_default_str();
  train->add_option("--max-mb", args->max_mb,
                    "train on a deterministic sample of whole documents of about this many MB");
  train
      ->add_option("--min-frequency", args->min_frequency,
                   "stop when the best pair occurs fewer times")
      ->capture_default_str();
  train->add_option("--threads", args->threads, "pre-tokenization threads (0 = all cores)");
  train->add_option("--seed", args->seed, "seed of the --max-mb document sample");
  train->callback([args] { run_train(*args); });
}

}  // namespace

static const CommandRegistrar registrar(register_tokenizer);

}  // namespace jetlm::cli
