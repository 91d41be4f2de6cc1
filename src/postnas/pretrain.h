// Pre-training of a model (the full-attention teacher of PostNAS: a qwen2-family config) on a
// token dataset (src/data/token_dataset.h, "train" and "heldout" splits).
//
// One step: B windows of T+1 tokens at random offsets of the train split (the offsets are a
// function of (seed, step) only, so a resumed run sees the batches an uninterrupted one would),
// next-token cross-entropy, backward, global grad-norm clipping, AdamW (weight decay on matrices
// only), learning rate: linear warmup then cosine to min_lr. bf16 autocast on CUDA, fp32 on CPU;
// weights and optimizer state stay fp32.
//
// The run directory OUT holds:
//   checkpoint/        config.json + model.safetensors (fp32, a model dir the engine runs),
//                      optimizer.pt (AdamW state), trainer_state.json (step, tokens, options);
//                      replaced atomically (written to checkpoint.tmp, then swapped by renames)
//   final/             the last model as a model dir (bf16 or f32), written at the end
//   loss.csv           step, lr, train_loss, eval_loss, eval_ppl, tokens_per_s, grad_norm
//   loss.png           the curves (python3 + matplotlib, when present)
// A non-finite loss or gradient norm stops the run with an error naming the step; the last
// checkpoint (from before) is left as it was.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/tasks.h"

namespace jetlm {
class Tokenizer;
namespace data {
class TokenDataset;
}
}  // namespace jetlm

namespace jetlm::postnas {

struct PretrainOptions {
  std::string config;                  // preset, config.json or model dir (its weights are not read)
  std::vector<std::string> overrides;  // KEY=JSON config overrides
  std::string init_from;               // optional: start from this model dir's weights
  std::string data;                    // token dataset dir
  std::string out;                     // run dir
  std::string device = "cpu";          // cpu | cuda
  int64_t steps = 1000;
  int64_t batch = 8;
  int64_t seq = 256;                   // T (tokens predicted per window)
  double lr = 1e-3, min_lr = 1e-4, warmup = 100, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, clip = 1.0;
  int64_t eval_every = 100, eval_batches = 8, save_every = 100, log_every = 10;
  uint64_t seed = 1;
  // Synthetic task documents (src/data/tasks.h) mixed into the corpus: this fraction of the batch
  // rows holds packed task examples (prompt + answer + eos, repeated until the row is full) of the
  // tasks listed, at context lengths drawn from [64, seq - 24].
  double task_mix = 0.0;
  std::string tasks = "kv-retrieval,passkey,arithmetic";
  // Task accuracy/loss evaluated with each held-out evaluation: "kv-retrieval@256,passkey@512,..."
  // ("" = none); task_eval_examples examples per entry, rows of loss.csv get <label>_acc/_loss.
  std::string task_eval;
  int64_t task_eval_examples = 64;
  bool resume = true;         // continue from OUT/checkpoint when present
  int64_t stop_after = -1;    // stop (with a checkpoint) after this step although `steps` is larger
  std::string final_dtype = "bf16";  // dtype of OUT/final: bf16 | f32
  bool plot = true;
  int threads = 0;            // torch intra-op threads on CPU (0 = torch's default)
  // For tests: makes the loss of this step non-finite, to check the NaN stop.
  int64_t poison_step = -1;
  // Progress lines go here (default: stderr).
  std::function<void(const std::string&)> log;
};

struct PretrainResult {
  int64_t first_step = 0;   // the step this run started at (> 0 after a resume)
  int64_t last_step = 0;    // the last step done
  double last_train_loss = 0, last_eval_loss = 0;
  double tokens_per_s = 0;
  std::vector<std::pair<std::string, double>> last_task_accuracy;  // label -> accuracy at the last eval
  int world = 1;                                                    // data-parallel processes
};

// Data-parallel: when JETLM_WORLD_SIZE > 1 (src/postnas/distributed.h) each process takes batch /
// world rows of every step's batch (the same global batch one process would draw), gradients and the
// loss are all-reduced (NCCL on CUDA), and rank 0 alone evaluates, logs and writes files, so a run
// on N GPUs follows the run on one up to summation order.
//
// Throws jetlm::Error on bad options/data, or when training diverges (non-finite loss).
PretrainResult pretrain(const PretrainOptions& options);

// The training batches: rows of seq+1 tokens, each a window of the train split at a random offset
// or (a fraction task_mix of the rows) synthetic task examples packed back to back (prompt +
// answer + eos) at context lengths drawn from [64, seq - 24]. Everything is drawn from
// (seed, step, row) alone, so a resumed run and every data-parallel rank see the same batches.
class TrainBatches {
 public:
  // `tokenizer` (the dataset's) is needed when task_mix > 0; both must outlive this object.
  TrainBatches(const data::TokenDataset& train, const Tokenizer* tokenizer, std::vector<data::TaskKind> kinds,
               double task_mix, int64_t seq, uint64_t seed);
  // Rows [row0, row0 + rows) of step `step`'s batch: [rows, seq+1] int64 on the CPU. Thread-safe.
  torch::Tensor make(int64_t step, int64_t row0, int64_t rows) const;

 private:
  bool fill_task_row(int64_t step, int64_t row, int32_t* out) const;
  const data::TokenDataset& train_;
  const Tokenizer* tokenizer_;
  std::vector<data::TaskKind> kinds_;
  double mix_;
  int64_t T_;
  uint64_t seed_;
};

// The learning rate of step s (0-based) of `steps`: linear warmup to lr over `warmup` steps, then
// cosine from lr to min_lr at the last step.
double lr_at(int64_t step, int64_t steps, double lr, double min_lr, double warmup);

// One number printed with a printf format ("%.4f"), for the trainers' log lines and CSV rows.
std::string fmt(const char* format, double x);

// Checks a --device value: "cpu", or "cuda" with a CUDA device visible to libtorch; throws
// jetlm::Error naming --device otherwise.
void check_device(const std::string& device);

}  // namespace jetlm::postnas
