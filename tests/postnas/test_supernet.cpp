// PostNAS step 1 on a tiny random teacher: the super-network's all-full placement is the teacher,
// the linear blocks start from the attention's projections, distillation trains only the linear
// blocks and resumes exactly, and the search writes importance maps, beams and the comparison.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "data/data_test_util.h"
#include "postnas/checkpoint.h"
#include "postnas/scoring.h"
#include "postnas/supernet.h"
#include "jetlm/tokenizer.h"
#include "test_util.h"
#include "tiny_teacher.h"

namespace jetlm::postnas {
namespace {

namespace fs = std::filesystem;

// A random teacher model dir with the small test tokenizer, and a token dataset of the test corpus.
struct Fixture : test_support::TinyTeacher {
  Fixture() : TinyTeacher("postnas_supernet", 5) {}
  SuperNetOptions options(const std::string& out) const {
    SuperNetOptions o;
    o.teacher = teacher;
    o.data = data;
    o.out = out;
    o.steps = 6;
    o.batch = 2;
    o.seq = 64;
    o.lr = 3e-3;
    o.warmup = 1;
    o.max_full = 2;
    o.save_every = 3;
    o.log_every = 1;
    o.threads = 1;
    o.log = [](const std::string&) {};
    return o;
  }
};

TEST(PostnasSuperNet, AllFullIsTheTeacherAndLinearStartsFromAttention) {
  Fixture f;
  const ModelSpec spec = load_model_spec(f.teacher);
  SuperNet net(spec, BlockKind::Gla);
  load_weights(*net->teacher, f.teacher);
  net->init_linear_from_attention();
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(0, 420, {2, 30}, torch::kLong);
  EXPECT_TRUE(torch::equal(net->forward(ids, std::vector<bool>(4, true)), net->teacher->forward(ids)));
  // GLA q/o are the attention's; k/v are the 2 KV heads repeated over their query pairs.
  auto* attn = dynamic_cast<AttentionImpl*>(net->teacher->model->layers[1]->as<DecoderLayerImpl>()->self_attn.get());
  auto* gla = net->linear[1]->as<GLAImpl>();
  ASSERT_NE(attn, nullptr);
  ASSERT_NE(gla, nullptr);
  EXPECT_TRUE(torch::equal(gla->q_proj->weight, attn->q_proj->weight));
  EXPECT_TRUE(torch::equal(gla->o_proj->weight, attn->o_proj->weight));
  EXPECT_TRUE(torch::equal(gla->k_proj->weight.narrow(0, 8, 8), attn->k_proj->weight.narrow(0, 0, 8)));  // head 1 <- kv 0
  EXPECT_TRUE(torch::equal(gla->v_proj->weight.narrow(0, 16, 8), attn->v_proj->weight.narrow(0, 8, 8)));  // head 2 <- kv 1
  // Other placements differ from the teacher.
  EXPECT_FALSE(torch::equal(net->forward(ids, {true, false, true, true}), net->teacher->forward(ids)));
  // A teacher that is not all attention is refused.
  ModelSpec hybrid = spec;
  hybrid.blocks[0] = BlockKind::Gla;
  EXPECT_THROW(SuperNet(hybrid, BlockKind::Gla), Error);
}

TEST(PostnasSuperNet, PlacementsParseAndSpreadUniformly) {
  EXPECT_EQ(placement_string(parse_placement("0,3", 4, "x")), "0,3");
  EXPECT_EQ(placement_string(parse_placement("-", 4, "x")), "-");
  EXPECT_THROW(parse_placement("4", 4, "x"), Error);
  EXPECT_THROW(parse_placement("1,,2", 4, "x"), Error);
  EXPECT_EQ(placement_string(uniform_placement(12, 2)), "3,9");
  EXPECT_EQ(placement_string(uniform_placement(12, 4)), "1,4,7,10");
  EXPECT_EQ(placement_string(uniform_placement(4, 4)), "0,1,2,3");
}

TEST(PostnasSuperNet, DistillationTrainsOnlyLinearBlocksAndResumesExactly) {
  Fixture f;
  const auto full = train_supernet(f.options(f.dir.path + "/a"));
  EXPECT_EQ(full.last_step, 6);
  SuperNet a = load_supernet(f.dir.path + "/a/supernet");
  // The teacher is untouched; every linear parameter moved from its attention-copied start.
  HybridModel teacher = load_model(f.teacher);
  for (const auto& p : teacher->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), *a->teacher->named_parameters().find(p.key()))) << p.key();
  const ModelSpec spec = load_model_spec(f.teacher);
  torch::manual_seed(1);
  SuperNet fresh(spec, BlockKind::Gla);
  load_weights(*fresh->teacher, f.teacher);
  fresh->init_linear_from_attention();
  EXPECT_FALSE(torch::equal(fresh->linear[0]->as<GLAImpl>()->q_proj->weight, a->linear[0]->as<GLAImpl>()->q_proj->weight));
  // Stopped at step 3 (a checkpoint) and resumed: the same weights as the uninterrupted run.
  SuperNetOptions part = f.options(f.dir.path + "/b");
  part.stop_after = 3;
  EXPECT_EQ(train_supernet(part).last_step, 3);
  EXPECT_FALSE(fs::exists(f.dir.path + "/b/supernet"));
  const auto resumed = train_supernet(f.options(f.dir.path + "/b"));
  EXPECT_EQ(resumed.first_step, 3);
  SuperNet b = load_supernet(f.dir.path + "/b/supernet");
  for (const auto& p : a->linear->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), *b->linear->named_parameters().find(p.key()))) << p.key();
  // Bad input is named.
  SuperNetOptions bad = f.options(f.dir.path + "/c");
  bad.block = "attn";
  EXPECT_THROW(train_supernet(bad), Error);
}

