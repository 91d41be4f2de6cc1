// Generation: stop strings across token boundaries, `jetlm generate` against the reference's greedy
// continuation on the golden checkpoints, seeded sampling, context overflow, and an end-to-end text
// run (tokenizer + chat template + cache reuse in `jetlm chat`) on a tiny random model with the real
// Jet-Nemotron vocabulary.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "jetlm/text_generation.h"
#include "model_files.h"
#include "test_util.h"

namespace jetlm {
namespace {

namespace fs = std::filesystem;

// Feeds `text` to a filter in pieces cut at the given positions; returns everything emitted.
std::string filter_in_pieces(StopStringFilter& filter, const std::string& text, const std::vector<size_t>& cuts) {
  std::string out;
  size_t begin = 0;
  for (size_t cut : cuts) {
    out += filter.push(std::string_view(text).substr(begin, cut - begin));
    begin = cut;
  }
  out += filter.push(std::string_view(text).substr(begin));
  out += filter.flush();
  return out;
}

TEST(StopStrings, FoundAcrossEveryWayOfCuttingTheText) {
  const std::string text = "The answer is 42.\nUser: next question";
  std::mt19937 rng(3);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i < text.size(); ++i)
      if (rng() % 3 == 0) cuts.push_back(i);
    StopStringFilter filter({"\nUser:", "never appears"});
    EXPECT_EQ(filter_in_pieces(filter, text, cuts), "The answer is 42.");
    EXPECT_TRUE(filter.stopped());
    EXPECT_EQ(filter.matched(), "\nUser:");
  }
}

TEST(StopStrings, HeldBackTextIsReleasedWhenItIsNotAStop) {
  StopStringFilter filter({"</s>"});
  EXPECT_EQ(filter.push("a <"), "a ");   // "<" might begin "</s>"
  EXPECT_EQ(filter.push("/"), "");
  EXPECT_EQ(filter.push("x>"), "</x>");  // it did not
  EXPECT_EQ(filter.push("<"), "");
  EXPECT_EQ(filter.flush(), "<");        // end of generation: the tail was text after all
  EXPECT_FALSE(filter.stopped());
}

TEST(StopStrings, EarliestOfSeveralWinsAndNothingAfterIsEmitted) {
  StopStringFilter filter({"BB", "AB"});
  EXPECT_EQ(filter.push("xxAB BB tail"), "xx");
  EXPECT_EQ(filter.matched(), "AB");
  EXPECT_EQ(filter.push("more"), "");
  EXPECT_EQ(filter.flush(), "");
}

TEST(StopStrings, EmptyStopStringIsRejected) {
  EXPECT_THROW(StopStringFilter({""}), Error);
}

std::string golden_dir(const std::string& name) { return test::source_dir() + "/tests/golden/data/" + name; }

std::vector<int32_t> golden_ids(const std::string& name, const std::string& tensor) {
  SafetensorsFile file(golden_dir(name) + "/golden.safetensors");
  const TensorInfo* info = file.find(tensor);
  if (info == nullptr) return {};
  std::vector<int32_t> out(size_t(info->numel()));
  std::memcpy(out.data(), file.tensor_data(*info), out.size() * sizeof(int32_t));
  return out;
}

std::string join(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

// `jetlm generate --temp 0` continues each golden prompt exactly as the float64 reference does.
TEST(GenerateCli, GreedyEqualsReferenceOnGoldens) {
  int checked = 0;
  for (const char* name : {"jet_mix_f32", "jet_strong_decay_f32", "qwen2_f32", "qwen3_f32"}) {
    const std::vector<int32_t> prompt = golden_ids(name, "greedy.prompt");
    const std::vector<int32_t> expected = golden_ids(name, "greedy.tokens");
    if (expected.empty()) continue;
    const test::CliResult r = test::run_cli("generate --model " + golden_dir(name) + " --prompt-ids " + join(prompt) +
                                            " --output-ids --temp 0 --ignore-eos -n " + std::to_string(expected.size()));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, join(expected) + "\n") << name;
    EXPECT_NE(r.err.find("decode"), std::string::npos) << "speed report on stderr: " << r.err;
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

TEST(GenerateCli, SeedReproducesTheSample) {
  // qwen3_f32's logits span a few units, so temperature 1.5 leaves many tokens likely.
  const std::string base = "generate --model " + golden_dir("qwen3_f32") +
                           " --prompt-ids 1,2,3,4 --output-ids --ignore-eos -n 32 --temp 1.5 --top-k 0 --top-p 1 --min-p 0";
  const test::CliResult a = test::run_cli(base + " --seed 7"), b = test::run_cli(base + " --seed 7"),
                        c = test::run_cli(base + " --seed 8");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);  // 32 draws from a flat distribution over 256 tokens: equal only by a freak chance
}

class GenerateCliDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path().string() + "/jetlm_generate_" + std::to_string(::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(GenerateCliDir, PromptLongerThanContextIsAnErrorUnlessTruncationIsAsked) {
  for (const char* f : {"model.safetensors", "config.json"})
    fs::copy_file(golden_dir("qwen2_f32") + "/" + f, dir_ + "/" + f);
  std::string config = read_text_file(dir_ + "/config.json");
  const size_t at = config.find("\"max_position_embeddings\": 4096");
  ASSERT_NE(at, std::string::npos);
  config.replace(at, 31, "\"max_position_embeddings\": 12");
  test::write_text(dir_ + "/config.json", config);
  const std::string ids = "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15";
  test::CliResult r = test::run_cli("generate --model " + dir_ + " --prompt-ids " + ids + " --output-ids -n 4 --temp 0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("15 tokens do not fit the model's context of 12"), std::string::npos) << r.err;
  r = test::run_cli("generate --model " + dir_ + " --prompt-ids " + ids +
                    " --output-ids -n 4 --temp 0 --ignore-eos --context-overflow truncate");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("truncated to its last 8"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), ','), 3) << r.out;  // 8 + 4 = the context
  // Generation that reaches the context ends with finish reason "context", never past it.
  r = test::run_cli("generate --model " + dir_ + " --prompt-ids 1,2,3 --output-ids -n 50 --temp 0 --ignore-eos");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), ','), 8) << r.out;  // 3 + 9 = 12
  EXPECT_NE(r.err.find("| context]"), std::string::npos) << r.err;
}

