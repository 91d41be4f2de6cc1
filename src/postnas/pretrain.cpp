#include "postnas/pretrain.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <future>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "io/mapped_file.h"
#include "jetlm/tokenizer.h"
#include "postnas/checkpoint.h"
#include "postnas/distributed.h"
#include "postnas/model.h"
#include "postnas/scoring.h"

#ifdef JETLM_HAVE_DATA
#include "data/token_dataset.h"
#endif

namespace jetlm::postnas {

double lr_at(int64_t step, int64_t steps, double lr, double min_lr, double warmup) {
  if (warmup > 0 && double(step) < warmup) return lr * double(step + 1) / warmup;
  const double span = std::max(1.0, double(steps - 1) - warmup);
  const double progress = std::clamp((double(step) - warmup) / span, 0.0, 1.0);
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

#ifndef JETLM_HAVE_DATA

PretrainResult pretrain(const PretrainOptions&) {
  throw_error("postnas pretrain", "this build has no token dataset support (src/data was not built)");
}

#else

namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// bf16 autocast on CUDA for the forward pass (matmuls in bf16, norms/recurrences in fp32).
class AutocastBf16 {
 public:
  explicit AutocastBf16(bool on) : on_(on) {
    if (!on_) return;
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::increment_nesting();
  }
  ~AutocastBf16() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCUDA, false);
  }

 private:
  bool on_;
};



// The held-out windows: n windows of T+1 tokens evenly spread over the split (fixed for a run).
std::vector<torch::Tensor> eval_batches(const data::TokenDataset& ds, int64_t n_batches, int64_t B, int64_t T) {
  const int64_t n = n_batches * B, last = ds.size() - (T + 1);
  std::vector<int32_t> buf(static_cast<size_t>(n * (T + 1)));
  for (int64_t i = 0; i < n; ++i) ds.read(n > 1 ? i * last / (n - 1) : 0, T + 1, buf.data() + i * (T + 1));
  const torch::Tensor all = torch::from_blob(buf.data(), {n, T + 1}, torch::kInt).to(torch::kLong);
  std::vector<torch::Tensor> out;
  for (int64_t b = 0; b < n_batches; ++b) out.push_back(all.narrow(0, b * B, B));
  return out;
}

torch::Tensor next_token_loss(HybridModelImpl& model, const torch::Tensor& tokens, bool autocast) {
  const int64_t T = tokens.size(1) - 1;
  torch::Tensor logits;
  {
    AutocastBf16 guard(autocast);
    logits = model.forward(tokens.narrow(1, 0, T));
  }
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}).to(torch::kFloat),
                                             tokens.narrow(1, 1, T).reshape(-1));
}

// The CSV rows up to `step` of an earlier run (a resumed run rewrites what came after).
std::string csv_rows_up_to(const std::string& path, int64_t step) {
  std::ifstream in(path);
  std::string line, kept;
  bool header = true;
  while (std::getline(in, line)) {
    if (header) {
      header = false;
      continue;
    }
    if (line.empty()) continue;
    if (std::stoll(line.substr(0, line.find(','))) <= step) kept += line + "\n";
  }
  return kept;
}

constexpr const char* kCsvHeader = "step,lr,train_loss,eval_loss,eval_ppl,tokens_per_s,grad_norm";

void append_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::app);
  out << text;
  if (!out) throw_error(path, "cannot append (disk full or no permission?)");
}

// Writes the checkpoint to OUT/checkpoint.tmp, then swaps it in with renames; a crash at any point
// leaves OUT/checkpoint or OUT/checkpoint.old complete.
void write_checkpoint(HybridModelImpl& model, const ModelSpec& spec, torch::optim::Optimizer& optimizer,
                      const ojson& state, const fs::path& out) {
  const fs::path tmp = out / "checkpoint.tmp", ckpt = out / "checkpoint", old = out / "checkpoint.old";
  fs::remove_all(tmp);
  save_model(model, spec, tmp.string(), DType::F32, /*overwrite=*/true);
  torch::save(optimizer, (tmp / "optimizer.pt").string());
  write_file_atomic((tmp / "trainer_state.json").string(), state.dump(2) + "\n");
  fs::remove_all(old);
  if (fs::exists(ckpt)) fs::rename(ckpt, old);
  fs::rename(tmp, ckpt);
  fs::remove_all(old);
}

