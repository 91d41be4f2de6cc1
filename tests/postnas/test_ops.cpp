// The differentiable recurrences of src/postnas/ops.h: chunked == recurrent (gated delta rule and
// GLA), both against the engine's plain reference ops (backend/reference: written from SPEC.md,
// independent of libtorch), strong decays, state carried across calls, and gradients of the
// chunked forms and the convolutions against central finite differences in float64.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <vector>

#include "backend/ops.h"
#include "postnas/ops.h"

namespace jetlm::postnas {
namespace {

// max |a - b| / max |b|
double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  const auto ad = a.detach().to(torch::kDouble), bd = b.detach().to(torch::kDouble);
  return (ad - bd).abs().max().item<double>() / std::max(bd.abs().max().item<double>(), 1e-300);
}

struct GdrInputs {
  torch::Tensor q, k, v, g, beta;
};

// Random delta-rule inputs [B, T, H, *]: q, k L2-normalised (q scaled), log-decays in [g_min, 0].
GdrInputs gdr_inputs(int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv, double g_min,
                     torch::ScalarType dt = torch::kFloat) {
  const auto o = torch::TensorOptions().dtype(dt);
  GdrInputs in;
  in.q = l2_norm(torch::randn({B, T, H, dk}, o), 1.0 / std::sqrt(double(dk)));
  in.k = l2_norm(torch::randn({B, T, H, dk}, o));
  in.v = torch::randn({B, T, H, dv}, o);
  in.g = torch::rand({B, T, H}, o) * g_min;
  in.beta = torch::rand({B, T, H}, o);
  return in;
}

TEST(PostnasOps, ChunkedGatedDeltaRuleEqualsRecurrent) {
  torch::manual_seed(1);
  for (int64_t T : {1, 5, 64, 150}) {
    for (double g_min : {-0.1, -3.0}) {
      const GdrInputs in = gdr_inputs(2, T, 3, 8, 12, g_min);
      const auto chunked = gated_delta_rule_chunked(in.q, in.k, in.v, in.g, in.beta);
      const auto recurrent = gated_delta_rule_recurrent(in.q, in.k, in.v, in.g, in.beta);
      ASSERT_EQ(chunked.o.sizes(), (std::vector<int64_t>{2, T, 3, 12}));
      ASSERT_EQ(chunked.state.sizes(), (std::vector<int64_t>{2, 3, 8, 12}));
      EXPECT_LE(rel_err(chunked.o, recurrent.o), 1e-5) << "T " << T << " g_min " << g_min;
      EXPECT_LE(rel_err(chunked.state, recurrent.state), 1e-5) << "T " << T << " g_min " << g_min;
    }
  }
}

// The recurrent form against the engine's plain float64-accumulating reference op.
TEST(PostnasOps, RecurrentGatedDeltaRuleMatchesEngineReference) {
  torch::manual_seed(2);
  const int64_t T = 70, H = 2, dk = 6, dv = 5;
  const GdrInputs in = gdr_inputs(1, T, H, dk, dv, -2.0);
  const auto ours = gated_delta_rule_recurrent(in.q, in.k, in.v, in.g, in.beta);
  std::vector<float> S(size_t(H * dk * dv), 0.0f), o(size_t(T * H * dv));
  auto ptr = [](const torch::Tensor& t) { return t.contiguous().data_ptr<float>(); };
  const torch::Tensor q = in.q.contiguous(), k = in.k.contiguous(), v = in.v.contiguous(), g = in.g.contiguous(),
                      beta = in.beta.contiguous();
  ref::gdn_recurrent(ptr(q), ptr(k), ptr(v), ptr(g), ptr(beta), T, H, dk, dv, S.data(), o.data());
  const torch::Tensor expected_o = torch::from_blob(o.data(), {1, T, H, dv}).clone();
  const torch::Tensor expected_S = torch::from_blob(S.data(), {1, H, dk, dv}).clone();
  EXPECT_LE(rel_err(ours.o, expected_o), 1e-5);
  EXPECT_LE(rel_err(ours.state, expected_S), 1e-5);
}

// Decays of -50 per token (sums over a chunk near -3000): no inf/nan, same as recurrent.
TEST(PostnasOps, ChunkedGatedDeltaRuleStrongDecay) {
  torch::manual_seed(3);
  const GdrInputs in = gdr_inputs(1, 130, 2, 8, 8, -50.0);
  const auto chunked = gated_delta_rule_chunked(in.q, in.k, in.v, in.g, in.beta);
  const auto recurrent = gated_delta_rule_recurrent(in.q, in.k, in.v, in.g, in.beta);
  ASSERT_TRUE(torch::isfinite(chunked.o).all().item<bool>());
  EXPECT_LE(rel_err(chunked.o, recurrent.o), 1e-5);
  // Gradients stay finite too.
  GdrInputs leaf = in;
  leaf.g = in.g.clone().requires_grad_(true);
  gated_delta_rule_chunked(leaf.q, leaf.k, leaf.v, leaf.g, leaf.beta).o.sum().backward();
  EXPECT_TRUE(torch::isfinite(leaf.g.grad()).all().item<bool>());
}

// Splitting a sequence in two calls with the state carried gives the one-call result.
TEST(PostnasOps, ChunkedGatedDeltaRuleCarriesState) {
  torch::manual_seed(4);
  const GdrInputs in = gdr_inputs(2, 100, 2, 8, 4, -1.0);
  const auto whole = gated_delta_rule_chunked(in.q, in.k, in.v, in.g, in.beta);
  auto part = [&](const torch::Tensor& x, int64_t a, int64_t n) { return x.narrow(1, a, n); };
  const auto first = gated_delta_rule_chunked(part(in.q, 0, 37), part(in.k, 0, 37), part(in.v, 0, 37),
                                              part(in.g, 0, 37), part(in.beta, 0, 37));
  const auto second = gated_delta_rule_chunked(part(in.q, 37, 63), part(in.k, 37, 63), part(in.v, 37, 63),
                                               part(in.g, 37, 63), part(in.beta, 37, 63), first.state);
  EXPECT_LE(rel_err(torch::cat({first.o, second.o}, 1), whole.o), 1e-5);
  EXPECT_LE(rel_err(second.state, whole.state), 1e-5);
}

TEST(PostnasOps, ChunkedGlaEqualsRecurrent) {
  torch::manual_seed(5);
  for (int64_t T : {1, 16, 45}) {
    const auto q = torch::randn({2, T, 2, 6}) * 0.4, k = torch::randn({2, T, 2, 6}), v = torch::randn({2, T, 2, 5});
    const auto gk = torch::log_sigmoid(torch::randn({2, T, 2, 6}) * 3) / 4;
    const auto chunked = gla_chunked(q, k, v, gk);
    const auto recurrent = gla_recurrent(q, k, v, gk);
    EXPECT_LE(rel_err(chunked.o, recurrent.o), 1e-5) << "T " << T;
    EXPECT_LE(rel_err(chunked.state, recurrent.state), 1e-5) << "T " << T;
  }
}

// Plain loops from SPEC.md: kernel tap i multiplies u[t-K+1+i], zeros before t = 0.
TEST(PostnasOps, DynamicConvMatchesEngineReference) {
  torch::manual_seed(6);
  const int64_t T = 9, C = 5, K = 4;
  const torch::Tensor u = torch::randn({1, T, C}), kernel = torch::randn({1, T, C, K});
  const torch::Tensor ours = dynamic_conv(u, kernel);
  std::vector<float> state(size_t((K - 1) * C), 0.0f), v(size_t(T * C));
  ref::dconv(u.contiguous().data_ptr<float>(), kernel.contiguous().data_ptr<float>(), T, C, K, state.data(), v.data());
  EXPECT_LE(rel_err(ours, torch::from_blob(v.data(), {1, T, C}).clone()), 1e-6);
}

// The static short conv equals torch's depthwise conv1d with left padding, then silu.
TEST(PostnasOps, ShortConvMatchesConv1d) {
  torch::manual_seed(7);
  const torch::Tensor x = torch::randn({2, 11, 6}), w = torch::randn({6, 1, 4});
  const torch::Tensor conv = torch::conv1d(x.transpose(1, 2), w, {}, 1, 3, 1, 6).narrow(2, 0, 11).transpose(1, 2);
  EXPECT_LE(rel_err(short_conv(x, w), torch::silu(conv)), 1e-6);
}

// Central finite differences of L = sum(f(inputs) * R) against autograd, every input entry.
void check_gradients(const std::vector<torch::Tensor>& inputs,
                     const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>& f, double tol) {
  std::vector<torch::Tensor> leaves;
  for (const auto& x : inputs) leaves.push_back(x.detach().clone().requires_grad_(true));
  const torch::Tensor R = torch::randn_like(f(leaves)).detach();
  (f(leaves) * R).sum().backward();
  const double h = 1e-6;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < leaves.size(); ++i) {
    const torch::Tensor analytic = leaves[i].grad().reshape(-1);
    torch::Tensor flat = leaves[i].detach().clone().reshape(-1);
    double max_err = 0, max_ref = 0;
    for (int64_t j = 0; j < flat.numel(); ++j) {
      std::vector<torch::Tensor> args;
      for (const auto& l : leaves) args.push_back(l.detach());
      const double x0 = flat[j].item<double>();
      flat[j] = x0 + h;
      args[i] = flat.view(leaves[i].sizes());
      const double plus = (f(args) * R).sum().item<double>();
      flat[j] = x0 - h;
      const double minus = (f(args) * R).sum().item<double>();
      flat[j] = x0;
      const double numeric = (plus - minus) / (2 * h);
      max_err = std::max(max_err, std::fabs(numeric - analytic[j].item<double>()));
      max_ref = std::max(max_ref, std::fabs(numeric));
    }
    EXPECT_LE(max_err / std::max(max_ref, 1e-12), tol) << "input " << i;
  }
}

