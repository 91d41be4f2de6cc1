// jetlm forward: logits of every position for given ids, as raw little-endian float32
// [n_ids, vocab]. Exercises prefill, chunked prefill and decode; used by the golden tests.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "backend/ops.h"
#include "cli_util.h"
#include "commands.h"
#include "jetlm/model.h"

namespace jetlm::cli {

namespace {

struct ForwardArgs {
  std::string model_dir;
  std::string ids_text;
  std::string logits_out;
  int64_t chunk = 0;         // 0: the whole prefill at once
  int64_t decode_from = -1;  // -1: no decode phase
  int threads = 0;
  std::string weights = "as-stored";
};

void run_forward(const ForwardArgs& args) {
  const std::vector<int32_t> ids = parse_id_list(args.ids_text, "--ids");
  const int64_t n = int64_t(ids.size());
  if (args.decode_from > n)
    throw_error("--decode-from", std::to_string(args.decode_from) + " is beyond the " +
                                     std::to_string(n) + " ids given");
  if (args.threads > 0) cpu::set_num_threads(args.threads);
  auto model = Model::load(args.model_dir, parse_weight_format(args.weights, "--weights"));
  const int64_t vocab = model->config().vocab;
  for (int64_t t = 0; t < n; ++t) {  // check before any work, with the flag's name
    if (ids[size_t(t)] < 0 || ids[size_t(t)] >= vocab)
      throw_error("--ids", "token id " + std::to_string(ids[size_t(t)]) + " at position " +
                               std::to_string(t) + " is out of range, expected 0.." +
                               std::to_string(vocab - 1) + " (vocab_size of " + args.model_dir + ")");
  }
  std::vector<float> logits(size_t(n * vocab));
  HybridCache cache = model->new_cache();
  const int64_t prefill = args.decode_from >= 0 ? args.decode_from : n;
  const int64_t chunk = args.chunk > 0 ? args.chunk : std::max<int64_t>(prefill, 1);
  for (int64_t t0 = 0; t0 < prefill; t0 += chunk) {
    const int64_t len = std::min(chunk, prefill - t0);
    model->forward(ids.data() + t0, len, cache, logits.data() + t0 * vocab);
  }
  for (int64_t t = prefill; t < n; ++t) model->forward(ids.data() + t, 1, cache, logits.data() + t * vocab);
  write_file_atomic(args.logits_out, logits.data(), logits.size() * sizeof(float));
  std::fprintf(stderr, "jetlm forward: %lld positions x %lld logits -> %s\n", (long long)n,
               (long long)vocab, args.logits_out.c_str());
}

}  // namespace

void register_forward(CLI::App& app) {
  auto args = std::make_shared<ForwardArgs>();
  CLI::App* cmd = app.add_subcommand("forward", "logits of every position for a list of token ids");
  cmd->add_option("--model", args->model_dir, "model directory (config.json + *.safetensors)")->required();
  cmd->add_option("--ids", args->ids_text, "comma-separated token ids, e.g. 5,17,42")->required();
  cmd->add_option("--logits-out", args->logits_out, "output: raw little-endian float32 [n_ids, vocab]")->required();
  cmd->add_option("--chunk", args->chunk, "prefill in chunks of N tokens (default: one chunk)")
      ->check(kPositive);
  cmd->add_option("--decode-from", args->decode_from,
                  "prefill the first K ids, then decode the rest one at a time")
      ->check(kNonNegative);
  cmd->add_option("--threads", args->threads, "CPU threads (default: all cores)")->check(kPositive);
  cmd->add_option("--weights", args->weights, "as-stored (default) or q8 (quantize at load time)");
  cmd->callback([args] { run_forward(*args); });
}

}  // namespace jetlm::cli