void plot(const fs::path& csv, const fs::path& png, const std::function<void(const std::string&)>& log) {
  const char* env = std::getenv("JETLM_SOURCE_DIR");
  const fs::path script = fs::path(env && *env ? env : JETLM_POSTNAS_SOURCE_ROOT) / "src/postnas/plot_loss.py";
  const std::string cmd = "python3 '" + script.string() + "' '" + csv.string() + "' '" + png.string() + "' 2>&1";
  if (!fs::exists(script) || std::system(cmd.c_str()) != 0)
    log("loss plot skipped (needs python3 with matplotlib and " + script.string() + ")");
}

}  // namespace

TrainBatches::TrainBatches(const data::TokenDataset& train, const Tokenizer* tokenizer,
                           std::vector<data::TaskKind> kinds, double task_mix, int64_t seq, uint64_t seed)
    : train_(train), tokenizer_(tokenizer), kinds_(std::move(kinds)), mix_(task_mix), T_(seq), seed_(seed) {
  JETLM_ASSERT(mix_ <= 0 || kinds_.empty() || tokenizer_, "task rows need a tokenizer");
  JETLM_ASSERT(train_.size() >= T_ + 1);
}

torch::Tensor TrainBatches::make(int64_t step, int64_t row0, int64_t rows) const {
  std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + uint64_t(step) * 0xBF58476D1CE4E5B9ull + 1);
  const uint64_t starts = uint64_t(train_.size() - (T_ + 1)) + 1;
  std::vector<int32_t> buf(static_cast<size_t>(rows * (T_ + 1)));
  for (int64_t b = 0; b < row0 + rows; ++b) {
    const int64_t offset = int64_t(rng() % starts);  // drawn for every row: offsets do not depend on the mix
    if (b < row0) continue;
    int32_t* out = buf.data() + (b - row0) * (T_ + 1);
    if (!fill_task_row(step, b, out)) train_.read(offset, T_ + 1, out);
  }
  return torch::from_blob(buf.data(), {rows, T_ + 1}, torch::kInt).to(torch::kLong);
}

bool TrainBatches::fill_task_row(int64_t step, int64_t row, int32_t* out) const {
  if (mix_ <= 0 || kinds_.empty()) return false;
  std::mt19937_64 rng(seed_ * 0xD1B54A32D192ED03ull + uint64_t(step) * 0x94D049BB133111EBull +
                      uint64_t(row) * 0x2545F4914F6CDD1Dull);
  if (double(rng() >> 11) * 0x1.0p-53 >= mix_) return false;
  const int64_t hi = std::max<int64_t>(16, T_ - 24), lo = std::min<int64_t>(64, hi);
  std::vector<int32_t> row_tokens;
  while (int64_t(row_tokens.size()) < T_ + 1) {
    const TaskSpec spec{kinds_[rng() % kinds_.size()], lo + int64_t(rng() % uint64_t(hi - lo + 1))};
    const auto ex = data::make_examples(spec.kind, *tokenizer_, task_params(spec), 1, rng(), &train_).at(0);
    row_tokens.insert(row_tokens.end(), ex.prompt.begin(), ex.prompt.end());
    row_tokens.insert(row_tokens.end(), ex.answer.begin(), ex.answer.end());
    row_tokens.push_back(train_.eos_id());
  }
  std::copy(row_tokens.begin(), row_tokens.begin() + (T_ + 1), out);
  return true;
}