TEST(PostnasOps, ChunkedGatedDeltaRuleGradients) {
  torch::manual_seed(8);
  // T = 10 with chunk 4: two full chunks and a partial one, the state crossing both boundaries.
  const GdrInputs in = gdr_inputs(1, 10, 2, 3, 4, -1.5, torch::kDouble);
  const torch::Tensor S0 = torch::randn({1, 2, 3, 4}, torch::kDouble) * 0.5;
  check_gradients({in.q, in.k, in.v, in.g, in.beta, S0},
                  [](const std::vector<torch::Tensor>& x) {
                    const auto r = gated_delta_rule_chunked(x[0], x[1], x[2], x[3], x[4], x[5], /*chunk=*/4);
                    return torch::cat({r.o.reshape(-1), r.state.reshape(-1)});
                  },
                  1e-6);
}

TEST(PostnasOps, ChunkedGlaGradients) {
  torch::manual_seed(9);
  const auto d = torch::kDouble;
  const torch::Tensor q = torch::randn({1, 7, 2, 3}, d), k = torch::randn({1, 7, 2, 3}, d), v = torch::randn({1, 7, 2, 2}, d);
  const torch::Tensor gk = -torch::rand({1, 7, 2, 3}, d);
  check_gradients({q, k, v, gk},
                  [](const std::vector<torch::Tensor>& x) {
                    const auto r = gla_chunked(x[0], x[1], x[2], x[3], {}, /*chunk=*/3);
                    return torch::cat({r.o.reshape(-1), r.state.reshape(-1)});
                  },
                  1e-6);
}

TEST(PostnasOps, ConvolutionGradients) {
  torch::manual_seed(10);
  const auto d = torch::kDouble;
  check_gradients({torch::randn({2, 6, 3}, d), torch::randn({2, 6, 3, 4}, d)},
                  [](const std::vector<torch::Tensor>& x) { return dynamic_conv(x[0], x[1]); }, 1e-6);
  check_gradients({torch::randn({1, 6, 3}, d), torch::randn({3, 1, 4}, d)},
                  [](const std::vector<torch::Tensor>& x) { return short_conv(x[0], x[1]); }, 1e-6);
}

}  // namespace
}  // namespace jetlm::postnas
