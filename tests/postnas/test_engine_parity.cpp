// The libtorch HybridModel against the engine: same tensor names, same logits (max |diff| / max |ref|
// within 1e-4) on the random-weight fp32 checkpoints the engine's golden tests use (checked there
// against the float64 PyTorch reference) and on engine-written random checkpoints, for T = 150
// (three 64-token chunks); and a checkpoint the trainer writes loads and runs in the engine
// (Model::load + forward, and `jetlm generate`).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "golden/golden_data.h"
#include "jetlm/model.h"
#include "model/weights.h"
#include "postnas/checkpoint.h"
#include "postnas/model.h"
#include "test_util.h"

namespace jetlm::postnas {
namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("jetlm_postnas_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::vector<int32_t> random_ids(int64_t n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(0, vocab - 1);
  std::vector<int32_t> ids(static_cast<size_t>(n), 0);
  for (auto& id : ids) id = dist(rng);
  return ids;
}

std::vector<float> engine_logits(const Model& model, const std::vector<int32_t>& ids) {
  std::vector<float> logits(ids.size() * size_t(model.config().vocab));
  HybridCache cache = model.new_cache();
  model.forward(ids.data(), int64_t(ids.size()), cache, logits.data());
  return logits;
}

std::vector<float> torch_logits(HybridModelImpl& model, const std::vector<int32_t>& ids) {
  torch::NoGradGuard no_grad;
  const torch::Tensor t = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kLong).unsqueeze(0);
  const torch::Tensor logits = model.forward(t).contiguous();
  return std::vector<float>(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
}

// Loads `dir` in both, runs T random ids through both (chunked and, for the trainer, also the
// recurrent form), returns the larger normalised error.
double compare_dir(const std::string& dir, int64_t T, uint32_t seed) {
  const auto engine = Model::load(dir);
  HybridModel ours = load_model(dir);
  const auto ids = random_ids(T, engine->config().vocab, seed);
  const std::vector<float> expected = engine_logits(*engine, ids);
  const double chunked = test::normalized_error(torch_logits(*ours, ids), expected);
  ours->set_recurrent(true);
  const double recurrent = test::normalized_error(torch_logits(*ours, ids), expected);
  std::printf("  %s: T %lld, chunked %.2e, recurrent %.2e\n", fs::path(dir).filename().c_str(), (long long)T,
              chunked, recurrent);
  return std::max(chunked, recurrent);
}

TEST(PostnasEngineParity, ParameterNamesAreTheEngineTensorNames) {
  for (const std::string name : {"jet_mix_f32", "qwen2_f32", "qwen3_f32", "jet_strong_decay_f32"}) {
    const ModelSpec spec = load_model_spec(golden::golden_root() + "/" + name);
    HybridModel model(spec.config, spec.blocks);
    std::map<std::string, std::vector<int64_t>> ours, engine;
    for (const auto& p : model->named_parameters()) ours[p.key()] = p.value().sizes().vec();
    for (const TensorSpec& t : expected_tensors(spec.config)) engine[t.name] = t.shape;
    EXPECT_EQ(ours, engine) << name;
  }
}

TEST(PostnasEngineParity, GoldenCheckpointsLogitsMatchEngine) {
  for (const std::string name : {"jet_mix_f32", "jet_strong_decay_f32", "qwen2_f32", "qwen3_f32"})
    EXPECT_LE(compare_dir(golden::golden_root() + "/" + name, 150, 11), 1e-4) << name;
}

// Half-precision weights: both sides widen the same stored values.
TEST(PostnasEngineParity, HalfPrecisionCheckpointsLogitsMatchEngine) {
  for (const std::string name : {"jet_mix_bf16_sharded", "qwen2_f16"})
    EXPECT_LE(compare_dir(golden::golden_root() + "/" + name, 130, 12), 1e-4) << name;
}

// Engine-made random weights (Model::random) saved by the engine's save_weights: a mix with two
// chunk boundaries, GQA, a window smaller than a chunk, untied head.
TEST(PostnasEngineParity, EngineRandomCheckpointMatches) {
  const std::string dir = temp_dir("engine_random");
  const nlohmann::json config = nlohmann::json::parse(R"({
    "model_type": "jet_nemotron", "hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "tie_word_embeddings": false, "layer_types": ["jet", "swa", "jet", "attn"],
    "efficient_attention_config": {"jet": {"num_heads": 2, "head_dim": 16, "expand_v": 1.5, "conv_size": 4,
      "dconv_generator_reduction": 4, "norm_eps": "1e-5"}, "swa": {"window_size": 20}}})");
  const ModelConfig parsed = parse_model_config(config, "test config");
  const auto engine = Model::random(parsed, DType::F32, 5);
  ModelWeights weights = engine->weights();
  save_weights(parsed, weights, DType::F32, dir + "/model.safetensors");
  std::ofstream(dir + "/config.json") << config.dump();
  EXPECT_LE(compare_dir(dir, 150, 13), 1e-4);
  fs::remove_all(dir);
}