PretrainResult pretrain(const PretrainOptions& o) {
  const DistEnv dist = dist_env_from_environment();
  const bool lead = dist.rank == 0;  // rank 0 logs, evaluates and writes every file
  std::function<void(const std::string&)> log = o.log;
  if (!log) log = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
  if (!lead) log = [](const std::string&) {};
  const std::string where = "postnas pretrain";
  if (o.out.empty()) throw_error(where, "--out is required");
  if (o.steps < 1 || o.batch < 1 || o.seq < 1) throw_error(where, "--steps, --batch and --seq must be >= 1");
  if (!(o.lr > 0) || o.min_lr < 0 || o.min_lr > o.lr || o.warmup < 0)
    throw_error(where, "expected lr > 0, 0 <= min_lr <= lr, warmup >= 0");
  if (!(o.task_mix >= 0 && o.task_mix <= 1)) throw_error("--task-mix", "expected a fraction in [0, 1]");
  if (o.device != "cpu" && o.device != "cuda") throw_error("--device", "expected cpu or cuda, got '" + o.device + "'");
  if (o.device == "cuda" && !torch::cuda::is_available())
    throw_error("--device cuda", "no CUDA device visible to libtorch (or this libtorch is CPU-only: see docs/postnas.md)");
  if (o.device == "cuda" && dist.local_rank >= int(torch::cuda::device_count()))
    throw_error("JETLM_LOCAL_RANK", "GPU " + std::to_string(dist.local_rank) + " requested, " +
                                        std::to_string(torch::cuda::device_count()) + " visible");
  if (o.batch % dist.world != 0)
    throw_error("--batch", std::to_string(o.batch) + " rows cannot be split evenly over " + std::to_string(dist.world) +
                               " processes");
  if (o.final_dtype != "bf16" && o.final_dtype != "f32") throw_error("--final-dtype", "expected bf16 or f32");
  if (o.threads > 0) torch::set_num_threads(o.threads);
  const torch::Device device = o.device == "cuda" ? torch::Device(torch::kCUDA, int8_t(dist.local_rank)) : torch::Device(torch::kCPU);
  const bool autocast = o.device == "cuda";

  const auto train = data::TokenDataset::open(o.data, "train");
  const auto heldout = data::TokenDataset::open(o.data, "heldout");
  for (const auto* ds : {&train, &heldout})
    if (ds->size() < o.seq + 1)
      throw_error(o.data, "split '" + ds->split() + "' has " + std::to_string(ds->size()) + " tokens, fewer than --seq + 1 = " +
                              std::to_string(o.seq + 1));

  // Synthetic tasks need the dataset's tokenizer (to build examples in its ids).
  std::vector<data::TaskKind> mix_kinds;
  std::vector<TaskSpec> eval_specs;
  if (o.task_mix > 0)
    for (const TaskSpec& s : parse_task_specs(o.tasks, o.seq, "--tasks")) {
      if (s.kind == data::TaskKind::Cloze)
        throw_error("--tasks", "cloze has no training text (it is a held-out evaluation); mix kv-retrieval, passkey, arithmetic");
      mix_kinds.push_back(s.kind);
    }
  if (!o.task_eval.empty()) eval_specs = parse_task_specs(o.task_eval, std::min<int64_t>(o.seq, 256), "--task-eval");
  std::unique_ptr<Tokenizer> tokenizer;
  if (!mix_kinds.empty() || !eval_specs.empty()) {
    if (train.tokenizer_dir().empty() || !fs::is_directory(train.tokenizer_dir()))
      throw_error(o.data + "/index.json", "synthetic tasks need the dataset's tokenizer, and its \"tokenizer\" dir '" +
                                              train.tokenizer_dir() + "' does not exist here");
    tokenizer = Tokenizer::load(train.tokenizer_dir());
  }

  const fs::path out(o.out);
  if (lead) fs::create_directories(out);
  fs::path resume_dir;
  if (o.resume) {
    if (fs::exists(out / "checkpoint" / "trainer_state.json")) resume_dir = out / "checkpoint";
    else if (fs::exists(out / "checkpoint.old" / "trainer_state.json")) resume_dir = out / "checkpoint.old";
  }

  // The architecture: the checkpoint's when resuming, else --config with --set.
  const ModelSpec spec = resume_dir.empty() ? load_model_spec(o.config, o.overrides) : load_model_spec(resume_dir.string());
  if (spec.config.vocab < train.vocab_size())
    throw_error(where, "vocab_size " + std::to_string(spec.config.vocab) + " of the model is smaller than the dataset's " +
                           std::to_string(train.vocab_size()) + " (set --set vocab_size=" +
                           std::to_string(train.vocab_size()) + ")");
  // Built on the CPU from the seed: every rank starts from the same weights.
  torch::manual_seed(o.seed);
  HybridModel model(spec.config, spec.blocks);
  if (!o.init_from.empty() && resume_dir.empty()) load_weights(*model, o.init_from);
  if (!resume_dir.empty()) load_weights(*model, resume_dir.string());
  model->to(device);

  // AdamW; weight decay on matrices (embeddings included), not on norms, biases and gates.
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : model->named_parameters()) (p.value().dim() >= 2 ? decay : no_decay).push_back(p.value());
  auto options = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(1e-8).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, options(o.weight_decay));
  groups.emplace_back(no_decay, options(0.0));
  torch::optim::AdamW optimizer(std::move(groups), torch::optim::AdamWOptions(o.lr));

  int64_t step = 0, tokens_seen = 0, interval_count = 0;
  double interval_sum = 0;
  const fs::path csv = out / "loss.csv";
  std::string csv_header = kCsvHeader;
  for (const TaskSpec& s : eval_specs) csv_header += "," + s.label() + "_acc," + s.label() + "_loss";
  csv_header += "\n";
  if (!resume_dir.empty()) {
    torch::load(optimizer, (resume_dir / "optimizer.pt").string(), device);
    const ojson state = ojson::parse(read_text_file((resume_dir / "trainer_state.json").string()));
    for (const char* key : {"batch", "seq", "seed"}) {
      const int64_t now = key == std::string("batch") ? o.batch : key == std::string("seq") ? o.seq : int64_t(o.seed);
      if (state.at(key).get<int64_t>() != now)
        throw_error((resume_dir / "trainer_state.json").string(),
                    std::string("the run was started with --") + key + " " + state.at(key).dump() + ", now " +
                        std::to_string(now) + " (resume needs the same value, or a new --out)");
    }
    if (state.value("task_mix", 0.0) != o.task_mix || state.value("tasks", std::string()) != (o.task_mix > 0 ? o.tasks : ""))
      throw_error((resume_dir / "trainer_state.json").string(),
                  "the run was started with another --task-mix/--tasks (resume needs the same data, or a new --out)");
    step = state.at("step").get<int64_t>();
    tokens_seen = state.at("tokens").get<int64_t>();
    interval_sum = state.at("interval_loss_sum").get<double>();
    interval_count = state.at("interval_loss_count").get<int64_t>();
    if (lead) write_file_atomic(csv.string(), csv_header + csv_rows_up_to(csv.string(), step));
    log(where + ": resuming " + resume_dir.string() + " at step " + std::to_string(step));
  } else {
    if (lead) write_file_atomic(csv.string(), csv_header);
    int64_t n_params = 0;
    for (const auto& p : model->parameters()) n_params += p.numel();
    log(where + ": " + spec.config.model_type + ", " + std::to_string(spec.config.n_layers) + " layers, " +
        fmt("%.2f", double(n_params) / 1e6) + "M parameters, " + o.device + ", " + std::to_string(o.steps) +
        " steps of " + std::to_string(o.batch) + " x " + std::to_string(o.seq) + " tokens" +
        (o.task_mix > 0 ? ", " + fmt("%.0f", 100 * o.task_mix) + "% task rows (" + o.tasks + ")" : std::string()));
  }

  std::unique_ptr<Collective> collective;
  if (dist.active()) {
    collective = make_collective(dist, device);
    log(where + ": data-parallel over " + std::to_string(dist.world) + " processes (" + collective->backend() + "), " +
        std::to_string(o.batch / dist.world) + " rows each");
  }

  const std::vector<torch::Tensor> eval_set = eval_batches(heldout, std::max<int64_t>(1, o.eval_batches), o.batch, o.seq);
  auto evaluate = [&]() {
    torch::NoGradGuard no_grad;
    double sum = 0;
    for (const torch::Tensor& b : eval_set) sum += next_token_loss(*model, b.to(device), autocast).item<double>();
    return sum / double(eval_set.size());
  };
  auto state_json = [&]() {
    ojson s;
    s["step"] = step;
    s["tokens"] = tokens_seen;
    s["steps"] = o.steps;
    s["batch"] = o.batch;
    s["seq"] = o.seq;
    s["seed"] = o.seed;
    s["lr"] = o.lr;
    s["min_lr"] = o.min_lr;
    s["warmup"] = o.warmup;
    s["task_mix"] = o.task_mix;
    s["tasks"] = o.task_mix > 0 ? o.tasks : "";
    s["interval_loss_sum"] = interval_sum;
    s["interval_loss_count"] = interval_count;
    return s;
  };

  const TrainBatches batches(train, tokenizer.get(), mix_kinds, o.task_mix, o.seq, o.seed);
  const int64_t rows = o.batch / dist.world, row0 = dist.rank * rows;
  const std::vector<torch::Tensor> params = model->parameters();

  PretrainResult result;
  result.first_step = step;
  result.world = dist.world;
  const int64_t end = o.stop_after > 0 ? std::min(o.steps, o.stop_after) : o.steps;
  auto t_interval = std::chrono::steady_clock::now();
  const auto t_start = t_interval;
  int64_t interval_tokens = 0, run_tokens = 0;
  // The next step's batch is built on another thread while this one trains.
  std::future<torch::Tensor> next;
  if (step < end) next = std::async(std::launch::async, [&batches, step, row0, rows] { return batches.make(step, row0, rows); });
  while (step < end) {
    const double lr = lr_at(step, o.steps, o.lr, o.min_lr, o.warmup);
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    const torch::Tensor tokens = next.get().to(device);
    optimizer.zero_grad();
    torch::Tensor loss = next_token_loss(*model, tokens, autocast);
    if (step == o.poison_step) loss = loss * std::numeric_limits<double>::quiet_NaN();
    loss.backward();
    double loss_value = 0;
    if (collective) {
      // One all-reduce for every gradient and the loss; the mean over ranks is the global batch's.
      std::vector<torch::Tensor> flat_parts;
      for (const torch::Tensor& p : params)
        flat_parts.push_back(p.grad().defined() ? p.grad().reshape(-1) : torch::zeros({p.numel()}, p.options()));
      flat_parts.push_back(loss.detach().to(torch::kFloat).reshape(1));
      torch::Tensor flat = torch::cat(flat_parts);
      collective->all_reduce_sum(flat);
      flat.div_(double(dist.world));
      int64_t off = 0;
      for (const torch::Tensor& p : params) {
        if (p.grad().defined()) p.mutable_grad().copy_(flat.narrow(0, off, p.numel()).view_as(p));
        off += p.numel();
      }
      loss_value = flat[off].item<double>();
    } else {
      loss_value = loss.item<double>();
    }
    const std::string stop_hint = "; the last good checkpoint is " + (out / "checkpoint").string() +
                                  " (resume continues from it; try a lower --lr or a longer --warmup)";
    if (!std::isfinite(loss_value))
      throw_error(where, "step " + std::to_string(step + 1) + ": training loss is " + fmt("%g", loss_value) + stop_hint);
    const double grad_norm = torch::nn::utils::clip_grad_norm_(params, o.clip > 0 ? o.clip : 1e30);
    if (!std::isfinite(grad_norm))
      throw_error(where, "step " + std::to_string(step + 1) + ": gradient norm is " + fmt("%g", grad_norm) + stop_hint);
    optimizer.step();
    ++step;
    if (step < end) next = std::async(std::launch::async, [&batches, step, row0, rows] { return batches.make(step, row0, rows); });
    tokens_seen += o.batch * o.seq;
    interval_tokens += o.batch * o.seq;
    run_tokens += o.batch * o.seq;
    interval_sum += loss_value;
    ++interval_count;
    result.last_train_loss = loss_value;

    const bool last = step == end;
    const bool do_eval = lead && ((o.eval_every > 0 && step % o.eval_every == 0) || step == o.steps);
    const bool do_log = do_eval || last || (o.log_every > 0 && step % o.log_every == 0);
    if (do_log) {
      if (device.is_cuda()) torch::cuda::synchronize();
      const auto now = std::chrono::steady_clock::now();
      const double seconds = std::chrono::duration<double>(now - t_interval).count();
      const double tps = seconds > 0 ? double(interval_tokens) / seconds : 0;
      const double train_loss = interval_sum / double(interval_count);
      std::string eval_text, eval_csv = ",", task_csv;
      if (do_eval) {
        result.last_eval_loss = evaluate();
        eval_text = " | eval " + fmt("%.4f", result.last_eval_loss) + " (ppl " + fmt("%.2f", std::exp(result.last_eval_loss)) + ")";
        eval_csv = fmt("%.6f", result.last_eval_loss) + "," + fmt("%.4f", std::exp(result.last_eval_loss));
        if (!eval_specs.empty()) {
          if (next.valid()) next.wait();  // the batch thread also uses the tokenizer
          const auto results = evaluate_tasks(eval_specs, *tokenizer, make_scorer(*model, device, autocast),
                                              o.task_eval_examples, o.seed + 1000, &heldout);
          result.last_task_accuracy.clear();
          for (const TaskResult& r : results) {
            eval_text += " | " + r.spec.label() + " " + fmt("%.2f", r.metrics.accuracy);
            result.last_task_accuracy.emplace_back(r.spec.label(), r.metrics.accuracy);
          }
          for (const TaskResult& r : results)
            task_csv += "," + fmt("%.4f", r.metrics.accuracy) + "," + fmt("%.4f", r.metrics.loss);
        }
      } else {
        for (size_t i = 0; i < eval_specs.size(); ++i) task_csv += ",,";
      }
      if (lead)
        append_text(csv.string(), std::to_string(step) + "," + fmt("%.6e", lr) + "," + fmt("%.6f", train_loss) + "," +
                                      eval_csv + "," + fmt("%.1f", tps) + "," + fmt("%.4f", grad_norm) + task_csv + "\n");
      log(where + ": step " + std::to_string(step) + "/" + std::to_string(o.steps) + " | lr " + fmt("%.2e", lr) +
          " | loss " + fmt("%.4f", train_loss) + eval_text + " | " + fmt("%.0f", tps) + " tok/s | grad norm " +
          fmt("%.3f", grad_norm));
      interval_sum = 0;
      interval_count = 0;
      interval_tokens = 0;
      t_interval = std::chrono::steady_clock::now();
    }
    if (lead && (last || (o.save_every > 0 && step % o.save_every == 0)))
      write_checkpoint(*model, spec, optimizer, state_json(), out);
  }
  result.last_step = step;
  if (collective) collective->finish();
  const double run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  result.tokens_per_s = run_seconds > 0 ? double(run_tokens) / run_seconds : 0;
  if (lead && step == o.steps) {
    save_model(*model, spec, (out / "final").string(), o.final_dtype == "bf16" ? DType::BF16 : DType::F32, true);
    // The dataset's tokenizer goes with the model, so `jetlm generate --prompt TEXT` works on it.
    if (!train.tokenizer_dir().empty() && fs::is_directory(train.tokenizer_dir()))
      for (const char* name : {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                               "special_tokens_map.json", "chat_template.jinja", "generation_config.json"})
        if (fs::exists(fs::path(train.tokenizer_dir()) / name))
          fs::copy_file(fs::path(train.tokenizer_dir()) / name, out / "final" / name, fs::copy_options::overwrite_existing);
    log(where + ": done, model dir " + (out / "final").string() + " (" + o.final_dtype + ")");
  }
  if (lead && o.plot) plot(csv, out / "loss.png", log);
  return result;
}


#endif  // JETLM_HAVE_DATA

std::string fmt(const char* format, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, x);
  return buf;
}

void check_device(const std::string& device) {
  if (device != "cpu" && device != "cuda") throw_error("--device", "expected cpu or cuda, got '" + device + "'");
  if (device == "cuda" && !torch::cuda::is_available()) throw_error("--device cuda", "no CUDA device visible to libtorch");
}

}  // namespace jetlm::postnas