// A layer on the SWA path runs the teacher's attention with a window: a window as long as the
// sequence equals full attention there, a short one differs, and the attention is left unwindowed.
TEST(PostnasSuperNet, SwaPathIsTheTeachersWindowedAttention) {
  Fixture f;
  SuperNet net(load_model_spec(f.teacher), BlockKind::Gla);
  load_weights(*net->teacher, f.teacher);
  net->init_linear_from_attention();
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::randint(0, 420, {2, 24}, torch::kLong);
  const std::vector<bool> full = {true, false, false, false}, with_full_1 = {true, true, false, false};
  const std::vector<bool> swa = {false, true, false, false}, none(4, false);
  const torch::Tensor plain = net->forward(ids, full);
  EXPECT_TRUE(torch::allclose(net->forward_hidden(ids, full, nullptr, &none, 8), plain, 1e-6, 1e-6));
  const torch::Tensor wide = net->forward_hidden(ids, full, nullptr, &swa, 24);
  EXPECT_TRUE(torch::allclose(wide, net->forward(ids, with_full_1), 1e-5, 1e-5));
  const torch::Tensor narrow = net->forward_hidden(ids, full, nullptr, &swa, 4);
  EXPECT_FALSE(torch::allclose(narrow, wide, 1e-4, 1e-4));
  // Positions before the window closes are unchanged (token t < 4 sees the same keys).
  EXPECT_TRUE(torch::allclose(narrow.narrow(1, 0, 4), wide.narrow(1, 0, 4), 1e-5, 1e-5));
  EXPECT_EQ(net->teacher->model->layers[1]->as<DecoderLayerImpl>()->self_attn->as<AttentionImpl>()->window, 0);
}

TEST(PostnasSuperNet, SearchWritesImportanceBeamAndComparison) {
  Fixture f;
  SuperNetOptions o = f.options(f.dir.path + "/train");
  o.steps = 2;
  train_supernet(o);
  SearchOptions s;
  s.supernet = f.dir.path + "/train/supernet";
  s.data = f.data;
  s.out = f.dir.path + "/search";
  s.objectives = "kv-retrieval@48,cloze@32";
  s.examples = 4;
  s.beam = 2;
  s.max_k = 2;
  s.batch = 4;
  s.swa_k = 1;
  s.swa_window = 8;
  s.log = [](const std::string&) {};
  search_placements(s);
  auto lines = [](const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  };
  const auto importance = lines(s.out + "/importance.csv");
  ASSERT_EQ(importance.size(), 1u + 2 * 4);  // header + 2 tasks x 4 layers
  EXPECT_EQ(importance[0], "task,layer,score,accuracy,loss,attribution");
  const auto beam = lines(s.out + "/beam.csv");
  ASSERT_EQ(beam.size(), 1u + 2 * (2 + 2));  // 2 tasks x (k = 1, 2) x beam 2
  // The k = 2 rows hold two layers.
  EXPECT_NE(beam[3].find("\",") - beam[3].find(",\""), std::string::npos);
  EXPECT_NE(beam[3].substr(beam[3].find('"') + 1).find(','), std::string::npos) << beam[3];
  const auto cmp = lines(s.out + "/comparison.csv");
  ASSERT_EQ(cmp.size(), 1u + 2 * 2);
  EXPECT_EQ(cmp[0], "task,k,searched_layers,searched_score,uniform_layers,uniform_score,attribution_layers,"
                    "attribution_score,none_score,teacher_score");
  EXPECT_NE(cmp[2].find("\"1,3\""), std::string::npos) << cmp[2];  // uniform k=2 of 4 layers: {1, 3}
  // SWA: per task the no-SWA row, then the beam's 2 rows of one SWA layer, never a full layer.
  const auto swa = lines(s.out + "/swa.csv");
  ASSERT_EQ(swa.size(), 1u + 2 * 3);
  EXPECT_EQ(swa[0], "task,full_layers,swa_window,swa_k,rank,swa_layers,score,accuracy,loss");
  for (size_t i = 1; i < swa.size(); ++i) {
    std::vector<std::string> fields;  // split on commas outside quotes
    std::string cur;
    bool quoted = false;
    for (char c : swa[i]) {
      if (c == '"') quoted = !quoted;
      else if (c == ',' && !quoted) fields.push_back(cur), cur.clear();
      else cur += c;
    }
    fields.push_back(cur);
    ASSERT_EQ(fields.size(), 9u) << swa[i];
    EXPECT_EQ(fields[2], "8");
    if (fields[3] == "0") continue;
    const auto full = parse_placement(fields[1], 4, "test"), win = parse_placement(fields[5], 4, "test");
    for (size_t l = 0; l < 4; ++l) EXPECT_FALSE(full[l] && win[l]) << swa[i];
  }
  s.supernet = f.dir.path + "/nope";
  EXPECT_THROW(search_placements(s), Error);
}

