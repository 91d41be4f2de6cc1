// The trainer's synthetic-task side and its data parallelism:
//   - the task scorer (make_scorer) against a direct log-softmax of the model's logits;
//   - TrainBatches: task rows hold task examples, the mix fraction holds, rows are a function of
//     (seed, step, row) so any slice equals the same rows of the whole batch;
//   - a run with --task-mix and --task-eval writes the task columns;
//   - data-parallel training over 2 processes (the CPU store all-reduce) follows the 1-process run;
//     a failing worker fails the launch; bad rank variables are named;
//   - on a GPU (skipped without one): CUDA fp32 logits == CPU logits, and a CUDA run's loss drops.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "data/data_test_util.h"
#include "data/token_dataset.h"
#include "golden/golden_data.h"
#include "jetlm/model.h"
#include "jetlm/tokenizer.h"
#include "postnas/checkpoint.h"
#include "postnas/distributed.h"
#include "postnas/pretrain.h"
#include "postnas/scoring.h"
#include "test_util.h"

namespace jetlm::postnas {
namespace {

namespace fs = std::filesystem;

// A token dataset of the test corpus (repeated so both splits hold a few thousand tokens), built by
// `jetlm data build` with the small test tokenizer (420 ids).
const std::string& small_dataset() {
  static test::TempDir dir("postnas_tasks");
  static const bool built = [] {
    std::vector<std::string> docs;
    for (int r = 0; r < 8; ++r)
      for (const std::string& d : test::corpus_documents()) docs.push_back(d + " " + std::to_string(r));
    test::write_text(dir.path + "/corpus.txt", test::join_documents(docs));
    const auto r = test::run_cli("data build --tokenizer " + test::small_tokenizer_dir() + " --input " + dir.path +
                                 "/corpus.txt --out " + dir.path + "/tokens --heldout-fraction 0.2 --threads 1");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return true;
  }();
  (void)built;
  static const std::string tokens = dir.path + "/tokens";
  return tokens;
}

const char* kTinyQwen2 = R"({"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 420,
  "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true})";

std::string write_config(const std::string& dir) {
  fs::create_directories(dir);
  std::ofstream(dir + "/config.json") << kTinyQwen2;
  return dir;
}

TEST(PostnasScoring, ScorerMatchesLogSoftmaxOfEachSequenceAlone) {
  torch::manual_seed(3);
  const ModelSpec spec = parse_model_spec(nlohmann::ordered_json::parse(kTinyQwen2), {}, "test");
  HybridModel model(spec.config, spec.blocks);
  const data::Scorer scorer = make_scorer(*model, torch::kCPU, false);
  // Different lengths (padding), answers of 1..4 tokens, one starting right after the first token.
  const std::vector<data::ScoreRequest> requests = {
      {{5, 9, 13, 2, 7, 7}, 4}, {{11, 3}, 1}, {{1, 2, 3, 4, 5, 6, 7, 8, 9}, 5}, {{400, 12, 99}, 2}};
  std::vector<data::ScoreResult> results;
  scorer(requests, results);
  ASSERT_EQ(results.size(), requests.size());
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    std::vector<int64_t> ids(r.tokens.begin(), r.tokens.end());
    const torch::Tensor lp =
        torch::log_softmax(model->forward(torch::tensor(ids).unsqueeze(0))[0], -1);  // [T, V], this sequence alone
    const int64_t n = int64_t(r.tokens.size()) - r.answer_start;
    ASSERT_EQ(int64_t(results[i].logprobs.size()), n);
    ASSERT_EQ(int64_t(results[i].is_argmax.size()), n);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t t = r.answer_start + j;
      EXPECT_NEAR(results[i].logprobs[j], lp[t - 1][r.tokens[t]].item<double>(), 1e-5) << i << "," << j;
      EXPECT_EQ(results[i].is_argmax[j], lp[t - 1].argmax().item<int64_t>() == r.tokens[t] ? 1 : 0);
    }
  }
  EXPECT_THROW(scorer({{{1, 2}, 0}}, results), Error);  // nothing before the first scored token
}

