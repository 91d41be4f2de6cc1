// Loader: the released configs parse to the right architecture, tensor list and parameter
// count; bad files and configs give one clear error naming the file/tensor/field.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/host_memory.h"
#include "io/mapped_file.h"
#include "jetlm/model.h"
#include "model/presets.h"
#include "model_files.h"
#include "test_util.h"

namespace jetlm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string shared_config(const std::string& rel) {
  const std::string path = test::shared_dir() + "/hf/" + rel;
  return fs::exists(path) ? path : "";
}

int count_kind(const ModelConfig& c, LayerKind kind) {
  int n = 0;
  for (LayerKind k : c.layer_types) n += k == kind;
  return n;
}

TEST(Config, JetNemotron2B) {
  const std::string path = shared_config("jet-nemotron/config-2B.json");
  if (path.empty()) GTEST_SKIP() << "../shared/hf not present";
  const ModelConfig c = load_model_config(path);
  EXPECT_EQ(c.family, Family::JetNemotron);
  EXPECT_EQ(c.n_layers, 28);
  EXPECT_EQ(count_kind(c, LayerKind::Attn), 2);
  EXPECT_EQ(count_kind(c, LayerKind::Swa), 2);
  EXPECT_EQ(count_kind(c, LayerKind::Jet), 24);
  EXPECT_EQ(c.layer_types[14], LayerKind::Attn);
  EXPECT_EQ(c.layer_types[19], LayerKind::Attn);
  EXPECT_EQ(c.layer_types[20], LayerKind::Swa);
  EXPECT_EQ(c.layer_types[21], LayerKind::Swa);
  EXPECT_EQ(c.swa_window, 1152);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.jet.num_heads, 12);
  EXPECT_EQ(c.jet.head_k_dim, 96);
  EXPECT_EQ(c.jet.head_v_dim, 256);  // expand_v 2.6666666667
  EXPECT_EQ(c.jet.generator_hidden, 3072 / 8);
  EXPECT_FLOAT_EQ(c.jet.norm_eps, 1e-5f);  // given as the string "1e-5"
  EXPECT_TRUE(c.tie_embeddings);
  // 1.96B parameters including embeddings (the model card's number).
  const int64_t params = parameter_count(c);
  EXPECT_GE(params, 1'960'000'000);
  EXPECT_LT(params, 1'970'000'000);
  // embed + final norm + 28 x (2 norms + 3 MLP) + 4 attention layers x 7 + 24 JetBlocks x 13.
  EXPECT_EQ(expected_tensors(c).size(), size_t(1 + 1 + 28 * 5 + 4 * 7 + 24 * 13));
}

TEST(Config, JetNemotron4B) {
  const std::string path = shared_config("jet-nemotron/config-4B.json");
  if (path.empty()) GTEST_SKIP() << "../shared/hf not present";
  const ModelConfig c = load_model_config(path);
  EXPECT_EQ(c.n_layers, 36);
  EXPECT_EQ(count_kind(c, LayerKind::Attn), 3);
  EXPECT_EQ(count_kind(c, LayerKind::Swa), 7);
  EXPECT_EQ(c.swa_window, 2048);
  EXPECT_EQ(c.jet.num_heads, 16);
  EXPECT_EQ(c.jet.head_k_dim, 128);
  EXPECT_EQ(c.jet.head_v_dim, 256);
  EXPECT_EQ(c.n_kv_heads, 2);
}

TEST(Config, Baselines) {
  const ModelConfig qwen3 = load_model_config("qwen3-1.7b");
  EXPECT_EQ(qwen3.family, Family::Qwen3);
  EXPECT_TRUE(qwen3.qk_norm);
  EXPECT_FALSE(qwen3.attn_bias);
  EXPECT_EQ(qwen3.head_dim, 128);
  EXPECT_EQ(qwen3.n_kv_heads, 8);
  // Qwen3-1.7B: 1.7B parameters, 1.4B without embeddings (model card).
  const int64_t embed = int64_t(qwen3.vocab) * qwen3.hidden;
  EXPECT_NEAR(double(parameter_count(qwen3)) / 1e9, 1.72, 0.01);
  EXPECT_NEAR(double(parameter_count(qwen3) - embed) / 1e9, 1.41, 0.01);
  const ModelConfig qwen25 = load_model_config("qwen2.5-1.5b");
  EXPECT_EQ(qwen25.family, Family::Qwen2);
  EXPECT_TRUE(qwen25.attn_bias);
  // Qwen2.5-1.5B: 1.54B parameters, 1.31B without embeddings (model card).
  EXPECT_NEAR(double(parameter_count(qwen25)) / 1e9, 1.54, 0.01);
  EXPECT_NEAR(double(parameter_count(qwen25) - int64_t(qwen25.vocab) * qwen25.hidden) / 1e9, 1.31, 0.01);
}

TEST(Config, PresetsEqualTheSharedFiles) {
  const std::pair<const char*, const char*> pairs[] = {
      {"jet-nemotron-2b", "jet-nemotron/config-2B.json"},
      {"jet-nemotron-4b", "jet-nemotron/config-4B.json"},
      {"qwen3-1.7b", "baselines/qwen3-1.7b.config.json"},
      {"qwen2.5-1.5b", "baselines/qwen2.5-1.5b.config.json"}};
  for (const auto& [preset, rel] : pairs) {
    const std::string path = shared_config(rel);
    if (path.empty()) GTEST_SKIP() << "../shared/hf not present";
    EXPECT_EQ(expected_tensors(load_model_config(preset)).size(), expected_tensors(load_model_config(path)).size());
    EXPECT_EQ(parameter_count(load_model_config(preset)), parameter_count(load_model_config(path))) << preset;
  }
}

TEST(Config, CacheBytesPerSequence) {
  // At 64K context: Qwen3-1.7B keeps 28 layers x 8 KV heads x 128 x 2 (K,V) x 2 bytes per token.
  EXPECT_EQ(HybridCache::bytes_for(load_model_config("qwen3-1.7b"), 65536, 2), int64_t(7168) << 20);
  // Jet-Nemotron-2B: only 2 full-attention layers grow with the context.
  const ModelConfig jet = load_model_config("jet-nemotron-2b");
  EXPECT_EQ(HybridCache::bytes_for(jet, 131072, 2) - HybridCache::bytes_for(jet, 65536, 2),
            int64_t(2) * 65536 * 2 * 2 * 128 * 2);
}

// ---- bad input --------------------------------------------------------------------------

// Runs `fn` and returns the jetlm::Error message (fails the test when nothing or something
// else is thrown).
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a jetlm::Error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no error thrown";
  return "";
}

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::fresh_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    test::write_model_dir(dir_, test::tiny_jet_config());
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string load_error() { return error_of([&] { Model::load(dir_); }); }
  std::string dir_;
};

