// A tiny random qwen2 teacher (4 layers, 32 wide, GQA 4/2, the small test tokenizer) saved as a
// model dir, with a token dataset of the test corpus: the starting point of the PostNAS step-1
// tests (super-network, search, export).
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/data_test_util.h"
#include "postnas/checkpoint.h"
#include "test_util.h"

namespace jetlm::postnas::test_support {

inline constexpr const char* kTinyTeacherConfig = R"({"model_type": "qwen2", "hidden_size": 32,
  "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
  "vocab_size": 420, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true})";

struct TinyTeacher {
  test::TempDir dir;
  std::string teacher = dir.path + "/teacher", data = dir.path + "/tokens";
  // name: the temp dir's prefix; seed: torch's seed for the random weights.
  TinyTeacher(const std::string& name, uint64_t seed) : dir(name) {
    torch::manual_seed(seed);
    const ModelSpec spec = parse_model_spec(nlohmann::ordered_json::parse(kTinyTeacherConfig), {}, "test");
    HybridModel model(spec.config, spec.blocks);
    save_model(*model, spec, teacher, DType::F32);
    std::filesystem::copy_file(test::small_tokenizer_dir() + "/tokenizer.json", teacher + "/tokenizer.json");
    std::vector<std::string> docs;
    for (int r = 0; r < 8; ++r)
      for (const std::string& d : test::corpus_documents()) docs.push_back(d + " " + std::to_string(r));
    test::write_text(dir.path + "/corpus.txt", test::join_documents(docs));
    const auto r = test::run_cli("data build --tokenizer " + test::small_tokenizer_dir() + " --input " + dir.path +
                                 "/corpus.txt --out " + data + " --heldout-fraction 0.2 --threads 1");
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
};

}  // namespace jetlm::postnas::test_support
