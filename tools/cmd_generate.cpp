// jetlm generate: prompt in, tokens streamed out. jetlm chat: an interactive terminal chat through
// the model's own chat template that keeps the hybrid cache between turns.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>

#include <nlohmann/json.hpp>

#include "backend/ops.h"
#include "cli_util.h"
#include "commands.h"
#include "core/error.h"
#include "io/mapped_file.h"
#include "jetlm/chat_template.h"
#include "jetlm/model.h"
#include "jetlm/session.h"
#include "jetlm/text_generation.h"
#include "jetlm/tokenizer.h"
#ifdef JETLM_HAVE_CUDA
#include "backend/cuda/cuda_model.h"
#endif

namespace jetlm::cli {

namespace {

using json = nlohmann::ordered_json;

// Set by SIGINT: stops the reply being generated, not the program.
std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted.store(true); }

void install_sigint_handler() {
  struct sigaction action {};
  action.sa_handler = on_sigint;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a blocked read returns EINTR, so the prompt can recover
  sigaction(SIGINT, &action, nullptr);
}

// Flags shared by generate and chat.
struct SamplingFlags {
  std::optional<float> temperature, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty;
  std::optional<int> top_k, repeat_last_n;
  std::optional<uint64_t> seed;

  void add_to(CLI::App* cmd) {
    cmd->add_option("--temp", temperature, "sampling temperature; 0 = greedy (default 0.8 or generation_config.json)");
    cmd->add_option("--top-k", top_k, "keep the K most likely tokens; 0 = off (default 40)");
    cmd->add_option("--top-p", top_p, "nucleus sampling mass; 1 = off (default 0.95)");
    cmd->add_option("--min-p", min_p, "drop tokens below min_p * p_max; 0 = off (default 0.05)");
    cmd->add_option("--repeat-penalty", repeat_penalty, "CTRL-style repetition penalty; 1 = off (default 1)");
    cmd->add_option("--repeat-last-n", repeat_last_n, "tokens the repetition penalty looks back; -1 = all (default 64)");
    cmd->add_option("--presence-penalty", presence_penalty, "OpenAI-style presence penalty (default 0)");
    cmd->add_option("--frequency-penalty", frequency_penalty, "OpenAI-style frequency penalty (default 0)");
    cmd->add_option("--seed", seed, "sampling seed (default: random, printed to stderr)");
  }

  // Defaults, then the model's generation_config.json, then the flags.
  SamplingParams resolve(const std::string& model_dir) const {
    SamplingParams p;
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    const std::string gen_path = model_dir + "/generation_config.json";
    if (file_exists(gen_path)) {
      const json g = json::parse(read_text_file(gen_path), nullptr, false);
      if (g.is_discarded() || !g.is_object()) throw_error(gen_path, "not a JSON object");
      auto number = [&](const char* key, auto& out) {
        if (!g.contains(key) || g[key].is_null()) return;
        if (!g[key].is_number()) throw_error(gen_path, std::string("field '") + key + "': expected a number");
        out = g[key].get<std::decay_t<decltype(out)>>();
      };
      number("temperature", p.temperature);
      number("top_k", p.top_k);
      number("top_p", p.top_p);
      number("min_p", p.min_p);
      number("repetition_penalty", p.repeat_penalty);
      if (g.contains("do_sample") && g["do_sample"].is_boolean() && !g["do_sample"].get<bool>()) p.temperature = 0;
    }
    if (temperature) p.temperature = *temperature;
    if (top_k) p.top_k = *top_k;
    if (top_p) p.top_p = *top_p;
    if (min_p) p.min_p = *min_p;
    if (repeat_penalty) p.repeat_penalty = *repeat_penalty;
    if (repeat_last_n) p.repeat_last_n = *repeat_last_n;
    if (presence_penalty) p.presence_penalty = *presence_penalty;
    if (frequency_penalty) p.frequency_penalty = *frequency_penalty;
    p.seed = seed ? *seed : std::random_device{}() * uint64_t(0x100000001b3ULL) ^ std::random_device{}();
    validate(p);
    return p;
  }
};

bool has_tokenizer_files(const std::string& dir) {
  return file_exists(dir + "/tokenizer.json") || (file_exists(dir + "/vocab.json") && file_exists(dir + "/merges.txt"));
}

// Progress of a long prefill on stderr: one line, rewritten in a terminal.
std::function<void(int64_t, int64_t)> prefill_progress(int64_t total, int64_t chunk) {
  if (total <= chunk) return {};
  const bool tty = isatty(STDERR_FILENO) != 0;
  const auto t0 = std::chrono::steady_clock::now();
  return [tty, t0](int64_t done, int64_t all) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "%sprefill %lld/%lld tokens (%.0f tok/s)%s", tty ? "\r" : "", (long long)done,
                 (long long)all, s > 0 ? double(done) / s : 0.0, tty && done < all ? "" : "\n");
    std::fflush(stderr);
  };
}