// Without --ignore-eos, greedy generation ends before the config's eos_token_id; here the eos id is
// set to the first of the reference's greedy tokens not seen before it, so the output is the prefix.
TEST_F(GenerateCliDir, StopsAtEndOfSequence) {
  for (const char* f : {"model.safetensors", "config.json"})
    fs::copy_file(golden_dir("jet_mix_f32") + "/" + f, dir_ + "/" + f);
  const std::vector<int32_t> prompt = golden_ids("jet_mix_f32", "greedy.prompt");
  const std::vector<int32_t> greedy = golden_ids("jet_mix_f32", "greedy.tokens");
  size_t stop = 1;
  while (stop < greedy.size() && std::find(greedy.begin(), greedy.begin() + int64_t(stop), greedy[stop]) !=
                                     greedy.begin() + int64_t(stop))
    ++stop;
  ASSERT_LT(stop, greedy.size()) << "the greedy continuation repeats one token";
  std::string config = read_text_file(dir_ + "/config.json");
  const size_t at = config.find("\"eos_token_id\": 2");
  ASSERT_NE(at, std::string::npos);
  config.replace(at, 17, "\"eos_token_id\": " + std::to_string(greedy[stop]));
  test::write_text(dir_ + "/config.json", config);
  const test::CliResult r = test::run_cli("generate --model " + dir_ + " --prompt-ids " + join(prompt) +
                                          " --output-ids --temp 0 -n 24");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, join(std::vector<int32_t>(greedy.begin(), greedy.begin() + int64_t(stop))) + "\n");
  EXPECT_NE(r.err.find("| stop]"), std::string::npos) << r.err;
}

TEST_F(GenerateCliDir, ModelWithoutTokenizerNeedsIds) {
  test::CliResult r = test::run_cli("generate --model " + golden_dir("qwen2_f32") + " -p hello");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no tokenizer"), std::string::npos) << r.err;
  r = test::run_cli("generate --model " + golden_dir("qwen2_f32") + " --prompt-ids 1,999 --output-ids");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("token id 999 at position 1 is out of range"), std::string::npos) << r.err;
  r = test::run_cli("generate --model " + golden_dir("qwen2_f32") + " --prompt-ids 1 --output-ids --top-p 1.5");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("top_p"), std::string::npos) << r.err;
}

// `jetlm quantize` writes a q8 checkpoint that loads as a model directory and gives exactly the
// logits of quantizing at load time; it never overwrites what is there.
TEST_F(GenerateCliDir, QuantizedCheckpointEqualsLoadTimeQuantization) {
  const std::string src = golden_dir("jet_mix_bf16_sharded"), out = dir_ + "/q8";
  test::CliResult r = test::run_cli("quantize --model " + src + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  EXPECT_LT(fs::file_size(out + "/model.safetensors"), fs::file_size(src + "/model-00001-of-00002.safetensors") +
                                                           fs::file_size(src + "/model-00002-of-00002.safetensors"));
  const std::string ids = "3,1,4,1,5,9,2,6,5,3,5,8,9,7,9";
  r = test::run_cli("forward --model " + out + " --ids " + ids + " --logits-out " + dir_ + "/a.bin");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("forward --model " + src + " --weights q8 --ids " + ids + " --logits-out " + dir_ + "/b.bin");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::slurp(dir_ + "/a.bin"), test::slurp(dir_ + "/b.bin"));
  r = test::run_cli("quantize --model " + src + " --out " + out);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  r = test::run_cli("forward --model " + src + " --weights q4 --ids 1 --logits-out " + dir_ + "/c.bin");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unknown weight format 'q4'"), std::string::npos) << r.err;
}

