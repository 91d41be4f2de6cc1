#include "postnas/export.h"

#include <chrono>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "data/token_dataset.h"
#include "io/mapped_file.h"
#include "jetlm/tokenizer.h"
#include "postnas/ops.h"
#include "postnas/pretrain.h"
#include "postnas/scoring.h"

namespace jetlm::postnas {

namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

}  // namespace

ExportResult export_hybrid(const ExportOptions& o) {
  std::function<void(const std::string&)> log = o.log;
  if (!log) log = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
  const std::string where = "postnas export";
  if (o.teacher.empty() || o.out.empty() || o.data.empty()) throw_error(where, "--teacher, --data and --out are required");
  if (o.steps < 0 || o.batch < 1 || o.seq < 2) throw_error(where, "expected --steps >= 0, --batch >= 1, --seq >= 2");
  if (o.dtype != "bf16" && o.dtype != "f32") throw_error("--dtype", "expected bf16 or f32");
  check_device(o.device);
  if (fs::exists(fs::path(o.out) / "model.safetensors"))
    throw_error(o.out, "already holds a model (choose a new --out; nothing is overwritten)");
  if (o.threads > 0) torch::set_num_threads(o.threads);
  const torch::Device device(o.device == "cuda" ? torch::kCUDA : torch::kCPU);
  const bool autocast = device.is_cuda();

  // The teacher, and the hybrid's config: the teacher's with layer types and the JetBlock sizes.
  const ModelSpec tspec = load_model_spec(o.teacher);
  for (BlockKind b : tspec.blocks)
    if (b != BlockKind::Attn) throw_error(o.teacher, "the teacher must be all full attention");
  const ModelConfig& tc = tspec.config;
  const int64_t L = tc.n_layers;
  const std::vector<bool> full = parse_placement(o.full, L, "--full"), swa = parse_placement(o.swa, L, "--swa");
  ojson json = tspec.json;
  json["model_type"] = "jet_nemotron";
  json["architectures"] = {"JetNemotronForCausalLM"};
  ojson types = ojson::array();
  for (int64_t i = 0; i < L; ++i) {
    if (full[size_t(i)] && swa[size_t(i)]) throw_error("--swa", "layer " + std::to_string(i) + " is also in --full");
    types.push_back(full[size_t(i)] ? "attn" : swa[size_t(i)] ? "swa" : "jet");
  }
  json["layer_types"] = types;
  const int heads = o.sizes.heads > 0 ? o.sizes.heads : tc.n_heads, dk = o.sizes.dk > 0 ? o.sizes.dk : tc.head_dim,
            dv = o.sizes.dv > 0 ? o.sizes.dv : tc.head_dim;
  json["efficient_attention_config"] = {
      {"jet",
       {{"num_heads", heads}, {"head_dim", dk}, {"expand_v", double(dv) / double(dk)}, {"conv_size", o.sizes.conv > 0 ? o.sizes.conv : 4},
        {"dconv_generator_reduction", 8}, {"norm_eps", "1e-5"}, {"mode", "chunk"}}},
      {"swa", {{"window_size", o.swa_window}}}};
  const ModelSpec spec = parse_model_spec(json, {}, o.out + "/config.json");

  HybridModel teacher = load_model(o.teacher);
  torch::manual_seed(o.seed);
  HybridModel student(spec.config, spec.blocks);
  // Everything the teacher has (embeddings, norms, MLPs, kept attention) is copied and frozen.
  {
    torch::NoGradGuard no_grad;
    const auto tparams = teacher->named_parameters();
    for (auto& item : student->named_parameters()) {
      const torch::Tensor* src = tparams.find(item.key());
      if (src && src->sizes() == item.value().sizes()) {
        item.value().copy_(*src);
        item.value().requires_grad_(false);
      }
    }
  }
  std::vector<torch::Tensor> trainable;
  for (int64_t i = 0; i < L; ++i) {
    if (spec.blocks[size_t(i)] != BlockKind::Jet) continue;
    auto* attn = dynamic_cast<AttentionImpl*>(teacher->model->layers[i]->as<DecoderLayerImpl>()->self_attn.get());
    auto& mixer = *student->model->layers[i]->as<DecoderLayerImpl>()->self_attn;
    init_mixer_from_attention(mixer, *attn, tc);
    for (auto& p : mixer.parameters()) {
      p.requires_grad_(true);
      trainable.push_back(p);
    }
  }
  ExportResult result;
  for (const auto& p : trainable) result.trainable += p.numel();
  teacher->to(device);
  student->to(device);
  for (auto& p : teacher->parameters()) p.requires_grad_(false);
  log(where + ": " + std::to_string(L) + " layers {" + [&] {
        std::string s;
        for (const auto& t : types) s += (s.empty() ? "" : ",") + t.get<std::string>();
        return s;
      }() + "}, JetBlock " + std::to_string(heads) + " heads, dk " + std::to_string(dk) + ", dv " + std::to_string(dv) +
      ", " + fmt("%.2f", double(result.trainable) / 1e6) + "M trainable; stage-1 distillation " + std::to_string(o.steps) +
      " steps of " + std::to_string(o.batch) + " x " + std::to_string(o.seq));

  if (o.steps > 0) {
    const auto train = data::TokenDataset::open(o.data, "train");
    if (train.size() < o.seq + 1) throw_error(o.data, "the train split is shorter than --seq + 1");
    std::vector<data::TaskKind> kinds;
    std::unique_ptr<Tokenizer> tokenizer;
    if (o.task_mix > 0) {
      for (const TaskSpec& s : parse_task_specs(o.tasks, o.seq, "--tasks")) kinds.push_back(s.kind);
      tokenizer = Tokenizer::load(train.tokenizer_dir());
    }
    const TrainBatches batches(train, tokenizer.get(), kinds, o.task_mix, o.seq, o.seed);
    torch::optim::AdamW optimizer(trainable, torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).weight_decay(0.0));
    auto t0 = std::chrono::steady_clock::now();
    double kl_sum = 0;
    int64_t n = 0, tokens = 0;
    for (int64_t step = 0; step < o.steps; ++step) {
      const double lr = lr_at(step, o.steps, o.lr, o.min_lr, o.warmup);
      for (auto& g : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
      const torch::Tensor ids = batches.make(step, 0, o.batch).to(device).narrow(1, 0, o.seq);
      torch::Tensor tlogp, slogits;
      {
        torch::NoGradGuard no_grad;
        AutocastBf16Cuda guard(autocast);
        tlogp = torch::log_softmax(teacher->forward(ids), -1);
      }
      {
        AutocastBf16Cuda guard(autocast);
        slogits = student->forward(ids);
      }
      const torch::Tensor kl = (tlogp.exp() * (tlogp - torch::log_softmax(slogits, -1))).sum(-1).mean();
      const double v = kl.item<double>();
      if (!std::isfinite(v)) throw_error(where, "step " + std::to_string(step + 1) + ": distillation loss is " + fmt("%g", v));
      optimizer.zero_grad();
      kl.backward();
      torch::nn::utils::clip_grad_norm_(trainable, o.clip > 0 ? o.clip : 1e30);
      optimizer.step();
      if (step == 0) result.first_kl = v;
      result.last_kl = v;
      kl_sum += v;
      ++n;
      tokens += o.batch * o.seq;
      if ((step + 1) % std::max<int64_t>(1, o.log_every) == 0 || step + 1 == o.steps) {
        if (device.is_cuda()) torch::cuda::synchronize();
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        result.tokens_per_s = sec > 0 ? double(tokens) / sec : 0;
        log(where + ": step " + std::to_string(step + 1) + "/" + std::to_string(o.steps) + " | lr " + fmt("%.2e", lr) +
            " | KL " + fmt("%.4f", kl_sum / double(n)) + " | " + fmt("%.0f", result.tokens_per_s) + " tok/s");
        kl_sum = 0;
        n = tokens = 0;
        t0 = std::chrono::steady_clock::now();
      }
    }
  }
  student->to(torch::kCPU);
  save_model(*student, spec, o.out, o.dtype == "bf16" ? DType::BF16 : DType::F32, /*overwrite=*/false);
  for (const char* name : {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
                           "chat_template.jinja", "generation_config.json"})
    if (fs::exists(fs::path(o.teacher) / name))
      fs::copy_file(fs::path(o.teacher) / name, fs::path(o.out) / name, fs::copy_options::overwrite_existing);
  ojson info;
  info["teacher"] = fs::absolute(o.teacher).string();
  info["full"] = placement_string(full);
  info["swa"] = placement_string(swa);
  info["stage1_steps"] = o.steps;
  info["stage1_first_kl"] = result.first_kl;
  info["stage1_last_kl"] = result.last_kl;
  write_file_atomic(o.out + "/export.json", info.dump(2) + "\n");
  log(where + ": wrote " + o.out);
  return result;
}

}  // namespace jetlm::postnas