void print_speed(const GenerateResult& r, int64_t prompt_tokens) {
  std::fprintf(stderr, "\n[prompt %lld tokens, prefill %.1f tok/s | generated %zu tokens, decode %.1f tok/s | %s]\n",
               (long long)prompt_tokens, r.prefill_seconds > 0 ? double(prompt_tokens) / r.prefill_seconds : 0.0,
               r.tokens.size(), r.decode_seconds > 0 ? double(r.tokens.size()) / r.decode_seconds : 0.0,
               r.finish_reason.c_str());
}

void add_unique(std::vector<int32_t>& ids, std::optional<int32_t> id) {
  if (id && std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
}

// ---------------------------------------------------------------------------------------------
// generate

struct GenerateArgs {
  std::string model_dir, prompt, prompt_ids, system, overflow = "error", weights = "as-stored";
  bool chat = false, output_ids = false, no_special = false, ignore_eos = false;
  HugepagesFlags hugepages;
  bool prompt_given = false;  // -p "" is given but empty: "prompt is empty", not "give one of"
  int64_t max_new = 256, chunk = 512;
  int threads = 0;
  std::vector<std::string> stops;
  SamplingFlags sampling;
  std::string device = "cpu";
};

// The session generate runs in: the CPU engine, or slot 0 of the CUDA engine sized for this
// prompt plus max_new tokens (the weights are uploaded once).
struct GenerationEngine {
  std::unique_ptr<BatchBackend> backend;
  std::unique_ptr<Session> session;
};
GenerationEngine make_engine(const Model& model, const std::string& device, int64_t tokens_needed, int64_t chunk) {
  GenerationEngine engine;
  if (device == "cpu") {
    engine.session = std::make_unique<Session>(model);
  } else if (device == "cuda") {
#ifdef JETLM_HAVE_CUDA
    cuda::CudaModelOptions options;
    options.max_slots = 1;
    options.context_limit = std::min<int64_t>(model.config().max_position, tokens_needed);
    options.prefill_chunk = std::min<int64_t>(std::max<int64_t>(chunk, 1), 65535);
    engine.backend = std::make_unique<cuda::CudaModel>(model, options);
    engine.session = std::make_unique<Session>(*engine.backend, 0);
#else
    (void)tokens_needed;
    (void)chunk;
    throw_error("--device cuda", "this jetlm was built without the CUDA backend (configure with -DJETLM_CUDA=ON)");
#endif
  } else {
    throw_error("--device", "'" + device + "' is not one of cpu, cuda");
  }
  return engine;
}

std::string read_prompt(const std::string& text) {
  if (!text.empty() && text[0] == '@') {
    const std::string path = text.substr(1);
    if (std::filesystem::is_directory(path)) throw_error("-p " + text, "'" + path + "' is a directory, not a prompt file");
    if (!file_exists(path)) throw_error("-p " + text, "prompt file '" + path + "' does not exist");
    return read_text_file(path);  // the file's bytes exactly
  }
  return text;
}

void run_generate(GenerateArgs& args) {
  if (args.prompt_given && args.prompt.empty()) throw_error("-p", "the prompt is empty");
  if (args.prompt.empty() == args.prompt_ids.empty())
    throw_error("generate", "give exactly one of -p/--prompt and --prompt-ids");
  const std::string prompt_text = read_prompt(args.prompt);  // before the model: a bad @FILE fails fast
  if (args.threads > 0) cpu::set_num_threads(args.threads);
  const SamplingParams sampling = args.sampling.resolve(args.model_dir);
  std::unique_ptr<Tokenizer> tokenizer;
  if (!args.prompt.empty() || !args.output_ids || !args.stops.empty()) {
    if (!has_tokenizer_files(args.model_dir))
      throw_error(args.model_dir, "no tokenizer (tokenizer.json or vocab.json + merges.txt); use --prompt-ids "
                                  "and --output-ids to run a model without one");
    tokenizer = Tokenizer::load(args.model_dir);
  }
  auto model = Model::load(args.model_dir, parse_weight_format(args.weights, "--weights"),
                           weight_placement(args.hugepages, args.device, args.model_dir));
  const ModelConfig& config = model->config();

  std::vector<int32_t> ids;
  std::vector<int32_t> stop_ids;
  if (!args.ignore_eos) stop_ids = eos_token_ids(args.model_dir, config);
  if (!args.prompt_ids.empty()) {
    if (args.chat) throw_error("--chat", "needs a text prompt (-p), not --prompt-ids");
    ids = parse_id_list(args.prompt_ids, "--prompt-ids");
  } else {
    std::string text = prompt_text;
    if (args.chat) {
      const ChatTemplate chat = ChatTemplate::load(args.model_dir);
      json messages = json::array();
      if (!args.system.empty()) messages.push_back({{"role", "system"}, {"content", args.system}});
      messages.push_back({{"role", "user"}, {"content", text}});
      text = chat.render(messages, /*add_generation_prompt=*/true);
      if (!args.ignore_eos) add_unique(stop_ids, tokenizer->token_to_id("<|im_end|>"));
    }
    ids = tokenizer->encode(text, /*match_added_tokens=*/!args.no_special);
  }
  if (ids.empty()) throw_error("prompt", "the prompt is empty (0 tokens); expected at least one token");
  const int64_t context = config.max_position;
  if (int64_t(ids.size()) >= context) {
    if (args.overflow != "truncate")
      throw_error("prompt", std::to_string(ids.size()) + " tokens do not fit the model's context of " +
                                std::to_string(context) + " (max_position_embeddings) with room to generate; "
                                "shorten it or pass --context-overflow truncate to keep its last tokens");
    const int64_t keep = std::max<int64_t>(1, context - std::min<int64_t>(args.max_new, context / 2));
    std::fprintf(stderr, "jetlm: prompt of %zu tokens truncated to its last %lld (context %lld)\n", ids.size(),
                 (long long)keep, (long long)context);
    ids.erase(ids.begin(), ids.end() - keep);
  }
  std::fprintf(stderr, "jetlm: %s, %zu prompt tokens, seed %llu\n", args.model_dir.c_str(), ids.size(),
               (unsigned long long)sampling.seed);

  GenerationEngine engine = make_engine(*model, args.device, int64_t(ids.size()) + args.max_new, args.chunk);
  Session& session = *engine.session;
  const auto t0 = std::chrono::steady_clock::now();
  session.feed(ids, args.chunk, prefill_progress(int64_t(ids.size()), args.chunk));
  const double prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  install_sigint_handler();
  TextGenerateOptions options;
  options.generate.sampling = sampling;
  options.generate.max_new_tokens = args.max_new;
  options.generate.stop_ids = stop_ids;
  options.generate.prefill_chunk = args.chunk;
  options.stop_strings = args.stops;
  GenerateResult result;
  if (args.output_ids && args.stops.empty()) {
    bool first = true;
    result = session.generate(options.generate, [&](int32_t id) {
      std::printf("%s%d", first ? "" : ",", id);
      std::fflush(stdout);
      first = false;
      return !g_interrupted.load();
    });
    std::printf("\n");
  } else {
    TextGenerateResult text = generate_text(session, *tokenizer, options, [&](std::string_view piece) {
      if (!args.output_ids) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      }
    }, &g_interrupted);
    result = text.tokens;
    if (args.output_ids) {
      for (size_t i = 0; i < result.tokens.size(); ++i) std::printf("%s%d", i ? "," : "", result.tokens[i]);
      std::printf("\n");
    }
  }
  std::fflush(stdout);
  result.prefill_seconds = prefill_seconds;
  print_speed(result, int64_t(ids.size()));
}

