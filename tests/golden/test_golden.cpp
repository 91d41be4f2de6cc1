// Golden tests: the engine against the float64 PyTorch reference (tests/reference) on small
// random-weight checkpoints of every family and layer-kind mix. Each case is checked as one
// prefill, as chunked prefill of several chunk sizes, as prefill + token-by-token decode and
// with JetBlocks forced to the recurrent form: all must match the reference's logits (and, for
// the one-shot prefill, every layer's hidden state) within the case's tolerance.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "golden/golden_data.h"
#include "io/safetensors.h"
#include "jetlm/model.h"
#include "test_util.h"

namespace jetlm {
namespace {

using golden::Golden;
using golden::case_names;
using golden::golden_root;
using golden::read_golden;

class GoldenCase : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = golden_root() + "/" + GetParam();
    golden_ = read_golden(dir_);
    model_ = Model::load(dir_);
    ASSERT_FALSE(golden_.ids.empty());
    ASSERT_EQ(golden_.logits.size(), golden_.ids.size() * size_t(model_->config().vocab));
    ASSERT_GT(golden_.tolerance, 0.0);
  }

  // Runs prefill in chunks of `chunk` for the first `prefill` ids, then decodes the rest.
  std::vector<float> run(int64_t chunk, int64_t prefill, bool recurrent = false) {
    const int64_t n = int64_t(golden_.ids.size()), vocab = model_->config().vocab;
    std::vector<float> logits(size_t(n * vocab));
    HybridCache cache = model_->new_cache();
    ForwardOptions options;
    options.recurrent_jet = recurrent;
    for (int64_t t0 = 0; t0 < prefill; t0 += chunk) {
      const int64_t len = std::min(chunk, prefill - t0);
      model_->forward(golden_.ids.data() + t0, len, cache, logits.data() + t0 * vocab, options);
    }
    for (int64_t t = prefill; t < n; ++t)
      model_->forward(golden_.ids.data() + t, 1, cache, logits.data() + t * vocab, options);
    EXPECT_EQ(cache.n_past(), n);
    return logits;
  }

  std::string dir_;
  Golden golden_;
  std::unique_ptr<Model> model_;
};

TEST_P(GoldenCase, OnePrefillMatchesLogitsAndHiddenStates) {
  const int64_t n = int64_t(golden_.ids.size()), vocab = model_->config().vocab;
  std::vector<float> logits(size_t(n * vocab));
  std::map<int, std::vector<float>> hidden;
  ForwardOptions options;
  options.observer = [&](const char* name, int layer, const float* data, int64_t rows, int64_t cols) {
    if (std::string(name) == "hidden") hidden[layer].assign(data, data + rows * cols);
  };
  HybridCache cache = model_->new_cache();
  model_->forward(golden_.ids.data(), n, cache, logits.data(), options);
  const double err = test::normalized_error(logits, golden_.logits);
  EXPECT_LE(err, golden_.tolerance) << "logits";
  ASSERT_EQ(golden_.hidden.size(), size_t(model_->config().n_layers)) << "golden lacks hidden states";
  for (const auto& [layer, expected] : golden_.hidden)
    EXPECT_LE(test::normalized_error(hidden[layer], expected), golden_.tolerance) << "hidden." << layer;
  std::printf("  %s: one prefill, logits error %.2e (tolerance %.0e)\n", GetParam().c_str(), err, golden_.tolerance);
}

TEST_P(GoldenCase, ChunkedPrefillMatches) {
  const int64_t n = int64_t(golden_.ids.size());
  for (int64_t chunk : {1, 7, 63, 64, 100}) {
    const double err = test::normalized_error(run(chunk, n), golden_.logits);
    EXPECT_LE(err, golden_.tolerance) << "chunk " << chunk;
  }
}

TEST_P(GoldenCase, PrefillThenDecodeMatches) {
  const int64_t n = int64_t(golden_.ids.size());
  for (int64_t decode_from : {int64_t(0), int64_t(1), int64_t(50), n - 1}) {
    const double err = test::normalized_error(run(std::max<int64_t>(decode_from, 1), decode_from), golden_.logits);
    EXPECT_LE(err, golden_.tolerance) << "decode from " << decode_from;
  }
}

