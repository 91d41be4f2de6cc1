// jetlm quantize: writes a q8 copy of a checkpoint (int8 weights in blocks of 32 with f16 scales,
// norms and gates kept float32) that the engine loads like any model directory.
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "core/error.h"
#include "io/mapped_file.h"
#include "jetlm/model.h"
#include "model/weights.h"

namespace jetlm::cli {

namespace {

namespace fs = std::filesystem;

struct QuantizeArgs {
  std::string model_dir, out_dir, type = "q8";
  bool force = false;
};

void run_quantize(const QuantizeArgs& args) {
  if (args.type != "q8") throw_error("--type", "'" + args.type + "' is not supported, expected q8");
  if (fs::exists(args.out_dir) && fs::exists(args.model_dir) && fs::equivalent(args.out_dir, args.model_dir))
    throw_error("--out", "is the input directory; write the quantized model somewhere else");
  for (const char* name : {"config.json", "model.safetensors", "model.safetensors.index.json"})
    if (fs::exists(fs::path(args.out_dir) / name) && !args.force)
      throw_error(args.out_dir, std::string(name) + " already exists; pass --force to replace it");
  auto model = Model::load(args.model_dir, WeightFormat::Q8);
  fs::create_directories(args.out_dir);
  ModelWeights weights = model->weights();  // views; save_weights walks them
  save_weights(model->config(), weights, DType::F32, args.out_dir + "/model.safetensors", args.force);
  // A sharded checkpoint's index would still win over the new model.safetensors at load time;
  // --force said to replace it, so it goes (its shards stay, unreferenced).
  if (args.force) fs::remove(fs::path(args.out_dir) / "model.safetensors.index.json");
  nlohmann::ordered_json config =
      nlohmann::ordered_json::parse(read_text_file(args.model_dir + "/config.json"), nullptr, false);
  config["quantization_config"] = {{"quant_method", "jetlm_q8"}, {"block_size", 32}, {"scale_dtype", "float16"}};
  const std::string text = config.dump(2) + "\n";
  write_file_atomic(args.out_dir + "/config.json", text.data(), text.size());
  for (const auto& entry : fs::directory_iterator(args.model_dir)) {  // tokenizer, templates, generation config
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name == "config.json" || name.find(".safetensors") != std::string::npos) continue;
    if (name.size() > 5 && (name.substr(name.size() - 5) == ".json" || name.substr(name.size() - 4) == ".txt" ||
                            name.substr(name.size() - 6) == ".jinja"))
      fs::copy_file(entry.path(), fs::path(args.out_dir) / name,
                    args.force ? fs::copy_options::overwrite_existing : fs::copy_options::skip_existing);
  }
  std::fprintf(stderr, "jetlm quantize: %s -> %s (q8, %.1f MB of weights)\n", args.model_dir.c_str(),
               args.out_dir.c_str(), double(model->weight_bytes()) / 1e6);
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  CLI::App* cmd = app.add_subcommand("quantize", "write an 8-bit (q8) copy of a model directory");
  cmd->add_option("--model", args->model_dir, "input model directory")->required();
  cmd->add_option("--out", args->out_dir, "output directory")->required();
  cmd->add_option("--type", args->type, "quantization type: q8 (blocks of 32, f16 scales)");
  cmd->add_flag("--force", args->force, "replace files that exist in --out");
  cmd->callback([args] { run_quantize(*args); });
}

}  // namespace jetlm::cli
