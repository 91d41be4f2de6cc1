// safetensors: strict reader (memory-mapped), sharded checkpoints, and an atomic writer.
//
// File layout: u64 little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data region; offsets are relative to the data region's start.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/mapped_file.h"

namespace jetlm {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data region
  uint64_t end = 0;
  int64_t numel() const;
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in file order of their data
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // where the data region starts in the file
};

// Parses and validates the header of a safetensors file held in `bytes` (the whole file).
// Every inconsistency (short file, header not JSON, unknown dtype, bad shape, offsets out of
// range or overlapping, size not matching shape x dtype) throws jetlm::Error naming `where`.
SafetensorsHeader parse_safetensors(const uint8_t* bytes, size_t size, const std::string& where);

// One memory-mapped safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return file_.path(); }
  const SafetensorsHeader& header() const { return header_; }
  const TensorInfo* find(const std::string& name) const;
  const uint8_t* tensor_data(const TensorInfo& info) const {
    return file_.data() + header_.data_offset + info.begin;
  }

 private:
  MappedFile file_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
};

// A tensor of a checkpoint: where its bytes are and what they are.
struct TensorRef {
  std::string name;
  std::string file;  // the file that holds it, for error messages
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // aligned to the element size
  int64_t numel() const;
};

// A model directory's weights: model.safetensors, or shards listed by model.safetensors.index.json.
class Checkpoint {
 public:
  // Throws jetlm::Error naming the missing/broken file.
  explicit Checkpoint(const std::string& model_dir);
  const TensorRef* find(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorRef> tensors_;
  std::vector<std::unique_ptr<uint8_t[]>> realigned_;  // copies of tensors stored unaligned
  void add_file_tensors(const SafetensorsFile& file, const std::map<std::string, std::string>* only);
};

// A tensor to write: the bytes are taken as they are (dtype_size * numel of them).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Writes a safetensors file atomically (temporary file, then rename). Refuses to replace an
// existing file unless `overwrite` is true, so nothing a user has is clobbered by accident.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {},
                       bool overwrite = false);

}  // namespace jetlm
