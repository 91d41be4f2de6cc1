// Tokenized datasets written by `jetlm data build` (format "jetlm-tokens-v1", docs/data.md):
//
//   DIR/index.json        {"format": "jetlm-tokens-v1", "dtype": "uint32", "vocab_size": V,
//   "eos_id": E,
//                          "tokenizer": "<abs path of the tokenizer dir>",
//                          "splits": {"train": [{"file": "train-00000.bin", "tokens": n,
//                          "documents": d}, ...],
//                                     "heldout": [...]}}
//   DIR/<split>-NNNNN.bin raw little-endian uint32 token ids; every document is followed by eos_id.
//
// A split is the concatenation of its shards in index order. TokenDataset memory-maps the shards
// and reads any token range of that concatenation. Thread safety: immutable after open(); read()
// may be called from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/mapped_file.h"

namespace jetlm::data {

// One entry of index.json's split list.
struct ShardInfo {
  std::string file;  // as written in the index (relative to the dataset dir)
  int64_t tokens = 0;
  int64_t documents = 0;
};

class TokenDataset {
 public:
  // Opens DIR/index.json and memory-maps the split's shards ("train" or "heldout"). Throws
  // jetlm::Error naming the file and what is wrong (missing index, bad field, shard size different
  // from the index, a token id >= vocab_size).
  static TokenDataset open(const std::string& dir, const std::string& split);

  TokenDataset(TokenDataset&&) noexcept;
  TokenDataset& operator=(TokenDataset&&) noexcept;
  ~TokenDataset();

  int64_t size() const;  // tokens in the split
  int32_t vocab_size() const;
  int32_t eos_id() const;
  // Copies tokens [start, start + n) of the split (crossing shard boundaries) into out. Throws on
  // out-of-range (start < 0, n < 0, start + n > size()).
  void read(int64_t start, int64_t n, int32_t* out) const;

  // Extras.
  int64_t documents() const;  // documents in the split (sum over its shards)
  const std::vector<ShardInfo>& shards() const;
  const std::string& tokenizer_dir() const;  // the "tokenizer" field of index.json
  const std::string& split() const;

 private:
  TokenDataset();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace jetlm::data
