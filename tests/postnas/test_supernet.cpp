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
#include "postnas/supernet.h"
#include "test_util.h"

namespace jetlm::postnas {
namespace {

namespace fs = std::filesystem;

const char* kTeacher = R"({"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64,
  "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 420,
  "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true})";

// A random teacher model dir with the small test tokenizer, and a token dataset of the test corpus.
struct Fixture {
  test::TempDir dir{"postnas_supernet"};
  std::string teacher = dir.path + "/teacher", data = dir.path + "/tokens";
  Fixture() {
    torch::manual_seed(5);
    const ModelSpec spec = parse_model_spec(nlohmann::ordered_json::parse(kTeacher), {}, "test");
    HybridModel model(spec.config, spec.blocks);
    save_model(*model, spec, teacher, DType::F32);
    fs::copy_file(test::small_tokenizer_dir() + "/tokenizer.json", teacher + "/tokenizer.json");
    std::vector<std::string> docs;
    for (int r = 0; r < 8; ++r)
      for (const std::string& d : test::corpus_documents()) docs.push_back(d + " " + std::to_string(r));
    test::write_text(dir.path + "/corpus.txt", test::join_documents(docs));
    const auto r = test::run_cli("data build --tokenizer " + test::small_tokenizer_dir() + " --input " + dir.path +
                                 "/corpus.txt --out " + data + " --heldout-fraction 0.2 --threads 1");
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
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
  EXPECT_EQ(importance[0], "task,layer,score,accuracy,loss");
  const auto beam = lines(s.out + "/beam.csv");
  ASSERT_EQ(beam.size(), 1u + 2 * (2 + 2));  // 2 tasks x (k = 1, 2) x beam 2
  // The k = 2 rows hold two layers.
  EXPECT_NE(beam[3].find("\",") - beam[3].find(",\""), std::string::npos);
  EXPECT_NE(beam[3].substr(beam[3].find('"') + 1).find(','), std::string::npos) << beam[3];
  const auto cmp = lines(s.out + "/comparison.csv");
  ASSERT_EQ(cmp.size(), 1u + 2 * 2);
  EXPECT_NE(cmp[2].find("\"1,3\""), std::string::npos) << cmp[2];  // uniform k=2 of 4 layers: {1, 3}
  s.supernet = f.dir.path + "/nope";
  EXPECT_THROW(search_placements(s), Error);
}

}  // namespace
}  // namespace jetlm::postnas