// Rows of a batch are independent sequences: [a; b] gives the logits of a and of b alone.
TEST(PostnasEngineParity, BatchRowsAreIndependent) {
  const ModelSpec spec = load_model_spec(golden::golden_root() + "/jet_mix_f32");
  HybridModel model = load_model(golden::golden_root() + "/jet_mix_f32");
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(0, spec.config.vocab, {2, 70}, torch::kLong);
  const torch::Tensor both = model->forward(ids);
  for (int64_t b = 0; b < 2; ++b) {
    const torch::Tensor alone = model->forward(ids.narrow(0, b, 1));
    EXPECT_LE((both.narrow(0, b, 1) - alone).abs().max().item<double>(), 1e-5 * alone.abs().max().item<double>());
  }
}

nlohmann::ordered_json tiny_hybrid_json() {
  return nlohmann::ordered_json::parse(R"({
    "model_type": "jet_nemotron", "hidden_size": 40, "intermediate_size": 64, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 1, "vocab_size": 97, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2,
    "layer_types": ["jet", "attn", "swa"],
    "efficient_attention_config": {"jet": {"num_heads": 2, "head_dim": 8, "expand_v": 2, "conv_size": 4,
      "dconv_generator_reduction": 4, "norm_eps": "1e-5"}, "swa": {"window_size": 9}}})");
}

// A trainer-made model (its own init, a few SGD steps so nothing is at its initial value) saved
// with save_model: the engine loads the directory and computes the trainer's logits.
TEST(PostnasEngineParity, TrainerCheckpointRunsInEngine) {
  torch::manual_seed(21);
  const ModelSpec spec = parse_model_spec(tiny_hybrid_json(), {}, "test");
  HybridModel model(spec.config, spec.blocks);
  torch::optim::SGD sgd(model->parameters(), 0.05);
  const torch::Tensor ids = torch::randint(0, spec.config.vocab, {2, 40}, torch::kLong);
  for (int step = 0; step < 3; ++step) {
    sgd.zero_grad();
    const torch::Tensor logits = model->forward(ids.narrow(1, 0, 39));
    torch::nn::functional::cross_entropy(logits.reshape({-1, spec.config.vocab}), ids.narrow(1, 1, 39).reshape(-1))
        .backward();
    sgd.step();
  }
  const std::string dir = temp_dir("trainer_ckpt");
  save_model(*model, spec, dir, DType::F32, /*overwrite=*/true);
  const auto engine = Model::load(dir);
  const auto prompt = random_ids(150, spec.config.vocab, 14);
  const double err = test::normalized_error(torch_logits(*model, prompt), engine_logits(*engine, prompt));
  std::printf("  trainer checkpoint: engine vs trainer logits %.2e\n", err);
  EXPECT_LE(err, 1e-4);

  // The same directory through the CLI: greedy tokens must be the trainer's argmax (up to a near
  // tie within float32 noise).
  const std::vector<int32_t> start{5, 17, 42, 8};
  const auto r = test::run_cli("generate --model " + dir +
                               " --prompt-ids 5,17,42,8 --output-ids --temp 0 -n 6 --ignore-eos");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<int32_t> generated;
  std::stringstream ss(r.out);
  for (std::string item; std::getline(ss, item, ',');) generated.push_back(std::stoi(item));
  ASSERT_EQ(generated.size(), 6u) << r.out;
  std::vector<int32_t> seq = start;
  for (int32_t token : generated) {
    const std::vector<float> logits = torch_logits(*model, seq);
    const float* last = logits.data() + (seq.size() - 1) * size_t(spec.config.vocab);
    const float best = *std::max_element(last, last + spec.config.vocab);
    EXPECT_GE(last[token], best - 1e-4f * std::fabs(best)) << "token " << token << " is not the trainer's argmax";
    seq.push_back(token);
  }
  fs::remove_all(dir);
}