#define EXPECT_HAS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

TEST_F(BadInput, ValidTinyModelLoadsAndRuns) {
  auto model = Model::load(dir_);
  HybridCache cache = model->new_cache();
  std::vector<float> logits(50 * 3);
  const int32_t ids[] = {1, 2, 49};
  model->forward(ids, 3, cache, logits.data());
  for (float x : logits) EXPECT_TRUE(std::isfinite(x));
}

// WeightPlacement::Memory copies the weights out of the checkpoint: the same logits as the mapped
// model, and the model keeps working after the file changes under it (a mapped one would fault).
TEST_F(BadInput, InMemoryWeightsEqualMappedAndDoNotNeedTheFile) {
  const int32_t ids[] = {1, 2, 49, 7};
  std::vector<float> mapped_logits(50 * 4), memory_logits(50 * 4);
  {
    auto mapped = Model::load(dir_);
    HybridCache cache = mapped->new_cache();
    mapped->forward(ids, 4, cache, mapped_logits.data());
  }
  auto memory = Model::load(dir_, WeightFormat::AsStored, WeightPlacement::Memory);
  fs::resize_file(dir_ + "/model.safetensors", 0);
  HybridCache cache = memory->new_cache();
  memory->forward(ids, 4, cache, memory_logits.data());
  EXPECT_EQ(std::memcmp(mapped_logits.data(), memory_logits.data(), mapped_logits.size() * sizeof(float)), 0);
}

