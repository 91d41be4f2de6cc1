// The per-layer weights of a model, bound by name from a checkpoint (or made up at random for
// benchmarks) and checked against the shapes the config implies.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/host_memory.h"
#include "core/tensor.h"
#include "model/config.h"

namespace jetlm {

// One expected tensor: its HF name and shape. Matrices ([out, in]) are used as stored
// (BF16/F16/F32, memory-mapped); vectors (norms, biases, A_log, dt_bias) are read as float32.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};

// The complete list of tensors a model with this config has, in layer order.
std::vector<TensorSpec> expected_tensors(const ModelConfig& config);
// Parameters including embeddings (a tied LM head is counted once).
int64_t parameter_count(const ModelConfig& config);

struct AttnWeights {
  Matrix q, k, v, o;                       // q [Hq*hd, D], k/v [Hkv*hd, D], o [D, Hq*hd]
  std::vector<float> q_bias, k_bias, v_bias;  // empty when the family has none
  std::vector<float> q_norm, k_norm;          // [hd], Qwen3 only
};

struct JetWeights {
  Matrix q, k, v;       // q/k [H*dk, D], v [H*dv, D]
  Matrix b, a;          // [H, D]: beta and decay gates
  Matrix g, o;          // g [H*dv, D], o [D, H*dv]
  Matrix w1, w2;        // kernel generator: w1 [value_dim/r, D], w2 [value_dim*K, value_dim/r]
  std::vector<float> w2_bias;          // [value_dim*K]
  std::vector<float> A_log, dt_bias;   // [H]
  std::vector<float> o_norm;           // [dv]
};

struct LayerWeights {
  LayerKind kind = LayerKind::Attn;
  std::vector<float> input_norm, post_norm;  // [D]
  AttnWeights attn;                          // attn and swa layers
  JetWeights jet;                            // jet layers
  Matrix gate, up, down;                     // MLP: gate/up [I, D], down [D, I]
};

struct ModelWeights {
  Matrix embed;     // [vocab, D]
  Matrix lm_head;   // [vocab, D]; the embedding when tied
  std::vector<float> final_norm;  // [D]
  std::vector<LayerWeights> layers;
};

class Checkpoint;

// Binds every expected tensor of `config` from `checkpoint`, checking names, shapes and dtypes.
// Errors name the file and tensor, expected vs got. Unknown extra tensors are an error too,
// except a redundant lm_head.weight next to tied embeddings and rotary inv_freq buffers.
ModelWeights bind_weights(const ModelConfig& config, const Checkpoint& checkpoint);

// Random weights in `dtype` (F32/BF16/F16) for benchmarks and tests; storage is appended to
// `storage`, which must outlive the weights (huge_pages: its large buffers on 2 MiB pages).
ModelWeights random_weights(const ModelConfig& config, DType dtype, uint64_t seed, WeightStorage& storage,
                            bool huge_pages = false);

// Replaces every weight matrix by its q8 form (blocks of 32 with f16 scales, see core/tensor.h);
// the new bytes go to `storage`. Norms, biases and gate vectors stay float32; the JetBlock gate
// projections and matrices already q8 keep their bytes. in_memory: the new bytes go on 2 MiB pages
// and the kept matrices are copied there too, so no weight depends on a mapped checkpoint.
// copy_kept: the kept matrices are copied into `storage` (on 2 MiB pages) even without in_memory,
// for callers that free the source afterwards.
void quantize_weights_q8(const ModelConfig& config, ModelWeights& weights, WeightStorage& storage,
                         bool in_memory = false, bool copy_kept = false);

// Copies every weight matrix (and q8 scales) into `storage` on 2 MiB pages (where the kernel grants
// them), so the weights no longer depend on a mapped checkpoint.
void copy_weights_to_memory(const ModelConfig& config, ModelWeights& weights, WeightStorage& storage);
// One matrix's bytes (and q8 scales) into `storage` on 2 MiB pages; m then points there.
void copy_matrix_to_memory(Matrix& m, WeightStorage& storage);

// Writes `weights` as one safetensors file under the tensor names of `config`: matrices as they are
// stored, vectors (norms, biases, gates) in `vector_dtype`. A tied head is written once.
void save_weights(const ModelConfig& config, ModelWeights& weights, DType vector_dtype, const std::string& path,
                  bool overwrite = false);

}  // namespace jetlm