// ---------------------------------------------------------------------------------------------
// chat

struct ChatArgs {
  std::string model_dir, system, weights = "as-stored";
  int64_t max_new = 1024, chunk = 512;
  int threads = 0;
  HugepagesFlags hugepages;
  SamplingFlags sampling;
};

// Reads one user message: a line, or several when lines end with '\'. Returns nullopt at EOF;
// an empty optional string when Ctrl-C interrupted the read.
std::optional<std::string> read_user_message(bool& interrupted) {
  std::string message;
  interrupted = false;
  std::fputs(isatty(STDIN_FILENO) ? "\n> " : "", stdout);
  std::fflush(stdout);
  char buffer[4096];
  while (true) {
    errno = 0;
    if (std::fgets(buffer, sizeof buffer, stdin) == nullptr) {
      if (errno == EINTR || g_interrupted.load()) {
        clearerr(stdin);
        g_interrupted.store(false);
        interrupted = true;
        return std::string();
      }
      if (message.empty()) return std::nullopt;
      return message;
    }
    message += buffer;
    if (!message.empty() && message.back() == '\n') {
      message.pop_back();
      if (!message.empty() && message.back() == '\r') message.pop_back();
      if (!message.empty() && message.back() == '\\') {
        message.back() = '\n';  // continued on the next line
        continue;
      }
      return message;
    }
  }
}

