// `jetlm data build`: text files -> token shards + index.json (format in token_dataset.h and
// docs/data.md).
//
// Documents (documents.h) are encoded with the tokenizer without matching added tokens (a document
// that happens to contain "<|endoftext|>" gets ordinary BPE pieces, so text cannot inject control
// tokens) unless match_special is set; each is followed by eos_id. A document goes to "heldout"
// when a hash of its bytes and the seed falls below heldout_fraction: the split depends only on
// the content and the seed (duplicated documents land in the same split), not on file order or
// thread count. Shards hold whole documents; a shard is closed once it reaches shard_tokens.
// The dataset is written into OUT.partial-<pid> and renamed to OUT at the end, so OUT is either
// complete or absent; an existing non-empty OUT is refused unless force.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace jetlm::data {

struct BuildOptions {
  std::string tokenizer_dir;
  std::vector<std::string> inputs;
  std::string out_dir;
  double heldout_fraction = 0.01;
  int64_t shard_tokens = 100'000'000;
  uint64_t seed = 0;
  bool force = false;
  bool match_special = false;  // match added tokens such as <|im_start|> in the text
  int threads = 0;             // 0 = hardware concurrency
  bool progress = false;       // progress bar on stderr
};

struct BuildStats {
  int64_t bytes = 0;
  int64_t train_tokens = 0, heldout_tokens = 0;
  int64_t train_documents = 0, heldout_documents = 0;
  double seconds = 0;
};

BuildStats build_dataset(const BuildOptions& options);

// The split rule above: true when the document belongs to "heldout".
bool is_heldout(std::string_view document, uint64_t seed, double fraction);

}  // namespace jetlm::data