// q8 at load with Memory: the same logits as q8 over the mapped file, and no weight (not even the
// unquantized JetBlock gate projections) reads the file afterwards.
TEST_F(BadInput, InMemoryQ8WeightsEqualMappedQ8AndDoNotNeedTheFile) {
  const int32_t ids[] = {1, 2, 49, 7};
  std::vector<float> mapped_logits(50 * 4), memory_logits(50 * 4), stored_logits(50 * 4);
  {
    auto mapped = Model::load(dir_, WeightFormat::Q8);
    HybridCache cache = mapped->new_cache();
    mapped->forward(ids, 4, cache, mapped_logits.data());
    auto stored = Model::load(dir_);
    HybridCache cache2 = stored->new_cache();
    stored->forward(ids, 4, cache2, stored_logits.data());
  }
  auto memory = Model::load(dir_, WeightFormat::Q8, WeightPlacement::Memory);
  fs::resize_file(dir_ + "/model.safetensors", 0);
  HybridCache cache = memory->new_cache();
  memory->forward(ids, 4, cache, memory_logits.data());
  EXPECT_EQ(std::memcmp(mapped_logits.data(), memory_logits.data(), mapped_logits.size() * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(stored_logits.data(), memory_logits.data(), stored_logits.size() * sizeof(float)), 0)
      << "q8 logits identical to the unquantized ones: the weights were not quantized";
}

// Model::random with q8 quantizes random bf16 weights and frees them; the JetBlock gate projections,
// which q8 keeps in bf16, must have been copied out first. Memory handed out and overwritten after
// the model is made must not change its logits (before the fix: a use after free, which gave NaN
// logits and an invalid greedy token on the GPU).
TEST(RandomModel, Q8OwnsTheMatricesItKeepsInBf16) {
  const ModelConfig config = test::small_q8_jet_config(300);
  const auto model = Model::random(config, DType::I8, 17);
  const int32_t ids[] = {3, 141, 59, 26, 5};
  const auto logits = [&] {
    std::vector<float> out(size_t(5 * config.vocab));
    HybridCache cache = model->new_cache();
    model->forward(ids, 5, cache, out.data());
    return out;
  };
  const std::vector<float> first = logits();
  // Allocations of the matrices' sizes (a gate projection is 2 x 256 bf16 = 1 KB), filled with
  // 0xFF bytes (NaN as bf16 and float32).
  std::vector<HostBytes> churn;
  for (size_t bytes = 64; bytes <= (size_t(1) << 20); bytes *= 2)
    for (int i = 0; i < 32; ++i) {
      churn.push_back(allocate_host_bytes(bytes, false));
      std::memset(churn.back().get(), 0xFF, bytes);
    }
  const std::vector<float> second = logits();
  for (float v : first) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)), 0);
}

TEST(HostMemory, SmallAndHugePageBuffers) {
  for (size_t n : {size_t(0), size_t(100), size_t(3) << 20, (size_t(2) << 20) + 1}) {
    HostBytes b = allocate_host_bytes(n, /*huge_pages=*/n % 2 == 1);
    ASSERT_NE(b.get(), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.get()) % 64, 0u) << n;
    // Buffers that get their own mapping start on a 2 MiB boundary, so all their pages can be huge.
    if (n >= (size_t(2) << 20)) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(b.get()) % (size_t(2) << 20), 0u) << n;
    }
    if (n > 0) {
      std::memset(b.get(), 0xab, n);  // every byte writable (ASan checks the heap ones)
      EXPECT_EQ(b[n - 1], 0xab);
    }
  }
}

TEST_F(BadInput, MissingFiles) {
  EXPECT_HAS(error_of([&] { Model::load(dir_ + "/nope"); }), "not a directory");
  fs::remove(dir_ + "/model.safetensors");
  EXPECT_HAS(load_error(), "no weights found");
  fs::remove(dir_ + "/config.json");
  EXPECT_HAS(load_error(), "config.json");
}

TEST_F(BadInput, TruncatedWeights) {
  const std::string path = dir_ + "/model.safetensors";
  const auto size = fs::file_size(path);
  fs::resize_file(path, size / 2);
  const std::string err = load_error();
  EXPECT_HAS(err, "model.safetensors");
  EXPECT_HAS(err, "truncated");
  fs::resize_file(path, 5);
  EXPECT_HAS(load_error(), "expected at least 8");
  fs::resize_file(path, 0);
  EXPECT_HAS(load_error(), "expected at least 8");
}