// A tiny random model that has the real Jet-Nemotron vocabulary, tokenizer and chat template.
class TextModel : public GenerateCliDir {
 protected:
  void SetUp() override {
    GenerateCliDir::SetUp();
    const std::string hf = test::shared_dir() + "/hf/jet-nemotron";
    if (!fs::exists(hf + "/tokenizer.json")) GTEST_SKIP() << "no " << hf;
    const test::CliResult r = test::run_cli(
        "random-model --config jet-nemotron-2b --out " + dir_ + " --tokenizer-from " + hf +
        " --set hidden_size=48 --set intermediate_size=64 --set num_hidden_layers=3 --set num_attention_heads=2"
        " --set 'layer_types=[\"jet\",\"attn\",\"swa\"]' --set max_position_embeddings=512"
        " --set 'efficient_attention_config={\"jet\":{\"conv_size\":4,\"dconv_generator_reduction\":4,"
        "\"expand_v\":2,\"head_dim\":16,\"num_heads\":2},\"swa\":{\"window_size\":16}}'");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
};

TEST_F(TextModel, StreamedTextIsTheDecodedIdsAndStopStringsCutIt) {
  const std::string base = "generate --model " + dir_ + " -p 'Hello, world' --temp 0 --ignore-eos -n 40";
  const test::CliResult text = test::run_cli(base);
  const test::CliResult ids = test::run_cli(base + " --output-ids");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  const test::CliResult decoded = test::run_cli("detokenize --model " + dir_ + " --ids " +
                                                ids.out.substr(0, ids.out.size() - 1));
  ASSERT_EQ(decoded.exit_code, 0) << decoded.err;
  EXPECT_EQ(text.out, decoded.out);
  // Stop at a piece of the greedy text that starts mid-way: output is exactly the text before it.
  if (text.out.size() >= 12) {
    const std::string stop = text.out.substr(text.out.size() / 2, 4);
    if (stop.find('\'') == std::string::npos && stop.find('\0') == std::string::npos) {
      const size_t first = text.out.find(stop);
      const test::CliResult cut = test::run_cli(base + " --stop '" + stop + "'");
      ASSERT_EQ(cut.exit_code, 0) << cut.err;
      EXPECT_EQ(cut.out, text.out.substr(0, first));
    }
  }
}

TEST_F(TextModel, ChatReusesTheCacheAcrossTurns) {
  const test::CliResult r = test::run_cli("chat --model " + dir_ + " --temp 0 -n 8",
                                          "Hi there\n/stats\nAnd a second question\n/stats\n/reset\n/stats\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("turns 1 |"), std::string::npos) << r.err;
  // The second turn continued the first turn's cache without a full re-prefill.
  const size_t second = r.err.find("turns 2 |");
  ASSERT_NE(second, std::string::npos) << r.err;
  const std::string stats = r.err.substr(second, r.err.find('\n', second) - second);
  EXPECT_NE(stats.find("full re-prefills 0"), std::string::npos) << stats;
  EXPECT_EQ(stats.find("tokens reused from the cache 0,"), std::string::npos) << stats;
  EXPECT_NE(r.err.find("conversation reset"), std::string::npos) << r.err;
}

// Without --model, generate and chat run the embedded default model (models/jet-postnas-tiny, the
// PostNAS export committed with jetlm); $JETLM_MODEL overrides it and a wrong one is named.
TEST(GenerateCli, DefaultModelIsTheEmbeddedHybrid) {
  const std::string dir = test::source_dir() + "/models/jet-postnas-tiny";
  ASSERT_TRUE(fs::exists(dir + "/config.json")) << dir;
  uint64_t bytes = 0;
  for (const auto& e : fs::directory_iterator(dir)) bytes += fs::file_size(e.path());
  EXPECT_LE(bytes, 25'000'000u) << "the embedded model must stay <= 25 MB";
  EXPECT_NE(test::slurp(dir + "/config.json").find("\"jet_nemotron\""), std::string::npos);

  ::unsetenv("JETLM_MODEL");
  const std::string args = " --prompt 'The kernel module' -n 8 --temp 0 --output-ids --threads 1";
  const test::CliResult implicit = test::run_cli("generate" + args);
  ASSERT_EQ(implicit.exit_code, 0) << implicit.err;
  const test::CliResult explicit_dir = test::run_cli("generate --model " + dir + args);
  ASSERT_EQ(explicit_dir.exit_code, 0) << explicit_dir.err;
  EXPECT_EQ(implicit.out, explicit_dir.out);
  EXPECT_EQ(std::count(implicit.out.begin(), implicit.out.end(), ','), 7) << implicit.out;

  const test::CliResult chat = test::run_cli("chat -n 4 --temp 0 --threads 1", "hello\n");
  EXPECT_EQ(chat.exit_code, 0) << chat.err;

  ::setenv("JETLM_MODEL", "/nonexistent/jetlm-model", 1);
  const test::CliResult bad = test::run_cli("generate" + args);
  ::unsetenv("JETLM_MODEL");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("/nonexistent/jetlm-model"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace jetlm