// bf16 saving: the engine reads the bf16 file; the trainer reloading it gets the rounded weights.
TEST(PostnasEngineParity, Bf16SaveRoundTrips) {
  torch::manual_seed(22);
  const ModelSpec spec = parse_model_spec(tiny_hybrid_json(), {}, "test");
  HybridModel model(spec.config, spec.blocks);
  const std::string dir = temp_dir("bf16");
  save_model(*model, spec, dir, DType::BF16, true);
  const Checkpoint checkpoint(dir);
  EXPECT_EQ(checkpoint.find("model.layers.0.self_attn.A_log")->dtype, DType::BF16);
  HybridModel back = load_model(dir);
  const auto a = model->named_parameters(), b = back->named_parameters();
  for (const auto& p : a) {
    const torch::Tensor rounded = p.value().detach().to(torch::kBFloat16).to(torch::kFloat);
    EXPECT_TRUE(torch::equal(rounded, *b.find(p.key()))) << p.key();
  }
  EXPECT_LE(compare_dir(dir, 70, 15), 1e-4);
  fs::remove_all(dir);
}

// Wrong inputs give errors naming the file and tensor.
TEST(PostnasEngineParity, LoadErrorsNameTheTensor) {
  const std::string dir = temp_dir("bad");
  const ModelSpec spec = parse_model_spec(tiny_hybrid_json(), {}, "test");
  HybridModel model(spec.config, spec.blocks);
  save_model(*model, spec, dir, DType::F32, true);
  // A config with another layer order: the jet tensors of layer 0 are then unexpected.
  const ModelSpec other = parse_model_spec(tiny_hybrid_json(), {R"(layer_types=["attn","attn","swa"])"}, "test");
  HybridModel wrong(other.config, other.blocks);
  try {
    load_weights(*wrong, dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn"), std::string::npos) << e.what();
  }
  const ModelSpec wider = parse_model_spec(tiny_hybrid_json(), {"intermediate_size=72"}, "test");
  HybridModel wide(wider.config, wider.blocks);
  try {
    load_weights(*wide, dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mlp"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("shape"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// Search-only blocks save and reload through the same files (not loadable by the engine).
TEST(PostnasEngineParity, SearchBlocksRoundTrip) {
  torch::manual_seed(23);
  const ModelSpec spec = parse_model_spec(tiny_hybrid_json(), {R"(layer_types=["gdn","gla","jet"])"}, "test");
  ASSERT_EQ(spec.blocks, (std::vector<BlockKind>{BlockKind::Gdn, BlockKind::Gla, BlockKind::Jet}));
  HybridModel model(spec.config, spec.blocks);
  std::set<std::string> names;
  for (const auto& p : model->named_parameters()) names.insert(p.key());
  for (const char* n : {"model.layers.0.self_attn.q_conv1d.weight", "model.layers.0.self_attn.o_norm.weight",
                        "model.layers.1.self_attn.gk_proj.0.weight", "model.layers.1.self_attn.gk_proj.1.bias",
                        "model.layers.1.self_attn.g_norm_swish_gate.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  const std::string dir = temp_dir("search_blocks");
  save_model(*model, spec, dir, DType::F32, true);
  HybridModel back = load_model(dir);
  EXPECT_EQ(back->blocks(), spec.blocks);
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(0, spec.config.vocab, {1, 80}, torch::kLong);
  EXPECT_TRUE(torch::allclose(model->forward(ids), back->forward(ids), 0, 0));
  // chunked == recurrent for the whole model with GDN and GLA blocks
  const torch::Tensor chunked = model->forward(ids);
  model->set_recurrent(true);
  const torch::Tensor recurrent = model->forward(ids);
  EXPECT_LE((chunked - recurrent).abs().max().item<double>(), 1e-5 * recurrent.abs().max().item<double>());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace jetlm::postnas
