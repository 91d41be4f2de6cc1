#include "postnas/supernet.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>

#include "core/error.h"
#include "data/tasks.h"
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

ModelConfig linear_config_for(const ModelConfig& teacher, const LinearBlockSizes& s) {
  ModelConfig c = teacher;
  c.jet.num_heads = s.heads > 0 ? s.heads : teacher.n_heads;
  c.jet.head_k_dim = s.dk > 0 ? s.dk : teacher.head_dim;
  c.jet.head_v_dim = s.dv > 0 ? s.dv : teacher.head_dim;
  c.jet.conv_size = s.conv > 0 ? s.conv : 4;
  c.jet.generator_hidden = std::max(1, c.jet.value_dim() / 8);  // the official dconv_generator_reduction 8
  c.jet.norm_eps = 1e-5f;
  return c;
}

// Writes a dir through DIR.tmp and renames (the old one goes to DIR.old until the swap is done).
void swap_in(const fs::path& tmp, const fs::path& dir) {
  const fs::path old = dir.string() + ".old";
  fs::remove_all(old);
  if (fs::exists(dir)) fs::rename(dir, old);
  fs::rename(tmp, dir);
  fs::remove_all(old);
}

void append_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::app);
  out << text;
  if (!out) throw_error(path, "cannot append (disk full or no permission?)");
}

}  // namespace

SuperNetImpl::SuperNetImpl(const ModelSpec& spec, BlockKind kind, LinearBlockSizes sizes)
    : linear_config_(linear_config_for(spec.config, sizes)), linear_kind_(kind) {
  if (kind == BlockKind::Attn) throw_error("--block", "the linear path cannot be attn (it is the teacher's path)");
  for (BlockKind b : spec.blocks)
    if (b != BlockKind::Attn)
      throw_error("teacher", std::string("the teacher must be all full attention, layer type '") + block_kind_name(b) +
                                 "' found");
  teacher = register_module("teacher", HybridModel(spec.config, spec.blocks));
  linear = register_module("linear", torch::nn::ModuleList());
  for (int i = 0; i < spec.config.n_layers; ++i) linear->push_back(make_mixer(linear_config_, kind));
  reset_parameters_of(*linear);
  for (auto& p : teacher->parameters()) p.requires_grad_(false);
}

std::vector<torch::Tensor> SuperNetImpl::linear_parameters() const { return linear->parameters(); }

torch::Tensor SuperNetImpl::forward_hidden(const torch::Tensor& ids, const std::vector<bool>& full, torch::Tensor* hidden,
                                          const std::vector<bool>* swa, int64_t swa_window) {
  JETLM_ASSERT(ids.dim() == 2, "SuperNet: ids must be [B, T]");
  JETLM_ASSERT(int64_t(full.size()) == n_layers(), "SuperNet: one placement entry per layer");
  JETLM_ASSERT(!swa || (int64_t(swa->size()) == n_layers() && swa_window > 0), "SuperNet: one SWA entry per layer, window > 0");
  auto& dec = *teacher->model;
  torch::Tensor x = dec.embed_tokens(ids);
  for (int64_t i = 0; i < n_layers(); ++i) {
    auto* layer = dec.layers[i]->as<DecoderLayerImpl>();
    const bool windowed = swa && (*swa)[size_t(i)] && !full[size_t(i)];
    MixerImpl* mixer = full[i] || windowed ? layer->self_attn.get() : linear[i]->as<MixerImpl>();
    torch::Tensor mixed;
    if (windowed) {
      // The teacher's attention with a window: set for this call only.
      auto& attn = *layer->self_attn->as<AttentionImpl>();
      const int64_t saved = attn.window;
      attn.window = swa_window;
      try {
        mixed = attn.forward(layer->input_layernorm(x).to(x.scalar_type()));
      } catch (...) {
        attn.window = saved;
        throw;
      }
      attn.window = saved;
    } else {
      mixed = mixer->forward(layer->input_layernorm(x).to(x.scalar_type()));
    }
    const torch::Tensor h = x + mixed.to(x.scalar_type());
    x = h + layer->mlp(layer->post_attention_layernorm(h).to(x.scalar_type())).to(x.scalar_type());
  }
  const torch::Tensor normed = dec.norm(x);
  if (hidden) *hidden = normed;
  const torch::Tensor& head = teacher->head_weight();
  return at_least_f32(torch::matmul(normed.to(head.scalar_type()), head.t()));
}