// The attribution sum_{h,i,j} A*dL/dA of a layer (signed) is, since o_proj has no bias, the
// derivative of the loss with respect to a scale on that layer's o_proj: checked against a central
// finite difference in float64. A layer whose output is cut (o_proj = 0) scores 0.
TEST(PostnasSuperNet, AttentionAttributionMatchesFiniteDifference) {
  Fixture f;
  const ModelSpec spec = load_model_spec(f.teacher);
  HybridModel model(spec.config, spec.blocks);
  load_weights(*model, f.teacher);
  model->to(torch::kDouble);
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  const auto tokenizer = Tokenizer::load(f.teacher);
  data::TaskParams params;
  params.context_tokens = 40;
  const auto examples = data::make_examples(data::TaskKind::KeyValueRetrieval, *tokenizer, params, 5, 3);
  auto layer_o = [&](int64_t i) -> torch::Tensor& {
    return model->model->layers[size_t(i)]->as<DecoderLayerImpl>()->self_attn->as<AttentionImpl>()->o_proj->weight;
  };
  torch::Tensor& cut = layer_o(2);
  cut.zero_();
  std::vector<double> signed_sum;
  const auto score = attention_attribution_importance(*model, data::TaskKind::KeyValueRetrieval, examples,
                                                      torch::kCPU, /*batch_size=*/2, &signed_sum);
  ASSERT_EQ(score.size(), 4u);
  EXPECT_EQ(score[2], 0.0);
  // The mean over examples of each example's mean answer NLL, with layer i's o_proj scaled.
  auto loss = [&](int64_t i, double scale) {
    torch::NoGradGuard no_grad;
    const torch::Tensor saved = layer_o(i).clone();
    layer_o(i).mul_(scale);
    double total = 0;
    for (const auto& ex : examples) {
      std::vector<int64_t> ids(ex.prompt.begin(), ex.prompt.end());
      ids.insert(ids.end(), ex.answer.begin(), ex.answer.end());
      const auto t = torch::tensor(ids).view({1, -1});
      const auto logp = torch::log_softmax(model->forward(t)[0], -1);
      const int64_t start = int64_t(ex.prompt.size()), n = int64_t(ex.answer.size());
      double nll = 0;
      for (int64_t j = 0; j < n; ++j) nll -= logp[start - 1 + j][ids[size_t(start + j)]].item<double>();
      total += nll / double(n);
    }
    layer_o(i).copy_(saved);
    return total / double(examples.size());
  };
  for (int64_t i : {0, 1, 3}) {
    const double h = 1e-5, fd = (loss(i, 1 + h) - loss(i, 1 - h)) / (2 * h);
    EXPECT_NEAR(signed_sum[size_t(i)], fd, 1e-6 * std::max(1.0, std::abs(fd))) << "layer " << i;
    EXPECT_GE(score[size_t(i)], std::abs(signed_sum[size_t(i)]) - 1e-12);
    EXPECT_GT(score[size_t(i)], 0.0);
  }
  // Parameters and their grad flags are left as they were.
  for (const auto& p : model->parameters()) {
    EXPECT_FALSE(p.requires_grad());
    EXPECT_FALSE(p.grad().defined());
  }
}

}  // namespace
}  // namespace jetlm::postnas
