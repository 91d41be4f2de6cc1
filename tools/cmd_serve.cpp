// jetlm serve: the OpenAI-compatible HTTP server (docs/server.md) with continuous batching on
// the CPU engine. SIGTERM/SIGINT stop it gracefully: new requests get 503, in-flight ones finish
// within --shutdown-grace seconds or are cancelled, then it exits 0.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "backend/ops.h"
#include "cli_util.h"
#include "commands.h"
#ifdef JETLM_HAVE_CUDA
#include "backend/cuda/cuda_model.h"
#endif
#include "core/error.h"
#include "io/mapped_file.h"
#include "jetlm/chat_template.h"
#include "jetlm/cpu_batch_backend.h"
#include "jetlm/model.h"
#include "jetlm/text_generation.h"
#include "jetlm/tokenizer.h"
#include "server/http_server.h"
#include "server/scheduler.h"

namespace jetlm::cli {

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop.store(true); }

struct ServeArgs {
  std::string model_dir, host = "127.0.0.1", api_key, weights = "as-stored", model_name;
  int port = 8080, max_batch = 8, threads = 0, max_queue = 64;
  int64_t ctx = 0, prefill_chunk = 256;
  double shutdown_grace = 5.0;
  std::string device = "cpu";
  HugepagesFlags hugepages;
};

void run_serve(const ServeArgs& args) {
  if (args.threads > 0) cpu::set_num_threads(args.threads);
  namespace fs = std::filesystem;
  if (!file_exists(args.model_dir + "/tokenizer.json") &&
      !(file_exists(args.model_dir + "/vocab.json") && file_exists(args.model_dir + "/merges.txt")))
    throw_error(args.model_dir, "no tokenizer (tokenizer.json or vocab.json + merges.txt); the server needs one");
  auto tokenizer = Tokenizer::load(args.model_dir);
  std::unique_ptr<ChatTemplate> chat_template;
  try {
    chat_template = std::make_unique<ChatTemplate>(ChatTemplate::load(args.model_dir));
  } catch (const Error& e) {
    std::fprintf(stderr, "jetlm serve: no chat template (%s); /v1/chat/completions will answer 400\n", e.what());
  }
  auto model = Model::load(args.model_dir, parse_weight_format(args.weights, "--weights"),
                           weight_placement(args.hugepages, args.device, args.model_dir));
  const ModelConfig& config = model->config();
  if (args.ctx < 0 || args.ctx > config.max_position)
    throw_error("--ctx", "expected 1.." + std::to_string(config.max_position) + " (the model's max_position_embeddings), got " +
                             std::to_string(args.ctx));
  std::unique_ptr<BatchBackend> backend_owner;
  if (args.device == "cpu") {
    backend_owner = std::make_unique<CpuBatchBackend>(*model, args.max_batch, args.ctx);
  } else if (args.device == "cuda") {
#ifdef JETLM_HAVE_CUDA
    cuda::CudaModelOptions cuda_options;
    cuda_options.max_slots = args.max_batch;
    cuda_options.context_limit = args.ctx;  // 0: the model's context, at most 32768
    cuda_options.prefill_chunk = std::max<int64_t>(args.prefill_chunk, 1);
    backend_owner = std::make_unique<cuda::CudaModel>(*model, cuda_options);
#else
    throw_error("--device cuda", "this jetlm was built without the CUDA backend (configure with -DJETLM_CUDA=ON)");
#endif
  } else {
    throw_error("--device", "'" + args.device + "' is not one of cpu, cuda");
  }
  BatchBackend& backend = *backend_owner;

  server::ApiContext context;
  context.tokenizer = tokenizer.get();
  context.chat_template = chat_template.get();
  // The directory's own name also for ".", "dir/" or "dir/.." (the path as given would name "." or "").
  fs::path served_dir = fs::absolute(args.model_dir).lexically_normal();
  if (!served_dir.has_filename()) served_dir = served_dir.parent_path();
  context.model_name = args.model_name.empty() ? served_dir.filename().string() : args.model_name;
  context.vocab = config.vocab;
  context.context_limit = backend.context_limit();
  context.eos_ids = eos_token_ids(args.model_dir, config);
  context.chat_stop_ids = context.eos_ids;
  // The end of an assistant turn in the Qwen-family templates, as `jetlm chat` stops on it.
  if (const auto im_end = tokenizer->token_to_id("<|im_end|>"))
    if (std::find(context.chat_stop_ids.begin(), context.chat_stop_ids.end(), *im_end) == context.chat_stop_ids.end())
      context.chat_stop_ids.push_back(*im_end);

  server::SchedulerOptions scheduler_options;
  scheduler_options.prefill_chunk = args.prefill_chunk;
  scheduler_options.max_queue = args.max_queue;
  scheduler_options.log_requests = true;
  server::Scheduler scheduler(backend, tokenizer.get(), scheduler_options);

  server::ServerOptions options;
  options.host = args.host;
  options.port = args.port;
  options.api_key = args.api_key;
  options.shutdown_grace = std::chrono::milliseconds(int64_t(args.shutdown_grace * 1000));
  // Every running or queued stream holds a connection thread, plus room for quick requests
  // (health, metrics, refusals) while all of those are busy.
  options.http_threads = args.max_batch + args.max_queue + 16;
  server::HttpServer http(scheduler, context, options);

  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not a signal

  const int port = http.bind();
  std::printf("jetlm serve: listening on http://%s:%d (model '%s', %d slots, context %lld, %d threads)\n",
              args.host.c_str(), port, context.model_name.c_str(), args.max_batch, (long long)backend.context_limit(),
              cpu::num_threads());
  std::fflush(stdout);
  if (!http.serve(g_stop)) throw_error("serve", "the HTTP listener stopped unexpectedly");
  std::fprintf(stderr, "jetlm serve: stopped\n");
}