TEST(PostnasScoring, TaskSpecsParseAndBadOnesAreNamed) {
  const auto specs = parse_task_specs("kv-retrieval@128,passkey,arithmetic@64", 256, "--tasks");
  ASSERT_EQ(specs.size(), 3u);
  EXPECT_EQ(specs[0].label(), "kv-retrieval@128");
  EXPECT_EQ(specs[1].context_tokens, 256);
  EXPECT_EQ(specs[2].kind, data::TaskKind::Arithmetic);
  for (const char* bad : {"kv-retrieval@x", "nope@64", "passkey@3", ""}) {
    try {
      parse_task_specs(bad, 256, "--tasks");
      FAIL() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--tasks"), std::string::npos) << e.what();
    }
  }
}

TEST(PostnasTrainBatches, TaskRowsMixFractionAndDeterminism) {
  const auto train = data::TokenDataset::open(small_dataset(), "train");
  const auto tokenizer = Tokenizer::load(train.tokenizer_dir());
  const int64_t T = 200;
  // All rows kv-retrieval: each row starts with a kv prompt and holds a query.
  const TrainBatches all_kv(train, tokenizer.get(), {data::TaskKind::KeyValueRetrieval}, 1.0, T, 5);
  const torch::Tensor rows = all_kv.make(0, 0, 4);
  ASSERT_EQ(rows.sizes(), (std::vector<int64_t>{4, T + 1}));
  for (int64_t b = 0; b < 4; ++b) {
    const torch::Tensor row = rows[b].to(torch::kInt).contiguous();
    const std::string text = tokenizer->decode({row.data_ptr<int32_t>(), size_t(T + 1)});
    EXPECT_EQ(text.rfind("Remember the value of each key.", 0), 0u) << text;
    EXPECT_NE(text.find("Query:"), std::string::npos) << text;
  }
  // No mix: rows are windows of the train split (no task text), the same offsets as with a mix.
  const TrainBatches none(train, nullptr, {}, 0.0, T, 5);
  const torch::Tensor plain = none.make(0, 0, 4);
  for (int64_t b = 0; b < 4; ++b) {
    const torch::Tensor row = plain[b].to(torch::kInt).contiguous();
    EXPECT_EQ(tokenizer->decode({row.data_ptr<int32_t>(), size_t(T + 1)}).find("Remember the value"), std::string::npos);
  }
  // A mix of 0.3 over 400 rows: about 30% task rows; the rest equal the no-mix rows.
  const TrainBatches mixed(train, tokenizer.get(),
                           {data::TaskKind::KeyValueRetrieval, data::TaskKind::Passkey, data::TaskKind::Arithmetic}, 0.3,
                           T, 5);
  const torch::Tensor m = mixed.make(7, 0, 400), p = none.make(7, 0, 400);
  const int64_t same = (m == p).all(1).sum().item<int64_t>();
  EXPECT_GT(400 - same, 90);
  EXPECT_LT(400 - same, 150);
  // Any slice of rows equals those rows of the whole batch; the same step gives the same batch.
  EXPECT_TRUE(torch::equal(mixed.make(7, 100, 50), m.narrow(0, 100, 50)));
  EXPECT_TRUE(torch::equal(mixed.make(7, 0, 400), m));
  EXPECT_FALSE(torch::equal(mixed.make(8, 0, 400), m));
}