torch::Tensor SuperNetImpl::forward(const torch::Tensor& ids, const std::vector<bool>& full) {
  return forward_hidden(ids, full, nullptr);
}

void init_mixer_from_attention(MixerImpl& mixer, AttentionImpl& attn, const ModelConfig& c) {
  torch::NoGradGuard no_grad;
  const int64_t group = c.n_heads / c.n_kv_heads, hd = c.head_dim, D = c.hidden;
  // KV heads repeated over their query groups: [Hkv*hd, D] -> [Hq*hd, D].
  auto repeat_kv = [&](const torch::Tensor& w) {
    return w.view({c.n_kv_heads, hd, D}).repeat_interleave(group, 0).reshape({c.n_heads * hd, D});
  };
  const torch::Tensor q = attn.q_proj->weight, k = repeat_kv(attn.k_proj->weight), v = repeat_kv(attn.v_proj->weight),
                      o = attn.o_proj->weight;
  for (auto& item : mixer.named_parameters()) {
    torch::Tensor& p = item.value();
    const std::string& name = item.key();
    // The first p.size(0) / hd heads of q/k/v (rows), of o (columns), when the head size is hd.
    if ((name == "q_proj.weight" || name == "k_proj.weight" || name == "v_proj.weight") && p.dim() == 2 &&
        p.size(1) == D && p.size(0) % hd == 0 && p.size(0) <= c.n_heads * hd)
      p.copy_((name[0] == 'q' ? q : name[0] == 'k' ? k : v).narrow(0, 0, p.size(0)));
    else if (name == "o_proj.weight" && p.dim() == 2 && p.size(0) == D && p.size(1) % hd == 0 && p.size(1) <= c.n_heads * hd)
      p.copy_(o.narrow(1, 0, p.size(1)));
  }
}

void SuperNetImpl::init_linear_from_attention() {
  for (int64_t i = 0; i < n_layers(); ++i) {
    auto* attn = dynamic_cast<AttentionImpl*>(teacher->model->layers[i]->as<DecoderLayerImpl>()->self_attn.get());
    JETLM_ASSERT(attn != nullptr);
    init_mixer_from_attention(*linear[i]->as<MixerImpl>(), *attn, teacher->config());
  }
}

void save_supernet(SuperNetImpl& net, const std::string& teacher_dir, const std::string& dir, const ojson& extra) {
  const fs::path tmp = dir + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  torch::save(net.linear, (tmp / "linear.pt").string());
  ojson meta;
  meta["format"] = "jetlm-supernet-v1";
  meta["teacher"] = fs::absolute(teacher_dir).string();
  meta["block"] = block_kind_name(net.linear_kind());
  const JetConfig& j = net.linear_config().jet;
  meta["sizes"] = {{"heads", j.num_heads}, {"dk", j.head_k_dim}, {"dv", j.head_v_dim}, {"conv", j.conv_size}};
  for (auto it = extra.begin(); it != extra.end(); ++it) meta[it.key()] = it.value();
  write_file_atomic((tmp / "supernet.json").string(), meta.dump(2) + "\n");
  swap_in(tmp, dir);
}