void run_chat(ChatArgs& args) {
  if (args.threads > 0) cpu::set_num_threads(args.threads);
  const SamplingParams sampling = args.sampling.resolve(args.model_dir);
  if (!has_tokenizer_files(args.model_dir))
    throw_error(args.model_dir, "chat needs a tokenizer (tokenizer.json or vocab.json + merges.txt)");
  auto tokenizer = Tokenizer::load(args.model_dir);
  const ChatTemplate chat_template = ChatTemplate::load(args.model_dir);
  auto model = Model::load(args.model_dir, parse_weight_format(args.weights, "--weights"),
                           weight_placement(args.hugepages, "cpu", args.model_dir));
  Session session(*model);
  std::vector<int32_t> stop_ids = eos_token_ids(args.model_dir, model->config());
  add_unique(stop_ids, tokenizer->token_to_id("<|im_end|>"));

  json messages = json::array();
  if (!args.system.empty()) messages.push_back({{"role", "system"}, {"content", args.system}});
  std::string fed_text;  // the text the session's cache holds, as rendered + generated
  int64_t turns = 0, reused_tokens = 0, reprefills = 0;
  GenerateResult last;
  int64_t last_prompt_tokens = 0;
  install_sigint_handler();
  std::fprintf(stderr, "jetlm chat: %s (%lld layers, context %lld). /help for commands, Ctrl-C stops a reply, "
               "Ctrl-D quits.\n", args.model_dir.c_str(), (long long)model->config().n_layers,
               (long long)session.context_limit());
  while (true) {
    bool interrupted = false;
    const std::optional<std::string> line = read_user_message(interrupted);
    if (!line) break;
    if (interrupted) {
      std::fprintf(stderr, "\n(Ctrl-D or /quit to exit)\n");
      continue;
    }
    if (line->empty()) continue;
    if (*line == "/quit" || *line == "/exit") break;
    if (*line == "/help") {
      std::fprintf(stderr, "/reset  forget the conversation\n/stats  cache and speed\n/quit   leave\n"
                           "end a line with \\ to continue the message on the next line\n");
      continue;
    }
    if (*line == "/reset") {
      session.reset();
      fed_text.clear();
      messages = json::array();
      if (!args.system.empty()) messages.push_back({{"role", "system"}, {"content", args.system}});
      std::fprintf(stderr, "(conversation reset)\n");
      continue;
    }
    if (*line == "/stats") {
      std::fprintf(stderr, "turns %lld | cache %lld tokens, %.2f MB | tokens reused from the cache %lld, "
                   "full re-prefills %lld\n", (long long)turns, (long long)session.history().size(),
                   double(session.cache().bytes()) / 1e6, (long long)reused_tokens, (long long)reprefills);
      if (turns > 0) print_speed(last, last_prompt_tokens);
      continue;
    }
    messages.push_back({{"role", "user"}, {"content", *line}});
    const std::string rendered = chat_template.render(messages, /*add_generation_prompt=*/true);
    // Reuse the cache when the conversation only grew at the end; otherwise start over.
    std::string delta = rendered;
    if (!fed_text.empty() && rendered.compare(0, fed_text.size(), fed_text) == 0) {
      delta = rendered.substr(fed_text.size());
      reused_tokens += int64_t(session.history().size());
    } else if (!fed_text.empty()) {
      session.reset();
      ++reprefills;
    }
    const std::vector<int32_t> ids = tokenizer->encode(delta);
    if (int64_t(session.history().size() + ids.size()) >= session.context_limit()) {
      std::fprintf(stderr, "jetlm: the conversation is full (%lld of %lld tokens); /reset to start over\n",
                   (long long)(session.history().size() + ids.size()), (long long)session.context_limit());
      messages.erase(messages.end() - 1);
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    session.feed(ids, args.chunk, prefill_progress(int64_t(ids.size()), args.chunk));
    const double prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const size_t history_before = session.history().size();
    TextGenerateOptions options;
    options.generate.sampling = sampling;
    options.generate.sampling.seed = sampling.seed + uint64_t(turns);
    options.generate.max_new_tokens = args.max_new;
    options.generate.stop_ids = stop_ids;
    g_interrupted.store(false);
    TextGenerateResult reply = generate_text(session, *tokenizer, options, [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }, &g_interrupted);
    g_interrupted.store(false);
    std::fputc('\n', stdout);
    if (reply.tokens.finish_reason == "cancelled") std::fprintf(stderr, "(stopped)\n");
    last = reply.tokens;
    last.prefill_seconds = prefill_seconds;
    last_prompt_tokens = int64_t(ids.size());
    messages.push_back({{"role", "assistant"}, {"content", reply.text}});
    const std::vector<int32_t> generated(session.history().begin() + int64_t(history_before), session.history().end());
    fed_text = rendered + tokenizer->decode(generated, /*skip_special=*/false);
    ++turns;
  }
}

// ---------------------------------------------------------------------------------------------
// template: print the prompt text a conversation renders to

struct TemplateArgs {
  std::string model_dir, messages_file, tools_file, extra_json;
  bool add_generation_prompt = false;
};

void run_template(const TemplateArgs& args) {
  const ChatTemplate chat = ChatTemplate::load(args.model_dir);
  auto read_json = [](const std::string& path) {
    if (!file_exists(path)) throw_error(path, "does not exist");
    json j = json::parse(read_text_file(path), nullptr, false);
    if (j.is_discarded()) throw_error(path, "is not valid JSON");
    return j;
  };
  json messages = read_json(args.messages_file);
  json tools = args.tools_file.empty() ? json(nullptr) : read_json(args.tools_file);
  json extra = json::object();
  if (!args.extra_json.empty()) {
    extra = json::parse(args.extra_json, nullptr, false);
    if (extra.is_discarded() || !extra.is_object()) throw_error("--vars", "expected a JSON object, e.g. {\"enable_thinking\": false}");
  }
  const std::string text = chat.render(messages, args.add_generation_prompt, tools, extra);
  std::fwrite(text.data(), 1, text.size(), stdout);
}

}  // namespace