TEST_F(BadInput, HeaderNotJson) {
  test::write_raw_safetensors(dir_ + "/model.safetensors", "{not json", 16);
  EXPECT_HAS(load_error(), "header is not valid JSON");
  test::write_raw_safetensors(dir_ + "/model.safetensors", "[1, 2]", 16);
  EXPECT_HAS(load_error(), "not an object");
  std::string huge_len(8, '\xff');
  test::write_text(dir_ + "/model.safetensors", huge_len + "{}");
  EXPECT_HAS(load_error(), "exceeds the 100 MB limit");
}

TEST_F(BadInput, OffsetsOutOfRangeOrOverlapping) {
  test::write_raw_safetensors(dir_ + "/model.safetensors",
                              R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8);
  EXPECT_HAS(load_error(), "beyond the data region");
  test::write_raw_safetensors(dir_ + "/model.safetensors",
                              R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                  "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", 16);
  EXPECT_HAS(load_error(), "overlap");
  test::write_raw_safetensors(dir_ + "/model.safetensors",
                              R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})", 16);
  EXPECT_HAS(load_error(), "expected 12");
  test::write_raw_safetensors(dir_ + "/model.safetensors",
                              R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}})", 16);
  EXPECT_HAS(load_error(), "begin after end");
  test::write_raw_safetensors(dir_ + "/model.safetensors",
                              R"({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})", 16);
  EXPECT_HAS(load_error(), "non-negative");
  test::write_raw_safetensors(dir_ + "/model.safetensors",
                              R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 16]}})", 16);
  EXPECT_HAS(load_error(), "too large");
}

TEST_F(BadInput, UnknownDtype) {
  test::write_raw_safetensors(dir_ + "/model.safetensors",
                              R"({"a": {"dtype": "Q4_K", "shape": [4], "data_offsets": [0, 16]}})", 16);
  const std::string err = load_error();
  EXPECT_HAS(err, "tensor 'a'");
  EXPECT_HAS(err, "unknown dtype 'Q4_K'");
}

// Rewrites model.safetensors with one tensor changed by `edit` (or dropped when it returns false).
void rewrite_weights(const std::string& dir, const std::string& target,
                     const std::function<bool(TensorToWrite&)>& edit, bool add_extra = false) {
  const std::string path = dir + "/model.safetensors";
  std::vector<std::vector<uint8_t>> storage;
  std::vector<TensorToWrite> tensors;
  {
    SafetensorsFile file(path);
    for (const TensorInfo& info : file.header().tensors) {
      storage.emplace_back(file.tensor_data(info), file.tensor_data(info) + (info.end - info.begin));
      TensorToWrite t{info.name, info.dtype, info.shape, storage.back().data()};
      if (info.name == target && !edit(t)) continue;
      tensors.push_back(t);
    }
  }
  static std::vector<float> extra(4, 0.0f);
  if (add_extra) tensors.push_back({"model.layers.0.self_attn.surprise", DType::F32, {4}, extra.data()});
  write_safetensors(path, tensors, {}, /*overwrite=*/true);
}

TEST_F(BadInput, MissingTensor) {
  rewrite_weights(dir_, "model.layers.0.self_attn.A_log", [](TensorToWrite&) { return false; });
  const std::string err = load_error();
  EXPECT_HAS(err, "tensor 'model.layers.0.self_attn.A_log' is missing");
  EXPECT_HAS(err, "[2]");
}

TEST_F(BadInput, WrongShape) {
  static std::vector<float> data(64 * 32, 0.0f);
  rewrite_weights(dir_, "model.layers.1.self_attn.q_proj.weight", [](TensorToWrite& t) {
    t.shape = {64, 32};
    t.data = data.data();
    return true;
  });
  const std::string err = load_error();
  EXPECT_HAS(err, "model.layers.1.self_attn.q_proj.weight");
  EXPECT_HAS(err, "has shape [64, 32], expected [32, 32]");
}

TEST_F(BadInput, WrongDtype) {
  rewrite_weights(dir_, "model.norm.weight", [](TensorToWrite& t) {
    t.dtype = DType::I32;
    return true;
  });
  EXPECT_HAS(load_error(), "has dtype I32, expected BF16, F16 or F32");
}