SuperNet load_supernet(const std::string& dir, ojson* meta_out) {
  const std::string json_path = dir + "/supernet.json";
  if (!fs::exists(json_path)) throw_error(dir, "not a super-network dir (no supernet.json)");
  const ojson meta = ojson::parse(read_text_file(json_path));
  if (meta.value("format", "") != "jetlm-supernet-v1") throw_error(json_path, "expected format jetlm-supernet-v1");
  const std::string teacher_dir = meta.at("teacher").get<std::string>();
  const ModelSpec spec = load_model_spec(teacher_dir);
  LinearBlockSizes sizes;
  sizes.heads = meta.at("sizes").at("heads").get<int>();
  sizes.dk = meta.at("sizes").at("dk").get<int>();
  sizes.dv = meta.at("sizes").at("dv").get<int>();
  sizes.conv = meta.at("sizes").at("conv").get<int>();
  SuperNet net(spec, parse_block_kind(meta.at("block").get<std::string>(), json_path), sizes);
  load_weights(*net->teacher, teacher_dir);
  torch::load(net->linear, dir + "/linear.pt");
  if (meta_out) *meta_out = meta;
  return net;
}

std::vector<bool> parse_placement(const std::string& text, int64_t n, const std::string& where) {
  std::vector<bool> full(size_t(n), false);
  if (text.empty() || text == "-") return full;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    pos = comma + 1;
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 0 || v >= n)
      throw_error(where, "'" + item + "' is not a layer index in 0.." + std::to_string(n - 1));
    full[size_t(v)] = true;
  }
  return full;
}

std::string placement_string(const std::vector<bool>& full) {
  std::string s;
  for (size_t i = 0; i < full.size(); ++i)
    if (full[i]) s += (s.empty() ? "" : ",") + std::to_string(i);
  return s.empty() ? "-" : s;
}

std::vector<bool> uniform_placement(int64_t n, int64_t k) {
  std::vector<bool> full(size_t(n), false);
  for (int64_t j = 0; j < k; ++j) full[size_t(std::min<int64_t>(n - 1, int64_t((double(j) + 0.5) * double(n) / double(k))))] = true;
  return full;
}

