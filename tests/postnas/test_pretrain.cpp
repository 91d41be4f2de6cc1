// `jetlm postnas pretrain` on a tiny model and a tiny token dataset written here (a learnable
// next-token rule): the loss drops, a run stopped at step 10 and resumed reaches step 20 with the
// same losses and bit-identical weights as an uninterrupted run, a NaN stops the run with an error
// and leaves the last good checkpoint, and the CLI writes a model dir the engine runs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "jetlm/model.h"
#include "postnas/checkpoint.h"
#include "postnas/pretrain.h"
#include "test_util.h"

namespace jetlm::postnas {
namespace {

namespace fs = std::filesystem;

constexpr int kVocab = 32, kEos = 31;

std::string temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("jetlm_pretrain_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// Documents of 20..60 tokens following t -> (3t + 1) mod 30 from a random start, each ended by eos:
// a rule a model learns in a few steps, with an entropy floor from the random starts.
std::vector<uint32_t> documents(int64_t n_tokens, uint32_t seed, int64_t& n_docs) {
  std::mt19937 rng(seed);
  std::vector<uint32_t> out;
  n_docs = 0;
  while (int64_t(out.size()) < n_tokens) {
    uint32_t t = rng() % 30;
    const int len = 20 + int(rng() % 41);
    for (int i = 0; i < len; ++i, t = (3 * t + 1) % 30) out.push_back(t);
    out.push_back(kEos);
    ++n_docs;
  }
  return out;
}

std::string write_dataset() {
  const std::string dir = temp_dir("data");
  nlohmann::json splits;
  for (const auto& [split, n, seed] : {std::tuple{"train", 20000, 1u}, std::tuple{"heldout", 3000, 2u}}) {
    int64_t docs = 0;
    const auto tokens = documents(n, seed, docs);
    const std::string file = std::string(split) + "-00000.bin";
    std::ofstream(dir + "/" + file, std::ios::binary)
        .write(reinterpret_cast<const char*>(tokens.data()), std::streamsize(tokens.size() * 4));
    splits[split] = {{{"file", file}, {"tokens", tokens.size()}, {"documents", docs}}};
  }
  const nlohmann::json index = {{"format", "jetlm-tokens-v1"}, {"dtype", "uint32"}, {"vocab_size", kVocab},
                                {"eos_id", kEos}, {"splits", splits}};
  std::ofstream(dir + "/index.json") << index.dump(2);
  return dir;
}

const char* kTinyQwen2 = R"({"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 32,
  "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true, "eos_token_id": 31})";

PretrainOptions tiny_options(const std::string& data, const std::string& out, const std::string& config_path) {
  PretrainOptions o;
  o.config = config_path;
  o.data = data;
  o.out = out;
  o.steps = 20;
  o.batch = 4;
  o.seq = 32;
  o.lr = 1e-2;
  o.min_lr = 1e-3;
  o.warmup = 2;
  o.eval_every = 10;
  o.eval_batches = 2;
  o.save_every = 5;
  o.log_every = 5;
  o.plot = false;
  o.threads = 1;
  o.log = [](const std::string&) {};
  return o;
}

struct PostnasPretrainRun : ::testing::Test {
  void SetUp() override {
    data = write_dataset();
    config_dir = temp_dir("config");
    std::ofstream(config_dir + "/config.json") << kTinyQwen2;
  }
  void TearDown() override {
    fs::remove_all(data);
    fs::remove_all(config_dir);
  }
  std::string data, config_dir;
};

// loss.csv rows without the timing column (tokens_per_s).
std::vector<std::string> csv_rows(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cols;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) cols.push_back(c);
    if (cols.size() >= 6) cols.erase(cols.begin() + 5);
    std::string joined;
    for (const auto& c : cols) joined += c + ",";
    rows.push_back(joined);
  }
  return rows;
}

TEST(PostnasPretrain, LearningRateSchedule) {
  EXPECT_DOUBLE_EQ(lr_at(0, 100, 1.0, 0.1, 10), 0.1);   // warmup: (s+1)/warmup
  EXPECT_DOUBLE_EQ(lr_at(9, 100, 1.0, 0.1, 10), 1.0);
  EXPECT_NEAR(lr_at(10, 100, 1.0, 0.1, 10), 1.0, 1e-12);  // cosine starts at the peak
  EXPECT_NEAR(lr_at(99, 100, 1.0, 0.1, 10), 0.1, 1e-12);  // and ends at min_lr
  EXPECT_NEAR(lr_at(10 + 89 / 2.0, 100, 1.0, 0.1, 10), 0.55, 0.02);
}

TEST_F(PostnasPretrainRun, LossDropsAndResumeMatchesUninterruptedRun) {
  const std::string a = temp_dir("a"), b = temp_dir("b");
  const PretrainResult full = pretrain(tiny_options(data, a, config_dir));
  EXPECT_EQ(full.first_step, 0);
  EXPECT_EQ(full.last_step, 20);
  const auto rows = csv_rows(a + "/loss.csv");
  ASSERT_EQ(rows.size(), 5u);  // header + steps 5, 10, 15, 20
  const double first = std::stod(rows[1].substr(rows[1].find(',', rows[1].find(',') + 1) + 1));
  std::printf("  train loss: steps 1-5 %.3f, step 20 %.3f; held-out loss %.3f (log(vocab) %.3f)\n", first,
              full.last_train_loss, full.last_eval_loss, std::log(double(kVocab)));
  EXPECT_GT(first, 2.5);
  EXPECT_LT(full.last_eval_loss, first - 0.7);
  EXPECT_LT(full.last_train_loss, first - 0.7);

  // Interrupted at step 10, then resumed from the checkpoint.
  PretrainOptions part = tiny_options(data, b, config_dir);
  part.stop_after = 10;
  EXPECT_EQ(pretrain(part).last_step, 10);
  EXPECT_FALSE(fs::exists(b + "/final"));
  const PretrainResult resumed = pretrain(tiny_options(data, b, config_dir));
  EXPECT_EQ(resumed.first_step, 10);
  EXPECT_EQ(resumed.last_step, 20);
  EXPECT_EQ(csv_rows(b + "/loss.csv"), rows);
  HybridModel wa = load_model(a + "/checkpoint"), wb = load_model(b + "/checkpoint");
  for (const auto& p : wa->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), *wb->named_parameters().find(p.key()))) << p.key();
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST_F(PostnasPretrainRun, NanStopsWithErrorAndKeepsLastGoodCheckpoint) {
  const std::string out = temp_dir("nan");
  PretrainOptions o = tiny_options(data, out, config_dir);
  o.poison_step = 12;  // the 13th step
  try {
    pretrain(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("step 13"), std::string::npos) << what;
    EXPECT_NE(what.find("nan"), std::string::npos) << what;
    EXPECT_NE(what.find("checkpoint"), std::string::npos) << what;
  }
  const auto state = nlohmann::json::parse(test::slurp(out + "/checkpoint/trainer_state.json"));
  EXPECT_EQ(state["step"], 10);
  EXPECT_FALSE(fs::exists(out + "/checkpoint.tmp"));
  // The checkpoint is a model dir the engine loads.
  EXPECT_NO_THROW(Model::load(out + "/checkpoint"));
  fs::remove_all(out);
}