TEST_F(BadInput, UnexpectedTensor) {
  rewrite_weights(dir_, "", [](TensorToWrite&) { return true; }, /*add_extra=*/true);
  EXPECT_HAS(load_error(), "unexpected tensor 'model.layers.0.self_attn.surprise'");
}

TEST_F(BadInput, BadConfigFields) {
  auto config_error = [&](const std::function<void(json&)>& edit) {
    json c = test::tiny_jet_config();
    edit(c);
    test::write_text(dir_ + "/config.json", c.dump());
    return load_error();
  };
  EXPECT_HAS(config_error([](json& c) { c["layer_types"][1] = "mamba"; }), "layer_types[1]: unknown layer type \"mamba\"");
  EXPECT_HAS(config_error([](json& c) { c["model_type"] = "llama"; }), "unknown model type \"llama\"");
  EXPECT_HAS(config_error([](json& c) { c["hidden_size"] = "big"; }), "field 'hidden_size': expected an integer, got \"big\"");
  EXPECT_HAS(config_error([](json& c) { c["num_key_value_heads"] = 3; }), "must be a multiple of num_key_value_heads");
  EXPECT_HAS(config_error([](json& c) { c.erase("vocab_size"); }), "field 'vocab_size' is missing");
  EXPECT_HAS(config_error([](json& c) { c["efficient_attention_config"]["jet"]["norm_eps"] = "tiny"; }), "field 'norm_eps'");
  EXPECT_HAS(config_error([](json& c) { c["efficient_attention_config"]["jet"]["expand_v"] = 1.3; }), "is not a positive integer");
  EXPECT_HAS(config_error([](json& c) { c["layer_types"].erase(0); }), "layer_types has 2 entries, expected num_hidden_layers = 3");
  EXPECT_HAS(config_error([](json& c) { c["efficient_attention_config"].erase("swa"); }), "field 'swa' is missing");
  EXPECT_HAS(config_error([](json& c) { c["rope_scaling"] = {{"type", "yarn"}}; }), "rope_scaling");
  test::write_text(dir_ + "/config.json", "{\"model_type\": ");
  EXPECT_HAS(load_error(), "not valid JSON");
}

TEST_F(BadInput, ShardIndexProblems) {
  test::write_text(dir_ + "/model.safetensors.index.json",
                   R"({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})");
  EXPECT_HAS(load_error(), "model-00001-of-00002.safetensors");
  test::write_text(dir_ + "/model.safetensors.index.json", R"({"weight_map": {"x": "../../etc/passwd"}})");
  EXPECT_HAS(load_error(), "plain file name");
  test::write_text(dir_ + "/model.safetensors.index.json", R"({"weights": {}})");
  EXPECT_HAS(load_error(), "weight_map");
}

TEST_F(BadInput, IdsOutOfRange) {
  auto model = Model::load(dir_);
  HybridCache cache = model->new_cache();
  const int32_t ids[] = {1, 50};
  EXPECT_HAS(error_of([&] { model->forward(ids, 2, cache, nullptr); }), "token id 50 at position 1 is out of range");
  EXPECT_EQ(cache.n_past(), 0);  // nothing changed
}

// `bench --json`: the issue's fields, and the bandwidth a run's roofline divides by is the higher
// of the samples taken before and after its decode.
TEST_F(BadInput, BenchJsonSamplesBandwidthAroundEachRun) {
  const test::CliResult r = test::run_cli("bench --model " + dir_ + " -p 3,5 -n 2 --threads 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto field = [](const std::string& line, const std::string& key) {
    const size_t at = line.find("\"" + key + "\": ");
    EXPECT_NE(at, std::string::npos) << key << " in " << line;
    return at == std::string::npos ? -1.0 : std::stod(line.substr(at + key.size() + 4));
  };
  std::istringstream lines(r.out);
  int runs = 0;
  for (std::string line; std::getline(lines, line);) {
    ++runs;
    for (const char* key : {"prompt_len", "gen_tokens", "batch", "prefill_tok_s", "decode_tok_s", "cache_bytes_per_seq",
                            "weight_bytes", "decode_roofline_frac"})
      EXPECT_GT(field(line, key), 0.0) << key;
    const double before = field(line, "mem_bw_before_gb_s"), after = field(line, "mem_bw_after_gb_s");
    EXPECT_GT(std::min(before, after), 0.0);
    EXPECT_NEAR(field(line, "mem_bw_gb_s"), std::max(before, after), 0.01);
  }
  EXPECT_EQ(runs, 2) << r.out;
}