SuperNetResult train_supernet(const SuperNetOptions& o) {
  std::function<void(const std::string&)> log = o.log;
  if (!log) log = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
  const std::string where = "postnas supernet";
  if (o.out.empty() || o.teacher.empty() || o.data.empty()) throw_error(where, "--teacher, --data and --out are required");
  if (o.steps < 1 || o.batch < 1 || o.seq < 2) throw_error(where, "--steps, --batch >= 1 and --seq >= 2 expected");
  check_device(o.device);
  if (o.threads > 0) torch::set_num_threads(o.threads);
  const torch::Device device(o.device == "cuda" ? torch::kCUDA : torch::kCPU);
  const bool autocast = device.is_cuda();
  const BlockKind kind = parse_block_kind(o.block, "--block");

  const auto train = data::TokenDataset::open(o.data, "train");
  if (train.size() < o.seq + 1) throw_error(o.data, "the train split is shorter than --seq + 1");
  std::vector<data::TaskKind> mix_kinds;
  std::unique_ptr<Tokenizer> tokenizer;
  if (o.task_mix > 0) {
    for (const TaskSpec& s : parse_task_specs(o.tasks, o.seq, "--tasks")) mix_kinds.push_back(s.kind);
    if (train.tokenizer_dir().empty() || !fs::is_directory(train.tokenizer_dir()))
      throw_error(o.data + "/index.json", "task rows need the dataset's tokenizer dir '" + train.tokenizer_dir() + "'");
    tokenizer = Tokenizer::load(train.tokenizer_dir());
  }

  const fs::path out(o.out);
  fs::create_directories(out);
  const fs::path ckpt = out / "checkpoint";
  const bool resuming = o.resume && fs::exists(ckpt / "supernet.json");
  torch::manual_seed(o.seed);
  SuperNet net{nullptr};
  ojson meta;
  if (resuming) {
    net = load_supernet(ckpt.string(), &meta);
  } else {
    const ModelSpec spec = load_model_spec(o.teacher);
    net = SuperNet(spec, kind, o.sizes);
    load_weights(*net->teacher, o.teacher);
    net->init_linear_from_attention();
  }
  net->to(device);
  const int64_t L = net->n_layers();
  const int64_t max_full = o.max_full < 0 ? L / 2 : std::min(o.max_full, L);

  torch::optim::AdamW optimizer(net->linear_parameters(),
                                torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(o.weight_decay));
  int64_t step = 0;
  const std::string csv = (out / "supernet_loss.csv").string();
  if (resuming) {
    torch::load(optimizer, (ckpt / "optimizer.pt").string(), device);
    step = meta.at("step").get<int64_t>();
    log(where + ": resuming " + ckpt.string() + " at step " + std::to_string(step));
  } else {
    write_file_atomic(csv, "step,lr,kl,hidden_mse,full_layers,tokens_per_s\n");
    int64_t n_train = 0;
    for (const auto& p : net->linear_parameters()) n_train += p.numel();
    log(where + ": teacher " + o.teacher + " (" + std::to_string(L) + " layers), " + o.block + " path per layer (" +
        fmt("%.2f", double(n_train) / 1e6) + "M trainable), sub-networks keep 0.." + std::to_string(max_full) +
        " layers full, " + std::to_string(o.steps) + " steps of " + std::to_string(o.batch) + " x " + std::to_string(o.seq));
  }

  const TrainBatches batches(train, tokenizer.get(), mix_kinds, o.task_mix, o.seq, o.seed);
  auto save = [&](const fs::path& dir) {
    ojson extra;
    extra["step"] = step;
    extra["steps"] = o.steps;
    extra["seed"] = o.seed;
    save_supernet(*net, o.teacher, dir.string(), extra);
    if (dir == ckpt) torch::save(optimizer, (ckpt / "optimizer.pt").string());
  };

  SuperNetResult result;
  result.first_step = step;
  auto t0 = std::chrono::steady_clock::now();
  int64_t interval_tokens = 0;
  double kl_sum = 0, mse_sum = 0, full_sum = 0;
  int64_t interval_n = 0;
  const int64_t end = o.stop_after > 0 ? std::min(o.steps, o.stop_after) : o.steps;
  while (step < end) {
    const double lr = lr_at(step, o.steps, o.lr, o.min_lr, o.warmup);
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    // The sub-network of this step: k ~ U{0..max_full} layers full, chosen uniformly.
    std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + uint64_t(step) * 0x632BE59BD9B4E019ull + 7);
    const int64_t k = int64_t(rng() % uint64_t(max_full + 1));
    std::vector<int64_t> order(static_cast<size_t>(L));
    for (int64_t i = 0; i < L; ++i) order[size_t(i)] = i;
    for (int64_t i = L - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(rng() % uint64_t(i + 1))]);
    std::vector<bool> full(size_t(L), false);
    for (int64_t j = 0; j < k; ++j) full[size_t(order[size_t(j)])] = true;

    const torch::Tensor tokens = batches.make(step, 0, o.batch).to(device);
    const torch::Tensor ids = tokens.narrow(1, 0, o.seq);
    torch::Tensor teacher_logp, teacher_hidden;
    {
      torch::NoGradGuard no_grad;
      AutocastBf16Cuda guard(autocast);
      teacher_logp = torch::log_softmax(net->forward_hidden(ids, std::vector<bool>(size_t(L), true), &teacher_hidden), -1);
    }
    torch::Tensor student_hidden, student_logits;
    {
      AutocastBf16Cuda guard(autocast);
      student_logits = net->forward_hidden(ids, full, &student_hidden);
    }
    const torch::Tensor student_logp = torch::log_softmax(student_logits, -1);
    // KL(teacher || student), mean over tokens.
    const torch::Tensor kl = (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1).mean();
    torch::Tensor loss = kl;
    torch::Tensor mse = torch::zeros({}, kl.options());
    if (o.hidden_mse > 0) {
      mse = (student_hidden.to(torch::kFloat) - teacher_hidden.to(torch::kFloat)).pow(2).mean();
      loss = loss + o.hidden_mse * mse;
    }
    optimizer.zero_grad();
    const double kl_value = kl.item<double>();
    if (!std::isfinite(kl_value))
      throw_error(where, "step " + std::to_string(step + 1) + ": distillation loss is " + fmt("%g", kl_value) +
                             " (the last checkpoint is " + ckpt.string() + ")");
    loss.backward();
    torch::nn::utils::clip_grad_norm_(net->linear_parameters(), o.clip > 0 ? o.clip : 1e30);
    optimizer.step();
    ++step;
    if (result.first_loss == 0) result.first_loss = kl_value;
    result.last_loss = kl_value;
    kl_sum += kl_value;
    mse_sum += mse.item<double>();
    full_sum += double(k);
    ++interval_n;
    interval_tokens += o.batch * o.seq;
    if (step % std::max<int64_t>(1, o.log_every) == 0 || step == o.steps) {
      if (device.is_cuda()) torch::cuda::synchronize();
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double tps = sec > 0 ? double(interval_tokens) / sec : 0;
      append_text(csv, std::to_string(step) + "," + fmt("%.6e", lr) + "," + fmt("%.6f", kl_sum / double(interval_n)) + "," +
                           fmt("%.6f", mse_sum / double(interval_n)) + "," + fmt("%.2f", full_sum / double(interval_n)) +
                           "," + fmt("%.1f", tps) + "\n");
      log(where + ": step " + std::to_string(step) + "/" + std::to_string(o.steps) + " | lr " + fmt("%.2e", lr) + " | KL " +
          fmt("%.4f", kl_sum / double(interval_n)) + " | mean full layers " + fmt("%.1f", full_sum / double(interval_n)) +
          " | " + fmt("%.0f", tps) + " tok/s");
      result.tokens_per_s = tps;
      kl_sum = mse_sum = full_sum = 0;
      interval_n = 0;
      interval_tokens = 0;
      t0 = std::chrono::steady_clock::now();
    }
    if (step == end || (o.save_every > 0 && step % o.save_every == 0)) save(ckpt);
  }
  result.last_step = step;
  if (step == o.steps) {
    save(out / "supernet");
    log(where + ": done, super-network " + (out / "supernet").string());
  }
  return result;
}

