// jetlm random-model: writes a Hugging Face style model directory with random weights for any
// config (a built-in preset or a config.json, with fields overridden by --set). Benchmarks and
// comparisons with other engines (llama.cpp) run on such checkpoints when no real one is at hand.
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "core/error.h"
#include "io/mapped_file.h"
#include "model/config.h"
#include "model/presets.h"
#include "model/weights.h"

namespace jetlm::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

struct RandomModelArgs {
  std::string config, out_dir, dtype = "bf16", tokenizer_from;
  std::vector<std::string> overrides;
  uint64_t seed = 1;
  bool force = false;
};

void run_random_model(const RandomModelArgs& args) {
  std::string text;
  if (const char* preset = find_preset_config(args.config)) text = preset;
  else if (fs::is_regular_file(args.config)) text = read_text_file(args.config);
  else if (fs::is_regular_file(args.config + "/config.json")) text = read_text_file(args.config + "/config.json");
  else
    throw_error("--config", "'" + args.config + "' is neither a preset (" + preset_names() +
                                ") nor a config.json or a directory holding one");
  json config = json::parse(text, nullptr, false);
  if (config.is_discarded() || !config.is_object()) throw_error(args.config, "config is not a JSON object");
  for (const std::string& kv : args.overrides) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw_error("--set " + kv, "expected KEY=VALUE, e.g. num_hidden_layers=2");
    json value = json::parse(kv.substr(eq + 1), nullptr, false);
    if (value.is_discarded()) value = kv.substr(eq + 1);  // a bare word is a string
    config[kv.substr(0, eq)] = value;
  }
  // Other tools (transformers, llama.cpp's converter) pick the architecture from this field.
  if (!config.contains("architectures") && config.contains("model_type")) {
    const std::string type = config["model_type"].is_string() ? config["model_type"].get<std::string>() : "";
    if (type == "qwen2") config["architectures"] = {"Qwen2ForCausalLM"};
    else if (type == "qwen3") config["architectures"] = {"Qwen3ForCausalLM"};
    else if (type == "jet_nemotron") config["architectures"] = {"JetNemotronForCausalLM"};
  }
  DType dtype;
  if (args.dtype == "bf16") dtype = DType::BF16;
  else if (args.dtype == "f16") dtype = DType::F16;
  else if (args.dtype == "f32") dtype = DType::F32;
  else throw_error("--dtype", "expected bf16, f16 or f32, got '" + args.dtype + "'");
  config["torch_dtype"] = args.dtype == "bf16" ? "bfloat16" : args.dtype == "f16" ? "float16" : "float32";
  const ModelConfig parsed = parse_model_config(nlohmann::json::parse(config.dump()), args.config);

  fs::create_directories(args.out_dir);
  for (const char* name : {"config.json", "model.safetensors", "model.safetensors.index.json"})
    if (fs::exists(fs::path(args.out_dir) / name) && !args.force)
      throw_error(args.out_dir, std::string(name) + " already exists; pass --force to replace it");
  WeightStorage storage;
  ModelWeights weights = random_weights(parsed, dtype, args.seed, storage);
  save_weights(parsed, weights, dtype, args.out_dir + "/model.safetensors", args.force);
  const std::string dumped = config.dump(2) + "\n";
  write_file_atomic(args.out_dir + "/config.json", dumped.data(), dumped.size());
  int copied = 0;
  if (!args.tokenizer_from.empty()) {
    for (const char* name : {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                             "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
                             "generation_config.json"}) {
      const fs::path from = fs::path(args.tokenizer_from) / name;
      if (!fs::exists(from)) continue;
      fs::copy_file(from, fs::path(args.out_dir) / name,
                    args.force ? fs::copy_options::overwrite_existing : fs::copy_options::skip_existing);
      ++copied;
    }
    if (copied == 0) throw_error("--tokenizer-from", "'" + args.tokenizer_from + "' holds no tokenizer files");
  }
  std::fprintf(stderr, "jetlm random-model: %s, %lld parameters (%s), seed %llu -> %s%s\n", args.config.c_str(),
               (long long)parameter_count(parsed), args.dtype.c_str(), (unsigned long long)args.seed,
               args.out_dir.c_str(), copied ? " (with tokenizer files)" : "");
}

}  // namespace

void register_random_model(CLI::App& app) {
  auto args = std::make_shared<RandomModelArgs>();
  CLI::App* cmd = app.add_subcommand("random-model", "write a model directory with random weights for a config");
  cmd->add_option("--config", args->config, "preset (" + preset_names() + "), config.json, or a model dir")->required();
  cmd->add_option("--out", args->out_dir, "output directory")->required();
  cmd->add_option("--dtype", args->dtype, "bf16 (default), f16 or f32");
  cmd->add_option("--set", args->overrides, "override a config field: KEY=JSON_VALUE (repeatable)");
  cmd->add_option("--seed", args->seed, "random seed (default 1)");
  cmd->add_option("--tokenizer-from", args->tokenizer_from, "copy tokenizer/chat-template files from this dir");
  cmd->add_flag("--force", args->force, "replace files that exist in --out");
  cmd->callback([args] { run_random_model(*args); });
}

}  // namespace jetlm::cli
