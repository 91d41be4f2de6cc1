// Model::decode_batch against Model::forward: B sequences of different lengths (so different
// positions, KV lengths, SWA ring phases and JetBlock states) each take one token in a batched
// step; every row must equal the one-token forward of that sequence alone. Run over the golden
// checkpoints (tests/golden/data: attn, swa and jet layers, f32/bf16/f16 weights), and also
// checked against the float64 reference's logits where the golden file has them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "golden/golden_data.h"
#include "jetlm/model.h"
#include "test_util.h"

namespace jetlm {
namespace {

using golden::case_names;
using golden::golden_root;
using golden::read_golden;

// cpu::matmul takes the GEMV path for one row (BF16/F32 weights) and the packed GEMM path for
// several: the two sum in different orders, so rows agree to float32 rounding, not bit for bit.
// Measured on these checkpoints: <= 2.2e-6 normalised error; 1e-5 leaves room without hiding a
// real mistake (a wrong position, cache or state moves the logits by 1e-2 or more).
constexpr double kBatchTolerance = 1e-5;

class DecodeBatch : public ::testing::TestWithParam<std::string> {};

TEST_P(DecodeBatch, EachRowEqualsOneTokenForward) {
  const std::string dir = golden_root() + "/" + GetParam();
  const golden::Golden g = read_golden(dir);
  const auto model = Model::load(dir);
  const int64_t vocab = model->config().vocab, n = int64_t(g.ids.size());
  ASSERT_GE(n, 40);
  // Prefix lengths chosen to cross SWA windows and JetBlock chunk sizes differently; 0 is an empty
  // sequence (its first token). Each sequence b holds g.ids[0 .. len_b) and then decodes the next
  // golden id, so its logits are also the reference's row len_b.
  std::vector<int64_t> lengths = {0, 1, 5, 17, n / 2, n - 1};
  for (int64_t& len : lengths) len = std::min(len, n - 1);
  const int64_t B = int64_t(lengths.size());

  std::vector<HybridCache> batch_caches, single_caches;
  for (int64_t b = 0; b < B; ++b) {
    batch_caches.push_back(model->new_cache());
    single_caches.push_back(model->new_cache());
    if (lengths[size_t(b)] > 0) {
      model->forward(g.ids.data(), lengths[size_t(b)], batch_caches.back(), nullptr);
      model->forward(g.ids.data(), lengths[size_t(b)], single_caches.back(), nullptr);
    }
  }
  double max_err = 0;
  // Two steps, so the second runs on caches the batched step itself wrote.
  for (int step = 0; step < 2; ++step) {
    std::vector<int32_t> ids(static_cast<size_t>(B));
    std::vector<HybridCache*> caches(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t pos = lengths[size_t(b)] + step;
      ids[size_t(b)] = g.ids[size_t(std::min(pos, n - 1))];
      caches[size_t(b)] = &batch_caches[size_t(b)];
    }
    std::vector<float> batched(size_t(B * vocab));
    model->decode_batch(ids.data(), B, caches.data(), batched.data());
    for (int64_t b = 0; b < B; ++b) {
      std::vector<float> single(static_cast<size_t>(vocab));
      model->forward(&ids[size_t(b)], 1, single_caches[size_t(b)], single.data());
      EXPECT_EQ(batch_caches[size_t(b)].n_past(), single_caches[size_t(b)].n_past());
      const double err = test::normalized_error(batched.data() + b * vocab, single.data(), size_t(vocab));
      max_err = std::max(max_err, err);
      EXPECT_LE(err, kBatchTolerance) << "row " << b << " (length " << lengths[size_t(b)] << ", step " << step << ")";
      // Against the float64 reference: the first step's token is golden id `len`, so the
      // sequence is the golden prefix and its logits are the golden row `len`.
      if (step == 0) {
        const int64_t len = lengths[size_t(b)];
        const double ref_err =
            test::normalized_error(batched.data() + b * vocab, g.logits.data() + len * vocab, size_t(vocab));
        EXPECT_LE(ref_err, g.tolerance) << "row " << b << " vs reference (length " << len << ")";
      }
    }
  }
  std::printf("  %s: batched vs one-token forward, max error %.2e\n", GetParam().c_str(), max_err);
}

TEST_P(DecodeBatch, BadIdChangesNothing) {
  const auto model = Model::load(golden_root() + "/" + GetParam());
  HybridCache a = model->new_cache(), b = model->new_cache();
  const int32_t first = 3;
  model->forward(&first, 1, a, nullptr);
  HybridCache* caches[2] = {&a, &b};
  const int32_t ids[2] = {1, int32_t(model->config().vocab)};
  EXPECT_THROW(model->decode_batch(ids, 2, caches, nullptr), Error);
  EXPECT_EQ(a.n_past(), 1);
  EXPECT_EQ(b.n_past(), 0);
}

std::string case_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

INSTANTIATE_TEST_SUITE_P(Golden, DecodeBatch, ::testing::ValuesIn(case_names()), case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(DecodeBatch);

// `jetlm bench --batch B` on the CPU: B prompts prefilled, then decode_batch steps; tok/s count
// every sequence's tokens and the roofline adds each sequence's cache to the weights.
TEST(BenchCli, BatchedDecodeOnTheCpu) {
  const std::string dir = golden_root() + "/jet_mix_f32";
  const test::CliResult one = test::run_cli("bench --model " + dir + " -p 8 -n 3 --json --threads 1");
  const test::CliResult three = test::run_cli("bench --model " + dir + " -p 8 -n 3 --batch 3 --json --threads 1");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(three.exit_code, 0) << three.err;
  auto field = [](const std::string& json, const std::string& key) {
    const size_t at = json.find("\"" + key + "\": ");
    EXPECT_NE(at, std::string::npos) << key << " in " << json;
    return at == std::string::npos ? -1.0 : std::stod(json.substr(at + key.size() + 4));
  };
  EXPECT_EQ(field(one.out, "batch"), 1.0);
  EXPECT_EQ(field(three.out, "batch"), 3.0);
  EXPECT_GT(field(three.out, "decode_tok_s"), 0.0);
  EXPECT_GT(field(three.out, "prefill_tok_s"), 0.0);
  EXPECT_EQ(field(three.out, "cache_bytes_per_seq"), field(one.out, "cache_bytes_per_seq"));
  const test::CliResult too_long = test::run_cli("bench --model " + dir + " -p 100000 -n 3 --batch 2 --threads 1");
  EXPECT_NE(too_long.exit_code, 0);
  EXPECT_NE(too_long.err.find("--prompt-len"), std::string::npos) << too_long.err;
}

}  // namespace
}  // namespace jetlm
