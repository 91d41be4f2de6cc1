// Training through the hybrid model: every parameter of every block kind receives a finite,
// non-zero gradient, and one optimizer step on a tiny batch lowers the loss on that batch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "postnas/checkpoint.h"
#include "postnas/model.h"

namespace jetlm::postnas {
namespace {

ModelSpec all_blocks_spec() {
  return parse_model_spec(nlohmann::ordered_json::parse(R"({
    "model_type": "jet_nemotron", "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 5,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 61, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "tie_word_embeddings": false,
    "layer_types": ["jet", "attn", "swa", "gdn", "gla"],
    "efficient_attention_config": {"jet": {"num_heads": 2, "head_dim": 8, "expand_v": 1.5, "conv_size": 4,
      "dconv_generator_reduction": 4, "norm_eps": "1e-5"}, "swa": {"window_size": 6}}})"),
                          {}, "test");
}

torch::Tensor lm_loss(HybridModelImpl& model, const torch::Tensor& tokens) {
  const int64_t T = tokens.size(1) - 1;
  const torch::Tensor logits = model.forward(tokens.narrow(1, 0, T));
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                             tokens.narrow(1, 1, T).reshape(-1));
}

TEST(PostnasTrain, EveryParameterGetsAGradient) {
  torch::manual_seed(31);
  const ModelSpec spec = all_blocks_spec();
  HybridModel model(spec.config, spec.blocks);
  // 70 tokens: the chunked forms cross a chunk boundary.
  const torch::Tensor tokens = torch::randint(0, spec.config.vocab, {2, 71}, torch::kLong);
  lm_loss(*model, tokens).backward();
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
    EXPECT_GT(p.value().grad().abs().max().item<double>(), 0.0) << p.key();
  }
}

TEST(PostnasTrain, OneAdamWStepLowersTheLoss) {
  torch::manual_seed(32);
  const ModelSpec spec = all_blocks_spec();
  HybridModel model(spec.config, spec.blocks);
  const torch::Tensor tokens = torch::randint(0, spec.config.vocab, {4, 33}, torch::kLong);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(3e-3).weight_decay(0.0));
  const double before = lm_loss(*model, tokens).item<double>();
  // A random-init model predicts close to uniform: the loss starts near log(vocab).
  EXPECT_NEAR(before, std::log(double(spec.config.vocab)), 0.3);
  opt.zero_grad();
  lm_loss(*model, tokens).backward();
  opt.step();
  const double after = lm_loss(*model, tokens).item<double>();
  std::printf("  loss before %.4f, after one AdamW step %.4f\n", before, after);
  EXPECT_LT(after, before - 1e-3);
}

}  // namespace
}  // namespace jetlm::postnas