TEST_P(GoldenCase, RecurrentJetMatches) {
  const int64_t n = int64_t(golden_.ids.size());
  EXPECT_LE(test::normalized_error(run(n, n, /*recurrent=*/true), golden_.logits), golden_.tolerance);
}

TEST_P(GoldenCase, SnapshotRestoreReplaysExactly) {
  const int64_t n = int64_t(golden_.ids.size()), vocab = model_->config().vocab;
  const int64_t split = n / 2;
  HybridCache cache = model_->new_cache();
  std::vector<float> first(size_t((n - split) * vocab)), second(first.size());
  model_->forward(golden_.ids.data(), split, cache, nullptr);
  const HybridCache::Snapshot snap = cache.snapshot();
  model_->forward(golden_.ids.data() + split, n - split, cache, first.data());
  cache.restore(snap);
  model_->forward(golden_.ids.data() + split, n - split, cache, second.data());
  EXPECT_EQ(first, second);
}

TEST_P(GoldenCase, GreedyContinuationMatchesReference) {
  if (golden_.greedy_tokens.empty()) GTEST_SKIP() << "no greedy golden for this case (bf16/f16 ties)";
  const int64_t vocab = model_->config().vocab;
  HybridCache cache = model_->new_cache();
  std::vector<float> logits(static_cast<size_t>(vocab));
  ForwardOptions last_only;
  last_only.all_logits = false;
  model_->forward(golden_.greedy_prompt.data(), int64_t(golden_.greedy_prompt.size()), cache, logits.data(), last_only);
  std::vector<int32_t> generated;
  for (size_t i = 0; i < golden_.greedy_tokens.size(); ++i) {
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    generated.push_back(next);
    model_->forward(&next, 1, cache, logits.data(), last_only);
  }
  EXPECT_EQ(generated, golden_.greedy_tokens);
}

// 8-bit weights (quantized at load time) stay close to the reference: the error is what rounding
// the weights to 8 bits costs, reported for the closing notes and bounded loosely. The tiny random
// models are sensitive (sharp attention): rounding jet_mix_f32's weights to bf16 alone moves its
// logits by 4% of their range (float64 reference), and q8's steps are about 2-3x coarser.
TEST_P(GoldenCase, Q8WeightsStayClose) {
  const auto q8 = Model::load(dir_, WeightFormat::Q8);
  const int64_t n = int64_t(golden_.ids.size()), vocab = q8->config().vocab;
  std::vector<float> prefill(size_t(n * vocab)), decode(size_t(n * vocab));
  HybridCache cache = q8->new_cache();
  q8->forward(golden_.ids.data(), n, cache, prefill.data());
  HybridCache cache2 = q8->new_cache();
  q8->forward(golden_.ids.data(), n / 2, cache2, decode.data());
  for (int64_t t = n / 2; t < n; ++t) q8->forward(golden_.ids.data() + t, 1, cache2, decode.data() + t * vocab);
  const double err_prefill = test::normalized_error(prefill, golden_.logits);
  const double err_decode = test::normalized_error(decode, golden_.logits);
  std::printf("  %s: q8 logits error %.2e (prefill), %.2e (half decoded)\n", GetParam().c_str(), err_prefill, err_decode);
  EXPECT_LT(err_prefill, 0.2);
  EXPECT_LT(err_decode, 0.2);
  EXPECT_LT(q8->weight_bytes(), model_->weight_bytes());
}

INSTANTIATE_TEST_SUITE_P(Goldens, GoldenCase, ::testing::ValuesIn(case_names()),
                         [](const auto& info) { return info.param; });

TEST(Goldens, CasesArePresent) {
  // Guards against a silently empty suite: the committed goldens cover every layer kind mix.
  EXPECT_GE(case_names().size(), 5u) << "expected golden cases under " << golden_root();
}

}  // namespace
}  // namespace jetlm