void register_generate(CLI::App& app) {
  auto tmpl = std::make_shared<TemplateArgs>();
  CLI::App* tcmd = app.add_subcommand("template", "print the prompt a conversation renders to through the chat template");
  tcmd->add_option("--model", tmpl->model_dir, "model directory (chat_template.jinja or tokenizer_config.json)")->required();
  tcmd->add_option("--messages", tmpl->messages_file, "JSON file: array of {role, content, ...}")->required();
  tcmd->add_option("--tools", tmpl->tools_file, "JSON file: array of tool definitions");
  tcmd->add_option("--vars", tmpl->extra_json, "more template variables as a JSON object");
  tcmd->add_flag("--add-generation-prompt", tmpl->add_generation_prompt, "end with the assistant turn's opening");
  tcmd->callback([tmpl] { run_template(*tmpl); });

  auto gen = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "generate text from a prompt, streamed to stdout");
  cmd->add_option("--model", gen->model_dir, "model directory (default: $JETLM_MODEL, else the embedded "
                  "models/jet-postnas-tiny)");
  cmd->add_option("-p,--prompt", gen->prompt, "prompt text, or @FILE to read it from a file")
      ->each([gen](const std::string&) { gen->prompt_given = true; });
  cmd->add_option("--prompt-ids", gen->prompt_ids, "prompt as comma-separated token ids (no tokenizer needed)");
  cmd->add_option("-n,--max-new", gen->max_new, "most tokens to generate (default 256)")->check(kNonNegative);
  cmd->add_option("--stop", gen->stops, "stop before this text (repeatable)");
  cmd->add_flag("--chat", gen->chat, "wrap the prompt as a user message in the model's chat template");
  cmd->add_option("--system", gen->system, "system message for --chat (default: the template's)");
  cmd->add_flag("--output-ids", gen->output_ids, "print the generated ids comma-separated instead of text");
  cmd->add_flag("--ignore-eos", gen->ignore_eos, "keep generating past end-of-sequence tokens (benchmarks)");
  cmd->add_flag("--no-special", gen->no_special, "do not match special tokens in the prompt text");
  cmd->add_option("--context-overflow", gen->overflow, "a prompt longer than the context: error (default) or "
                  "truncate (keep its last tokens)")->check(CLI::IsMember({"error", "truncate"}));
  cmd->add_option("--chunk", gen->chunk, "prefill chunk in tokens (default 512)")->check(kPositive);
  cmd->add_option("--threads", gen->threads, "CPU threads (default: all cores)")->check(kPositive);
  cmd->add_option("--weights", gen->weights, "as-stored (default) or q8 (quantize at load time)");
  cmd->add_option("--device", gen->device, "cpu (default) or cuda (a build with JETLM_CUDA=ON and a GPU)");
  gen->hugepages.auto_copy = false;  // one-shot: no copy unless asked for
  add_hugepages_flags(cmd, gen->hugepages, kHugepagesHelpOptIn, kNoHugepagesHelp);
  gen->sampling.add_to(cmd);
  cmd->callback([gen] {
    gen->model_dir = cli::resolve_model_dir(gen->model_dir);
    run_generate(*gen);
  });

  auto chat = std::make_shared<ChatArgs>();
  CLI::App* chat_cmd = app.add_subcommand("chat", "interactive chat in the terminal through the model's chat template");
  chat_cmd->add_option("--model", chat->model_dir, "model directory (default: $JETLM_MODEL, else the embedded "
                       "models/jet-postnas-tiny)");
  chat_cmd->add_option("--system", chat->system, "system message (default: the template's)");
  chat_cmd->add_option("-n,--max-new", chat->max_new, "most tokens per reply (default 1024)")->check(kPositive);
  chat_cmd->add_option("--chunk", chat->chunk, "prefill chunk in tokens (default 512)")->check(kPositive);
  chat_cmd->add_option("--threads", chat->threads, "CPU threads (default: all cores)")->check(kPositive);
  chat_cmd->add_option("--weights", chat->weights, "as-stored (default) or q8 (quantize at load time)");
  add_hugepages_flags(chat_cmd, chat->hugepages, kHugepagesHelp, kNoHugepagesHelp);
  chat->sampling.add_to(chat_cmd);
  chat_cmd->callback([chat] {
    chat->model_dir = cli::resolve_model_dir(chat->model_dir);
    run_chat(*chat);
  });
}

}  // namespace jetlm::cli