void search_placements(const SearchOptions& o) {
  std::function<void(const std::string&)> log = o.log;
  if (!log) log = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
  check_device(o.device);
  if (o.beam < 1 || o.max_k < 1 || o.examples < 1) throw_error("postnas search", "--beam, --max-k and --examples must be >= 1");
  if (o.swa_k < 0 || o.swa_window < 1) throw_error("postnas search", "--swa-k must be >= 0 and --swa-window >= 1");
  const torch::Device device(o.device == "cuda" ? torch::kCUDA : torch::kCPU);
  ojson meta;
  SuperNet net = load_supernet(o.supernet, &meta);
  net->to(device);
  net->eval();
  const int64_t L = net->n_layers();
  const auto specs = parse_task_specs(o.objectives, 256, "--objectives");
  std::unique_ptr<data::TokenDataset> heldout;
  if (!o.data.empty()) heldout = std::make_unique<data::TokenDataset>(data::TokenDataset::open(o.data, "heldout"));
  for (const auto& s : specs)
    if (s.kind == data::TaskKind::Cloze && !heldout) throw_error("--objectives", "cloze needs --data (heldout passages)");
  const auto tokenizer = Tokenizer::load(meta.at("teacher").get<std::string>());
  fs::create_directories(o.out);

  std::string importance_csv = "task,layer,score,accuracy,loss,attribution\n";
  std::string beam_csv = "task,k,rank,layers,score,accuracy,loss\n";
  std::string swa_csv = "task,full_layers,swa_window,swa_k,rank,swa_layers,score,accuracy,loss\n";
  std::string comparison_csv =
      "task,k,searched_layers,searched_score,uniform_layers,uniform_score,attribution_layers,attribution_score,"
      "none_score,teacher_score\n";
  for (const TaskSpec& spec : specs) {
    const auto examples = data::make_examples(spec.kind, *tokenizer, task_params(spec), o.examples, o.seed, heldout.get());
    // Higher is better: accuracy (loss breaks ties) for the generation tasks, minus the loss on the
    // answer for cloze (the MMLU-like objective).
    std::map<std::vector<bool>, std::pair<double, data::TaskMetrics>> cache;
    auto score = [&](const std::vector<bool>& full) {
      auto it = cache.find(full);
      if (it != cache.end()) return it->second;
      const data::Scorer scorer = make_scorer([&](const torch::Tensor& ids) { return net->forward(ids, full); }, device,
                                              device.is_cuda());
      const data::TaskMetrics m = data::evaluate(spec.kind, examples, scorer, o.batch);
      const double s = spec.kind == data::TaskKind::Cloze ? -m.loss : m.accuracy - 1e-3 * m.loss;
      return cache[full] = {s, m};
    };
    // The cheap alternative: the teacher's attention attribution per layer; its top-k layers are
    // scored in the super-network next to the searched and the uniform placements.
    const std::vector<double> attribution =
        attention_attribution_importance(*net->teacher, spec.kind, examples, device, std::min<int64_t>(o.batch, 8));
    std::vector<int64_t> by_attribution(static_cast<size_t>(L));
    for (int64_t i = 0; i < L; ++i) by_attribution[size_t(i)] = i;
    std::stable_sort(by_attribution.begin(), by_attribution.end(),
                     [&](int64_t a, int64_t b) { return attribution[size_t(a)] > attribution[size_t(b)]; });
    const std::vector<bool> none(size_t(L), false), all(size_t(L), true);
    const double teacher_score = score(all).first, none_score = score(none).first;
    log("postnas search: " + spec.label() + ": teacher " + fmt("%.4f", teacher_score) + ", all linear " + fmt("%.4f", none_score));
    for (int64_t i = 0; i < L; ++i) {
      std::vector<bool> one(size_t(L), false);
      one[size_t(i)] = true;
      const auto [s, m] = score(one);
      importance_csv += spec.label() + "," + std::to_string(i) + "," + fmt("%.6f", s) + "," + fmt("%.6f", m.accuracy) + "," +
                        fmt("%.6f", m.loss) + "," + fmt("%.6g", attribution[size_t(i)]) + "\n";
    }
    std::vector<std::vector<bool>> beam = {none};
    for (int64_t k = 1; k <= std::min(o.max_k, L); ++k) {
      std::set<std::vector<bool>> candidates;
      for (const auto& b : beam)
        for (int64_t i = 0; i < L; ++i)
          if (!b[size_t(i)]) {
            auto c = b;
            c[size_t(i)] = true;
            candidates.insert(c);
          }
      std::vector<std::pair<double, std::vector<bool>>> ranked;
      for (const auto& c : candidates) ranked.emplace_back(score(c).first, c);
      std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      beam.clear();
      for (int64_t r = 0; r < std::min<int64_t>(o.beam, int64_t(ranked.size())); ++r) {
        beam.push_back(ranked[size_t(r)].second);
        const auto& m = score(ranked[size_t(r)].second).second;
        beam_csv += spec.label() + "," + std::to_string(k) + "," + std::to_string(r + 1) + ",\"" +
                    placement_string(ranked[size_t(r)].second) + "\"," + fmt("%.6f", ranked[size_t(r)].first) + "," +
                    fmt("%.6f", m.accuracy) + "," + fmt("%.6f", m.loss) + "\n";
      }
      const auto uni = uniform_placement(L, k);
      std::vector<bool> cheap(size_t(L), false);
      for (int64_t j = 0; j < k; ++j) cheap[size_t(by_attribution[size_t(j)])] = true;
      comparison_csv += spec.label() + "," + std::to_string(k) + ",\"" + placement_string(beam[0]) + "\"," +
                        fmt("%.6f", score(beam[0]).first) + ",\"" + placement_string(uni) + "\"," +
                        fmt("%.6f", score(uni).first) + ",\"" + placement_string(cheap) + "\"," +
                        fmt("%.6f", score(cheap).first) + "," + fmt("%.6f", none_score) + "," +
                        fmt("%.6f", teacher_score) + "\n";
      log("postnas search: " + spec.label() + " k=" + std::to_string(k) + ": best {" + placement_string(beam[0]) + "} " +
          fmt("%.4f", score(beam[0]).first) + ", uniform {" + placement_string(uni) + "} " + fmt("%.4f", score(uni).first) +
          ", attribution {" + placement_string(cheap) + "} " + fmt("%.4f", score(cheap).first));
    }
    if (o.swa_k > 0) {
      // SWA layers next to this objective's best full-attention placement at max_k.
      const std::vector<bool> base = beam[0];
      std::map<std::vector<bool>, std::pair<double, data::TaskMetrics>> swa_cache;
      auto swa_score = [&](const std::vector<bool>& swa) {
        auto it = swa_cache.find(swa);
        if (it != swa_cache.end()) return it->second;
        const data::Scorer scorer = make_scorer(
            [&](const torch::Tensor& ids) { return net->forward_hidden(ids, base, nullptr, &swa, o.swa_window); }, device,
            device.is_cuda());
        const data::TaskMetrics m = data::evaluate(spec.kind, examples, scorer, o.batch);
        const double s = spec.kind == data::TaskKind::Cloze ? -m.loss : m.accuracy - 1e-3 * m.loss;
        return swa_cache[swa] = {s, m};
      };
      const std::vector<bool> no_swa(size_t(L), false);
      {
        const auto& m = swa_score(no_swa).second;
        swa_csv += spec.label() + ",\"" + placement_string(base) + "\"," + std::to_string(o.swa_window) + ",0,1,\"-\"," +
                   fmt("%.6f", swa_score(no_swa).first) + "," + fmt("%.6f", m.accuracy) + "," + fmt("%.6f", m.loss) + "\n";
      }
      std::vector<std::vector<bool>> swa_beam = {no_swa};
      for (int64_t k = 1; k <= o.swa_k; ++k) {
        std::set<std::vector<bool>> candidates;
        for (const auto& b : swa_beam)
          for (int64_t i = 0; i < L; ++i)
            if (!b[size_t(i)] && !base[size_t(i)]) {
              auto c = b;
              c[size_t(i)] = true;
              candidates.insert(c);
            }
        if (candidates.empty()) break;
        std::vector<std::pair<double, std::vector<bool>>> ranked;
        for (const auto& c : candidates) ranked.emplace_back(swa_score(c).first, c);
        std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
        swa_beam.clear();
        for (int64_t r = 0; r < std::min<int64_t>(o.beam, int64_t(ranked.size())); ++r) {
          swa_beam.push_back(ranked[size_t(r)].second);
          const auto& m = swa_score(ranked[size_t(r)].second).second;
          swa_csv += spec.label() + ",\"" + placement_string(base) + "\"," + std::to_string(o.swa_window) + "," +
                     std::to_string(k) + "," + std::to_string(r + 1) + ",\"" + placement_string(ranked[size_t(r)].second) +
                     "\"," + fmt("%.6f", ranked[size_t(r)].first) + "," + fmt("%.6f", m.accuracy) + "," +
                     fmt("%.6f", m.loss) + "\n";
        }
        log("postnas search: " + spec.label() + " full {" + placement_string(base) + "} + SWA k=" + std::to_string(k) +
            ": best {" + placement_string(swa_beam[0]) + "} " + fmt("%.4f", swa_score(swa_beam[0]).first));
      }
    }
  }
  write_file_atomic(o.out + "/importance.csv", importance_csv);
  if (o.swa_k > 0) write_file_atomic(o.out + "/swa.csv", swa_csv);
  write_file_atomic(o.out + "/beam.csv", beam_csv);
  write_file_atomic(o.out + "/comparison.csv", comparison_csv);
  const char* env = std::getenv("JETLM_SOURCE_DIR");
  const fs::path script = fs::path(env && *env ? env : JETLM_POSTNAS_SOURCE_ROOT) / "src/postnas/plot_importance.py";
  const std::string cmd = "python3 '" + script.string() + "' '" + o.out + "/importance.csv' '" + o.out + "/importance' 2>&1";
  if (!fs::exists(script) || std::system(cmd.c_str()) != 0)
    log("importance heatmap skipped (needs python3 with matplotlib and " + script.string() + ")");
}

}  // namespace jetlm::postnas