void register_serve(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching (docs/server.md)");
  cmd->add_option("--model", args->model_dir, "model directory (with tokenizer files)")->required();
  cmd->add_option("--host", args->host, "address to listen on (default 127.0.0.1)");
  cmd->add_option("--port", args->port, "port (default 8080; 0 = any free port, printed)")->check(CLI::Range(0, 65535));
  cmd->add_option("--max-batch", args->max_batch, "slots: requests decoded together (default 8)")->check(CLI::Range(1, 4096));
  cmd->add_option("--ctx", args->ctx, "tokens per request, prompt + completion (default: the model's context)")
      ->check(kNonNegative);
  cmd->add_option("--api-key", args->api_key, "require 'Authorization: Bearer KEY' on /v1/*");
  cmd->add_option("--model-name", args->model_name, "the model id clients use (default: the directory's name)");
  cmd->add_option("--weights", args->weights, "as-stored (default) or q8 (quantize at load time)");
  cmd->add_option("--device", args->device, "cpu (default) or cuda (a build with JETLM_CUDA=ON and a GPU)");
  add_hugepages_flags(cmd, args->hugepages, kHugepagesHelp, kNoHugepagesHelp);
  cmd->add_option("--threads", args->threads, "CPU threads (default: all cores)")->check(kPositive);
  cmd->add_option("--prefill-chunk", args->prefill_chunk, "prompt tokens per prefill step (default 256)")
      ->check(kPositive);
  cmd->add_option("--max-queue", args->max_queue, "requests waiting for a slot before 429 (default 64)")
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--shutdown-grace", args->shutdown_grace, "seconds in-flight requests may finish after SIGTERM (default 5)")
      ->check(CLI::Range(0.0, 3600.0));
  cmd->callback([args] { run_serve(*args); });
}

static const CommandRegistrar registrar(register_serve);

}  // namespace

}  // namespace jetlm::cli
