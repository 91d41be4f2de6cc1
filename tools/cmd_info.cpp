// jetlm info: what a model (directory, config.json or built-in preset) is made of.
#include <cstdio>

#include "commands.h"
#include "jetlm/model.h"

namespace jetlm::cli {

namespace {

struct InfoArgs {
  std::string source;
  bool tensors = false;
  int64_t context = 65536;
};

void run_info(const InfoArgs& args) {
  const ModelConfig c = load_model_config(args.source);
  int counts[3] = {0, 0, 0};
  for (LayerKind k : c.layer_types) counts[int(k)]++;
  std::printf("model_type        %s\n", c.model_type.c_str());
  std::printf("layers            %d (attn %d, swa %d, jet %d)\n", c.n_layers, counts[0], counts[1], counts[2]);
  std::printf("layer_types       ");
  for (LayerKind k : c.layer_types) std::printf("%s ", layer_kind_name(k));
  std::printf("\nhidden / mlp      %d / %d\n", c.hidden, c.intermediate);
  std::printf("attention         %d heads, %d kv heads, head_dim %d%s%s\n", c.n_heads, c.n_kv_heads,
              c.head_dim, c.attn_bias ? ", qkv bias" : "", c.qk_norm ? ", q/k norm" : "");
  if (counts[1] > 0) std::printf("swa window        %d\n", c.swa_window);
  if (counts[2] > 0)
    std::printf("jet               %d heads, dk %d, dv %d, conv %d, generator %d, eps %g\n",
                c.jet.num_heads, c.jet.head_k_dim, c.jet.head_v_dim, c.jet.conv_size,
                c.jet.generator_hidden, double(c.jet.norm_eps));
  std::printf("vocab             %d (%s lm_head)\n", c.vocab, c.tie_embeddings ? "tied" : "untied");
  const int64_t params = parameter_count(c);
  std::printf("parameters        %lld (%.3f B)\n", (long long)params, double(params) / 1e9);
  std::printf("cache/seq @%lld   %.1f MB (bf16 KV)\n", (long long)args.context,
              double(HybridCache::bytes_for(c, args.context, 2)) / 1e6);
  if (args.tensors) {
    for (const TensorSpec& t : expected_tensors(c)) {
      std::printf("%s [", t.name.c_str());
      for (size_t i = 0; i < t.shape.size(); ++i) std::printf("%s%lld", i ? ", " : "", (long long)t.shape[i]);
      std::printf("]\n");
    }
  }
}

}  // namespace

void register_info(CLI::App& app) {
  auto args = std::make_shared<InfoArgs>();
  CLI::App* cmd = app.add_subcommand("info", "architecture, parameter count and tensor list of a model");
  cmd->add_option("source", args->source,
                  "model directory, config.json path, or preset (jet-nemotron-2b, jet-nemotron-4b, "
                  "qwen3-1.7b, qwen2.5-1.5b)")->required();
  cmd->add_flag("--tensors", args->tensors, "list every expected tensor with its shape");
  cmd->add_option("--context", args->context, "context length for the cache size line")->check(kPositive);
  cmd->callback([args] { run_info(*args); });
}

}  // namespace jetlm::cli