// quantize --out onto a sharded checkpoint: refused without --force; with it the stale index must
// not survive (it did, and the loader followed it to shards that are not the new weights).
TEST_F(BadInput, QuantizeForceReplacesAShardedCheckpoint) {
  const std::string out = dir_ + "/q8";
  fs::create_directories(out);
  test::write_text(out + "/model.safetensors.index.json",
                   R"({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})");
  test::CliResult r = test::run_cli("quantize --model " + dir_ + " --out " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.err, "model.safetensors.index.json already exists");
  EXPECT_TRUE(fs::exists(out + "/model.safetensors.index.json"));
  r = test::run_cli("quantize --model " + dir_ + " --out " + out + " --force");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json"));
  EXPECT_NO_THROW(Model::load(out));
}

// `bench --dtype` only sets the dtype of random weights and `--weights` only applies to --model:
// each was once ignored without a word, and the table showed weights the user did not ask for.
TEST_F(BadInput, BenchRefusesAFlagForTheOtherWeightSource) {
  test::CliResult r = test::run_cli("bench --model " + dir_ + " --dtype q8 -p 3 -n 2 --threads 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.err, "jetlm: error: [--dtype]");
  r = test::run_cli("bench --config jet-nemotron-2b --random-weights --weights q8 -p 3 -n 2 --threads 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.err, "jetlm: error: [--weights]");
  r = test::run_cli("bench --model " + dir_ + " --weights q8 -p 3 -n 2 --threads 1 --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// An empty -p and a directory given as @FILE each get the error that says what is wrong with them.
TEST_F(BadInput, GenerateNamesAnEmptyPromptAndADirectoryPromptFile) {
  test::CliResult r = test::run_cli("generate --model " + dir_ + " -p \"\" -n 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.err, "[-p] the prompt is empty");
  r = test::run_cli("generate --model " + dir_ + " -p @" + dir_ + " -n 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.err, "is a directory, not a prompt file");
}

// Range checks on numeric flags say what was expected (CLI11's own message named a range from 0
// to DBL_MAX, which reads as if 0 were allowed).
TEST_F(BadInput, NumericFlagRangesSayWhatIsExpected) {
  test::CliResult r = test::run_cli("generate --model " + dir_ + " --prompt-ids 1 --chunk 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_HAS(r.err, "--chunk: expected a positive number, got '0'");
  r = test::run_cli("generate --model " + dir_ + " --prompt-ids 1 -n -2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_HAS(r.err, "--max-new: expected a number >= 0, got '-2'");
}

// Lengths beyond the context fail before the machine is measured and before any table is printed.
TEST_F(BadInput, BenchChecksLengthsBeforeMeasuring) {
  for (const std::string flags : {"-p 3,100000000 -n 2", "-p 3 -n 2 --depth 5,100000000"}) {
    const test::CliResult r = test::run_cli("bench --model " + dir_ + " --threads 1 " + flags);
    EXPECT_EQ(r.exit_code, 1) << flags;
    EXPECT_HAS(r.err, "exceed the context");
    EXPECT_EQ(r.out.find("machine:"), std::string::npos) << r.out;
  }
}

// The CLI turns each of these into one error line and exit status 1.
TEST_F(BadInput, CliReportsOneLineAndFails) {
  const std::string out = dir_ + "/logits.bin";
  EXPECT_EQ(test::run_cli("forward --model " + dir_ + " --ids 1,2,3 --logits-out " + out).exit_code, 0);
  EXPECT_EQ(fs::file_size(out), 3 * 50 * sizeof(float));
  test::CliResult r = test::run_cli("forward --model " + dir_ + " --ids 1,99 --logits-out " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.err, "jetlm: error: [--ids] token id 99 at position 1 is out of range");
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  r = test::run_cli("forward --model " + dir_ + " --ids 1,x --logits-out " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.err, "'x' is not an integer");
  r = test::run_cli("forward --model " + dir_ + "/missing --ids 1 --logits-out " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_HAS(r.err, "not a directory");
}

}  // namespace
}  // namespace jetlm