TEST_F(PostnasPretrainRun, CliWritesAModelTheEngineRuns) {
  const std::string out = temp_dir("cli");
  const auto r = test::run_cli("postnas pretrain --config " + config_dir + " --set num_hidden_layers=1 --data " + data +
                               " --out " + out + " --steps 4 --batch 2 --seq 16 --warmup 1 --eval-every 2 " +
                               "--eval-batches 1 --log-every 1 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("step 4/4"), std::string::npos) << r.err;
  const auto model = Model::load(out + "/final");
  EXPECT_EQ(model->config().n_layers, 1);
  const auto gen = test::run_cli("generate --model " + out + "/final --prompt-ids 3,10 --output-ids --temp 0 -n 3");
  EXPECT_EQ(gen.exit_code, 0) << gen.err;
  if (std::system("python3 -c 'import matplotlib' > /dev/null 2>&1") == 0) {
    EXPECT_TRUE(fs::exists(out + "/loss.png")) << r.err;
  }
  // Bad input names the field.
  const auto bad = test::run_cli("postnas pretrain --config " + config_dir + " --set vocab_size=8 --data " + data +
                                 " --out " + out + "/x --steps 1");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("vocab_size"), std::string::npos) << bad.err;
  fs::remove_all(out);
}

}  // namespace
}  // namespace jetlm::postnas