TEST(PostnasTrainBatches, RunWithTaskMixWritesTaskColumns) {
  test::TempDir out("postnas_taskrun");
  const std::string config = write_config(out.path + "/config");
  PretrainOptions o;
  o.config = config;
  o.data = small_dataset();
  o.out = out.path + "/run";
  o.steps = 4;
  o.batch = 4;
  o.seq = 96;
  o.warmup = 1;
  o.eval_every = 2;
  o.eval_batches = 1;
  o.log_every = 1;
  o.plot = false;
  o.threads = 1;
  o.task_mix = 0.5;
  o.tasks = "kv-retrieval,passkey,arithmetic";
  o.task_eval = "kv-retrieval@64,arithmetic";
  o.task_eval_examples = 3;
  o.log = [](const std::string&) {};
  const PretrainResult r = pretrain(o);
  ASSERT_EQ(r.last_task_accuracy.size(), 2u);
  EXPECT_EQ(r.last_task_accuracy[0].first, "kv-retrieval@64");
  EXPECT_EQ(r.last_task_accuracy[1].first, "arithmetic@96");
  std::ifstream csv(o.out + "/loss.csv");
  std::string header, row1, row2;
  std::getline(csv, header);
  std::getline(csv, row1);
  std::getline(csv, row2);
  EXPECT_EQ(header,
            "step,lr,train_loss,eval_loss,eval_ppl,tokens_per_s,grad_norm,kv-retrieval@64_acc,kv-retrieval@64_loss,"
            "arithmetic@96_acc,arithmetic@96_loss");
  EXPECT_EQ(std::count(row1.begin(), row1.end(), ','), 10) << row1;  // step 1: no eval, empty task cells
  EXPECT_TRUE(row1.ends_with(",,,,")) << row1;
  EXPECT_EQ(std::count(row2.begin(), row2.end(), ','), 10) << row2;  // step 2: eval with task cells
  EXPECT_FALSE(row2.ends_with(",")) << row2;
  // A resume with another mix is refused (the batches would differ).
  PretrainOptions other = o;
  other.task_mix = 0.25;
  other.steps = 6;
  EXPECT_THROW(pretrain(other), Error);
  // cloze cannot be mixed into training.
  PretrainOptions cloze = o;
  cloze.out = out.path + "/cloze";
  cloze.tasks = "cloze";
  EXPECT_THROW(pretrain(cloze), Error);
}

// train_loss column of loss.csv, by row.
std::vector<double> train_losses(const std::string& csv_path) {
  std::ifstream in(csv_path);
  std::vector<double> out;
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::string step, lr, loss;
    std::getline(ss, step, ',');
    std::getline(ss, lr, ',');
    std::getline(ss, loss, ',');
    out.push_back(std::stod(loss));
  }
  return out;
}

double max_weight_diff(const std::string& a, const std::string& b) {
  HybridModel wa = load_model(a), wb = load_model(b);
  double worst = 0;
  for (const auto& p : wa->named_parameters())
    worst = std::max(worst, (p.value() - *wb->named_parameters().find(p.key())).abs().max().item<double>());
  return worst;
}

std::string dp_args(const std::string& config, const std::string& out, const std::string& device, int steps = 8) {
  return "postnas pretrain --config " + config + " --data " + small_dataset() + " --out " + out + " --steps " +
         std::to_string(steps) + " --batch 4 --seq 48 --warmup 2 --lr 5e-3 --eval-every 4 --eval-batches 1 --log-every 1" +
         " --threads 1 --no-plot --final-dtype f32 --task-mix 0.5 --device " + device;
}

TEST(PostnasDataParallel, TwoProcessesFollowOneProcess) {
  test::TempDir out("postnas_dp");
  const std::string config = write_config(out.path + "/config");
  const auto one = test::run_cli(dp_args(config, out.path + "/one", "cpu"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto two = test::run_cli(dp_args(config, out.path + "/two", "cpu") + " --nproc 2");
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_NE(two.err.find("data-parallel over 2 processes"), std::string::npos) << two.err;
  const auto a = train_losses(out.path + "/one/loss.csv"), b = train_losses(out.path + "/two/loss.csv");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5) << "step " << i + 1;
  const double diff = max_weight_diff(out.path + "/one/final", out.path + "/two/final");
  std::printf("  2 processes vs 1: final weights differ by at most %.2e\n", diff);
  // Only the summation order differs; Adam's g/sqrt(v) magnifies that for parameters whose gradients
  // are near zero. A wrong all-reduce (a missing rank, no averaging) moves weights by ~lr = 5e-3.
  EXPECT_LT(diff, 1e-4);
}

TEST(PostnasDataParallel, FailingWorkerFailsTheLaunch) {
  test::TempDir out("postnas_dp_fail");
  const std::string config = write_config(out.path + "/config");
  const auto r = test::run_cli(dp_args(config, out.path + "/run", "cpu") + " --nproc 2 --poison-step 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("step 3: training loss is nan"), std::string::npos) << r.err;
  const auto odd = test::run_cli(dp_args(config, out.path + "/odd", "cpu") + " --nproc 3");
  EXPECT_EQ(odd.exit_code, 1);
  EXPECT_NE(odd.err.find("--batch"), std::string::npos) << odd.err;
}

TEST(PostnasDataParallel, BadRankEnvironmentIsNamed) {
  ::setenv("JETLM_WORLD_SIZE", "2", 1);
  ::unsetenv("JETLM_MASTER_PORT");
  try {
    dist_env_from_environment();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("JETLM_MASTER_PORT"), std::string::npos) << e.what();
  }
  ::setenv("JETLM_RANK", "2", 1);
  ::setenv("JETLM_MASTER_PORT", "1234", 1);
  try {
    dist_env_from_environment();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("JETLM_RANK"), std::string::npos) << e.what();
  }
  for (const char* v : {"JETLM_WORLD_SIZE", "JETLM_RANK", "JETLM_MASTER_PORT"}) ::unsetenv(v);
  EXPECT_FALSE(dist_env_from_environment().active());
}

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible to libtorch"

