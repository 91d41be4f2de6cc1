// PostNAS export on a tiny random teacher: the placement becomes a jet_nemotron model dir whose
// kept layers, MLPs, norms and embeddings are the teacher's, whose JetBlocks start from the
// attention's projections and train by distillation, and which the engine loads and runs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/data_test_util.h"
#include "postnas/checkpoint.h"
#include "postnas/export.h"
#include "test_util.h"
#include "tiny_teacher.h"

namespace jetlm::postnas {
namespace {

namespace fs = std::filesystem;

struct Fixture : test_support::TinyTeacher {
  Fixture() : TinyTeacher("postnas_export", 9) {}
  ExportOptions options(const std::string& out) const {
    ExportOptions o;
    o.teacher = teacher;
    o.data = data;
    o.out = out;
    o.full = "0,3";
    o.swa = "2";
    o.swa_window = 16;
    o.steps = 12;
    o.batch = 2;
    o.seq = 48;
    o.lr = 3e-3;
    o.warmup = 1;
    o.dtype = "f32";
    o.threads = 1;
    o.log = [](const std::string&) {};
    return o;
  }
};

TEST(PostnasExport, PlacementBecomesAJetNemotronTheEngineRuns) {
  Fixture f;
  const std::string out = f.dir.path + "/hybrid";
  const ExportResult r = export_hybrid(f.options(out));
  EXPECT_GT(r.trainable, 0);
  EXPECT_TRUE(std::isfinite(r.first_kl) && std::isfinite(r.last_kl));
  EXPECT_LT(r.last_kl, r.first_kl);  // 12 steps of distillation lower the KL on this tiny corpus

  const ModelSpec spec = load_model_spec(out);
  EXPECT_EQ(spec.json.at("model_type"), "jet_nemotron");
  const std::vector<BlockKind> expected = {BlockKind::Attn, BlockKind::Jet, BlockKind::Swa, BlockKind::Attn};
  EXPECT_EQ(spec.blocks, expected);
  // Default JetBlock sizes come from the teacher: 4 heads of head_dim 8.
  EXPECT_EQ(spec.config.jet.num_heads, 4);
  EXPECT_EQ(spec.config.jet.head_k_dim, 8);
  EXPECT_EQ(spec.config.jet.head_v_dim, 8);

  // Everything but the JetBlock is the teacher's, bit for bit (f32 written).
  const HybridModel teacher = load_model(f.teacher);
  const HybridModel hybrid = load_model(out);
  const auto tparams = teacher->named_parameters();
  int64_t shared = 0;
  for (const auto& p : hybrid->named_parameters()) {
    const torch::Tensor* t = tparams.find(p.key());
    if (p.key().find("layers.1.self_attn.") != std::string::npos) {
      // The JetBlock's q_proj started as the attention's (4 heads of 8) and has moved in training.
      if (p.key() == "model.layers.1.self_attn.q_proj.weight") {
        ASSERT_TRUE(t);
        EXPECT_FALSE(torch::equal(p.value(), *t));
        EXPECT_LT((p.value() - *t).abs().max().item<double>(), 0.5);
      }
      continue;
    }
    ASSERT_TRUE(t) << p.key();
    EXPECT_TRUE(torch::equal(p.value(), *t)) << p.key();
    ++shared;
  }
  EXPECT_GT(shared, 20);
  for (const char* file : {"config.json", "model.safetensors", "tokenizer.json", "export.json"})
    EXPECT_TRUE(fs::exists(out + "/" + file)) << file;

  // The engine loads and runs it, and says what its cache costs next to the teacher.
  const auto gen = test::run_cli("generate --model " + out + " --prompt 'the' --max-new 4 --temp 0");
  EXPECT_EQ(gen.exit_code, 0) << gen.err;
  const auto bench_h = test::run_cli("bench --model " + out + " --prompt-len 32 --gen 2 --json --threads 1");
  const auto bench_t = test::run_cli("bench --model " + f.teacher + " --prompt-len 32 --gen 2 --json --threads 1");
  ASSERT_EQ(bench_h.exit_code, 0) << bench_h.err;
  ASSERT_EQ(bench_t.exit_code, 0) << bench_t.err;
  auto cache = [](const std::string& text) {
    return nlohmann::json::parse(text.substr(text.find('{'))).at("cache_bytes_per_seq").get<double>();
  };
  EXPECT_LT(cache(bench_h.out), cache(bench_t.out));

  // Nothing is overwritten, and bad placements are named.
  EXPECT_THROW(export_hybrid(f.options(out)), Error);
  ExportOptions bad = f.options(f.dir.path + "/bad");
  bad.full = "0,7";
  EXPECT_THROW(export_hybrid(bad), Error);
  bad.full = "0,2";  // layer 2 also in --swa
  EXPECT_THROW(export_hybrid(bad), Error);
  EXPECT_FALSE(fs::exists(f.dir.path + "/bad/model.safetensors"));
}

}  // namespace
}  // namespace jetlm::postnas
