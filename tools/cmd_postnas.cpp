// jetlm postnas: the PostNAS trainer (src/postnas, libtorch). In a build without libtorch the
// subcommand exists and says how to get it.
//
//   jetlm postnas pretrain --config qwen2.5-1.5b --set num_hidden_layers=4 ... --data TOKENS --out RUN
#include <memory>
#include <string>

#include "commands.h"
#include "core/error.h"

#ifdef JETLM_HAVE_POSTNAS
#include <cstdlib>
#include <fstream>

#include "data/token_dataset.h"
#include "jetlm/tokenizer.h"
#include "postnas/checkpoint.h"
#include "postnas/distributed.h"
#include "postnas/export.h"
#include "postnas/pretrain.h"
#include "postnas/scoring.h"
#include "postnas/supernet.h"
#endif

namespace jetlm::cli {

namespace {

#ifdef JETLM_HAVE_POSTNAS

void register_pretrain(CLI::App& postnas) {
  auto o = std::make_shared<postnas::PretrainOptions>();
  auto no_resume = std::make_shared<bool>(false);
  auto no_plot = std::make_shared<bool>(false);
  CLI::App* cmd = postnas.add_subcommand(
      "pretrain", "train a model (the full-attention teacher) from scratch on a token dataset");
  cmd->add_option("--config", o->config, "preset, config.json or model dir (architecture only)")->required();
  cmd->add_option("--set", o->overrides, "override a config field: KEY=JSON_VALUE (repeatable; a.b=1 for nested)");
  cmd->add_option("--init-from", o->init_from, "start from this model dir's weights instead of random ones");
  cmd->add_option("--data", o->data, "token dataset dir (`jetlm data build`), train + heldout splits")->required();
  cmd->add_option("--out", o->out, "run dir: checkpoint/, final/, loss.csv, loss.png")->required();
  cmd->add_option("--device", o->device, "cpu or cuda (bf16 autocast)")->capture_default_str();
  cmd->add_option("--steps", o->steps, "optimizer steps")->capture_default_str();
  cmd->add_option("--batch", o->batch, "sequences per step")->capture_default_str();
  cmd->add_option("--seq", o->seq, "tokens per sequence")->capture_default_str();
  cmd->add_option("--lr", o->lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", o->min_lr, "learning rate at the last step (cosine)")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "linear warmup steps")->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW weight decay (matrices only)")->capture_default_str();
  cmd->add_option("--beta1", o->beta1, "AdamW beta1")->capture_default_str();
  cmd->add_option("--beta2", o->beta2, "AdamW beta2")->capture_default_str();
  cmd->add_option("--clip", o->clip, "gradient norm clip (0 = off)")->capture_default_str();
  cmd->add_option("--eval-every", o->eval_every, "held-out evaluation every N steps")->capture_default_str();
  cmd->add_option("--eval-batches", o->eval_batches, "held-out batches per evaluation")->capture_default_str();
  cmd->add_option("--save-every", o->save_every, "checkpoint every N steps")->capture_default_str();
  cmd->add_option("--log-every", o->log_every, "progress line and loss.csv row every N steps")->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the initial weights and of the batches")->capture_default_str();
  cmd->add_option("--stop-after", o->stop_after, "stop with a checkpoint after this step (resume later)");
  cmd->add_option("--final-dtype", o->final_dtype, "dtype of OUT/final: bf16 or f32")->capture_default_str();
  cmd->add_option("--threads", o->threads, "CPU threads for torch (0 = its default)");
  cmd->add_flag("--no-resume", *no_resume, "start over even when OUT/checkpoint exists");
  cmd->add_flag("--no-plot", *no_plot, "do not write loss.png");
  cmd->add_option("--task-mix", o->task_mix, "fraction of batch rows holding synthetic task examples")->capture_default_str();
  cmd->add_option("--tasks", o->tasks, "tasks mixed in (kv-retrieval, passkey, arithmetic)")->capture_default_str();
  cmd->add_option("--task-eval", o->task_eval, "tasks scored at each eval, e.g. kv-retrieval@256,passkey@512,arithmetic");
  cmd->add_option("--task-eval-examples", o->task_eval_examples, "examples per task at each eval")->capture_default_str();
  auto nproc = std::make_shared<int>(1);
  cmd->add_option("--nproc", *nproc, "data-parallel worker processes on this machine (one per GPU; NCCL)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--poison-step", o->poison_step, "(testing) make this step's loss NaN")->group("");
  cmd->callback([o, no_resume, no_plot, nproc] {
    o->resume = !*no_resume;
    o->plot = !*no_plot;
    if (*nproc > 1 && !std::getenv("JETLM_WORLD_SIZE")) {
      // This process only launches the workers (which run this same command line) and waits.
      const int status = postnas::launch_workers(*nproc);
      if (status != 0) throw_error("postnas pretrain", "a worker failed (status " + std::to_string(status) + ")");
      return;
    }
    const postnas::PretrainResult r = postnas::pretrain(*o);
    if (postnas::dist_env_from_environment().rank != 0) return;
    std::printf("steps %lld..%lld, train loss %.4f, eval loss %.4f, %.0f tokens/s\n", (long long)r.first_step,
                (long long)r.last_step, r.last_train_loss, r.last_eval_loss, r.tokens_per_s);
    for (const auto& [label, acc] : r.last_task_accuracy) std::printf("%s accuracy %.3f\n", label.c_str(), acc);
  });
}

struct EvalArgs {
  std::string model, data, tasks = "kv-retrieval@256,passkey@512,cloze@256,arithmetic", device = "cpu", csv;
  int64_t examples = 100, batch = 16;
  uint64_t seed = 7;
  int threads = 0;
};

void register_supernet(CLI::App& postnas) {
  auto o = std::make_shared<postnas::SuperNetOptions>();
  auto no_resume = std::make_shared<bool>(false);
  CLI::App* cmd = postnas.add_subcommand(
      "supernet", "train the once-for-all super-network: a linear path next to every teacher attention, by distillation");
  cmd->add_option("--teacher", o->teacher, "teacher model dir (full attention; frozen)")->required();
  cmd->add_option("--data", o->data, "token dataset dir (`jetlm data build`)")->required();
  cmd->add_option("--out", o->out, "run dir: checkpoint/, supernet/, supernet_loss.csv")->required();
  cmd->add_option("--block", o->block, "linear block type: gla, gdn or jet")->capture_default_str();
  cmd->add_option("--heads", o->sizes.heads, "linear block heads (0 = the teacher's attention heads)");
  cmd->add_option("--dk", o->sizes.dk, "key dim per head (0 = the teacher's head_dim)");
  cmd->add_option("--dv", o->sizes.dv, "value dim per head (0 = the teacher's head_dim)");
  cmd->add_option("--max-full", o->max_full, "sampled sub-networks keep 0..N layers full (-1 = half the layers)")
      ->capture_default_str();
  cmd->add_option("--hidden-mse", o->hidden_mse, "weight of the final-hidden-state MSE next to the KL")->capture_default_str();
  cmd->add_option("--device", o->device, "cpu or cuda (bf16 autocast)")->capture_default_str();
  cmd->add_option("--steps", o->steps, "optimizer steps")->capture_default_str();
  cmd->add_option("--batch", o->batch, "sequences per step")->capture_default_str();
  cmd->add_option("--seq", o->seq, "tokens per sequence")->capture_default_str();
  cmd->add_option("--lr", o->lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", o->min_lr, "learning rate at the last step")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "linear warmup steps")->capture_default_str();
  cmd->add_option("--task-mix", o->task_mix, "fraction of rows holding synthetic task examples")->capture_default_str();
  cmd->add_option("--tasks", o->tasks, "tasks mixed in")->capture_default_str();
  cmd->add_option("--log-every", o->log_every, "progress line every N steps")->capture_default_str();
  cmd->add_option("--save-every", o->save_every, "checkpoint every N steps")->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the linear blocks, batches and sampled sub-networks")->capture_default_str();
  cmd->add_option("--threads", o->threads, "CPU threads for torch (0 = its default)");
  cmd->add_option("--stop-after", o->stop_after, "stop with a checkpoint after this step (resume later)");
  cmd->add_flag("--no-resume", *no_resume, "start over even when OUT/checkpoint exists");
  cmd->callback([o, no_resume] {
    o->resume = !*no_resume;
    const auto r = postnas::train_supernet(*o);
    std::printf("steps %lld..%lld, KL %.4f -> %.4f, %.0f tokens/s\n", (long long)r.first_step, (long long)r.last_step,
                r.first_loss, r.last_loss, r.tokens_per_s);
  });
}

void register_search(CLI::App& postnas) {
  auto o = std::make_shared<postnas::SearchOptions>();
  CLI::App* cmd = postnas.add_subcommand(
      "search", "beam search for the full-attention layers of a super-network, per objective; importance maps");
  cmd->add_option("--supernet", o->supernet, "super-network dir (`postnas supernet` OUT/supernet)")->required();
  cmd->add_option("--data", o->data, "token dataset dir (heldout split: cloze passages)");
  cmd->add_option("--out", o->out, "output dir: importance.csv/.png, beam.csv, comparison.csv")->required();
  cmd->add_option("--objectives", o->objectives, "TASK@CONTEXT list, one search each")->capture_default_str();
  cmd->add_option("--examples", o->examples, "examples per objective")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--beam", o->beam, "beam width")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--max-k", o->max_k, "search placements of 1..K full-attention layers")->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--swa-k", o->swa_k, "then search up to K SWA layers next to each objective's best full layers (0 = no)")
      ->capture_default_str()->check(CLI::Range(0, 1000));
  cmd->add_option("--swa-window", o->swa_window, "window of those SWA layers in tokens")->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--batch", o->batch, "sequences per forward")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--seed", o->seed, "seed of the examples")->capture_default_str();
  cmd->add_option("--device", o->device, "cpu or cuda")->capture_default_str();
  cmd->callback([o] { postnas::search_placements(*o); });
}

void register_export(CLI::App& postnas) {
  auto o = std::make_shared<postnas::ExportOptions>();
  CLI::App* cmd = postnas.add_subcommand(
      "export", "turn a placement into a Jet-Nemotron model dir (attn where kept, JetBlock elsewhere) + stage-1 distillation");
  cmd->add_option("--teacher", o->teacher, "teacher model dir (full attention)")->required();
  cmd->add_option("--full", o->full, "layers kept as full attention, e.g. 0,1,3,5")->required();
  cmd->add_option("--swa", o->swa, "layers that become sliding-window attention");
  cmd->add_option("--swa-window", o->swa_window, "SWA window in tokens")->capture_default_str();
  cmd->add_option("--data", o->data, "token dataset dir for the distillation")->required();
  cmd->add_option("--out", o->out, "new model dir (must not hold a model)")->required();
  cmd->add_option("--heads", o->sizes.heads, "JetBlock heads (0 = the teacher's attention heads)");
  cmd->add_option("--dk", o->sizes.dk, "JetBlock key dim per head (0 = head_dim)");
  cmd->add_option("--dv", o->sizes.dv, "JetBlock value dim per head (0 = head_dim)");
  cmd->add_option("--device", o->device, "cpu or cuda (bf16 autocast)")->capture_default_str();
  cmd->add_option("--steps", o->steps, "distillation steps (0 = none)")->capture_default_str();
  cmd->add_option("--batch", o->batch, "sequences per step")->capture_default_str();
  cmd->add_option("--seq", o->seq, "tokens per sequence")->capture_default_str();
  cmd->add_option("--lr", o->lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", o->min_lr, "learning rate at the last step")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "warmup steps")->capture_default_str();
  cmd->add_option("--task-mix", o->task_mix, "fraction of rows holding synthetic task examples")->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "weights written: bf16 or f32")->capture_default_str();
  cmd->add_option("--log-every", o->log_every, "progress every N steps")->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed")->capture_default_str();
  cmd->add_option("--threads", o->threads, "CPU threads for torch (0 = its default)");
  cmd->callback([o] {
    const auto r = postnas::export_hybrid(*o);
    std::printf("exported %s: %.2fM JetBlock parameters, stage-1 KL %.4f -> %.4f\n", o->out.c_str(),
                double(r.trainable) / 1e6, r.first_kl, r.last_kl);
  });
}

void register_eval(CLI::App& postnas) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = postnas.add_subcommand("eval", "score a model dir on the synthetic tasks (accuracy, loss on the answer)");
  cmd->add_option("--model", a->model, "model dir (config.json, safetensors, tokenizer.json)")->required();
  cmd->add_option("--data", a->data, "token dataset dir: its heldout split gives cloze passages (needed for cloze)");
  cmd->add_option("--tasks", a->tasks, "TASK@CONTEXT list")->capture_default_str();
  cmd->add_option("--examples", a->examples, "examples per task")->capture_default_str()->check(CLI::Range(1, 1000000));
  cmd->add_option("--batch", a->batch, "sequences per forward")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--seed", a->seed, "seed of the examples")->capture_default_str();
  cmd->add_option("--device", a->device, "cpu or cuda (bf16 autocast)")->capture_default_str();
  cmd->add_option("--csv", a->csv, "also write the table as CSV here");
  cmd->add_option("--threads", a->threads, "CPU threads for torch (0 = its default)");
  cmd->callback([a] {
    postnas::check_device(a->device);
    if (a->threads > 0) torch::set_num_threads(a->threads);
    const auto specs = postnas::parse_task_specs(a->tasks, 256, "--tasks");
    std::unique_ptr<data::TokenDataset> heldout;
    if (!a->data.empty()) heldout = std::make_unique<data::TokenDataset>(data::TokenDataset::open(a->data, "heldout"));
    for (const auto& s : specs)
      if (s.kind == data::TaskKind::Cloze && !heldout)
        throw_error("--tasks", "cloze needs --data (its passages come from the heldout split)");
    const auto tokenizer = Tokenizer::load(a->model);
    const torch::Device device(a->device == "cuda" ? torch::kCUDA : torch::kCPU);
    postnas::HybridModel model = postnas::load_model(a->model);
    model->to(device);
    model->eval();
    const auto results = postnas::evaluate_tasks(specs, *tokenizer, postnas::make_scorer(*model, device, a->device == "cuda"),
                                                 a->examples, a->seed, heldout.get(), a->batch);
    std::string csv = "task,context,accuracy,loss,examples\n";
    std::printf("%-14s %8s %9s %9s %9s\n", "task", "context", "accuracy", "loss", "examples");
    for (const auto& r : results) {
      std::printf("%-14s %8lld %9.3f %9.4f %9lld\n", data::task_name(r.spec.kind).c_str(), (long long)r.spec.context_tokens,
                  r.metrics.accuracy, r.metrics.loss, (long long)r.metrics.examples);
      csv += data::task_name(r.spec.kind) + "," + std::to_string(r.spec.context_tokens) + "," +
             std::to_string(r.metrics.accuracy) + "," + std::to_string(r.metrics.loss) + "," +
             std::to_string(r.metrics.examples) + "\n";
    }
    if (!a->csv.empty()) postnas::write_file_atomic(a->csv, csv);
  });
}

#endif

void register_postnas(CLI::App& app) {
  CLI::App* postnas = app.add_subcommand("postnas", "PostNAS: train and search hybrid models (libtorch)");
  postnas->require_subcommand(1);
#ifdef JETLM_HAVE_POSTNAS
  register_pretrain(*postnas);
  register_eval(*postnas);
  register_supernet(*postnas);
  register_search(*postnas);
  register_export(*postnas);
#else
  // Without libtorch, every postnas subcommand explains itself instead of being unknown.
  postnas->allow_extras();
  postnas->require_subcommand(0);
  postnas->callback([] {
    throw_error("postnas", "this jetlm was built without libtorch (JETLM_TORCH): run scripts/install_torch.sh "
                           "and reconfigure (docs/postnas.md)");
  });
#endif
}

}  // namespace

static const CommandRegistrar registrar(register_postnas);

}  // namespace jetlm::cli