TEST(PostnasCuda, Fp32LogitsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  // TF32 would round the matmul inputs to 10 mantissa bits; the comparison is of fp32 math.
  at::globalContext().setAllowTF32CuBLAS(false);
  for (const char* name : {"jet_mix_f32", "qwen2_f32", "qwen3_f32"}) {
    HybridModel model = load_model(golden::golden_root() + "/" + name);
    torch::NoGradGuard no_grad;
    torch::manual_seed(1);
    const torch::Tensor ids = torch::randint(0, model->config().vocab, {2, 150}, torch::kLong);
    const torch::Tensor cpu = model->forward(ids);
    model->to(torch::kCUDA);
    const torch::Tensor gpu = model->forward(ids.to(torch::kCUDA)).cpu();
    const double rel = (gpu - cpu).abs().max().item<double>() / cpu.abs().max().item<double>();
    std::printf("  %s: CUDA vs CPU logits, max |diff| / max |cpu| = %.2e\n", name, rel);
    EXPECT_LE(rel, 1e-4) << name;
  }
}

TEST(PostnasCuda, Bf16AutocastRunLossDrops) {
  SKIP_WITHOUT_CUDA();
  test::TempDir out("postnas_cuda_run");
  const std::string config = write_config(out.path + "/config");
  const auto r = test::run_cli(dp_args(config, out.path + "/run", "cuda", 30));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto losses = train_losses(out.path + "/run/loss.csv");
  ASSERT_EQ(losses.size(), 30u);
  std::printf("  CUDA bf16 autocast: train loss step 1 %.3f -> step 30 %.3f\n", losses.front(), losses.back());
  EXPECT_LT(losses.back(), losses.front() - 1.0);
  EXPECT_NO_THROW(Model::load(out.path + "/run/final"));
}

TEST(PostnasCuda, NcclTwoGpusFollowOneGpu) {
  SKIP_WITHOUT_CUDA();
  if (torch::cuda::device_count() < 2) GTEST_SKIP() << "needs 2 GPUs";
  test::TempDir out("postnas_nccl");
  const std::string config = write_config(out.path + "/config");
  const auto one = test::run_cli(dp_args(config, out.path + "/one", "cuda"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto two = test::run_cli(dp_args(config, out.path + "/two", "cuda") + " --nproc 2");
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_NE(two.err.find("(NCCL)"), std::string::npos) << two.err;
  const auto a = train_losses(out.path + "/one/loss.csv"), b = train_losses(out.path + "/two/loss.csv");
  ASSERT_EQ(a.size(), b.size());
  // bf16 matmuls over 2 rows instead of 4 may pick other kernels: equal up to bf16 rounding.
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 2e-3 * std::abs(a[i])) << "step " << i + 1;
  const double diff = max_weight_diff(out.path + "/one/final", out.path + "/two/final");
  std::printf("  NCCL 2 GPUs vs 1: final weights differ by at most %.2e\n", diff);
  EXPECT_LT(diff, 1e-2);
}

}  // namespace
}  // namespace jetlm::postnas
