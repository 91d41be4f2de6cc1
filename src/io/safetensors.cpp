#include "io/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace jetlm {

using json = nlohmann::json;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit is 100 MB
constexpr int kMaxJsonDepth = 16;                   // a valid header nests 3 deep

// Rejects pathological nesting before handing text to the JSON parser.
void check_json_depth(const char* text, size_t size, const std::string& where) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < size; ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth)
        throw_error(where, "header JSON nests deeper than " + std::to_string(kMaxJsonDepth));
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t TensorRef::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsHeader parse_safetensors(const uint8_t* bytes, size_t size, const std::string& where) {
  if (size < 8)
    throw_error(where, "file is " + std::to_string(size) +
                           " bytes, expected at least 8 (the header length); truncated?");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes)
    throw_error(where, "header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  if (header_len > size - 8)
    throw_error(where, "header length " + std::to_string(header_len) + " runs past the end of the " +
                           std::to_string(size) + "-byte file; truncated?");
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  check_json_depth(text, header_len, where);
  json header = json::parse(text, text + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) throw_error(where, "header is not valid JSON");
  if (!header.is_object()) throw_error(where, "header is JSON but not an object");

  SafetensorsHeader out;
  out.data_offset = 8 + header_len;
  const uint64_t data_size = size - out.data_offset;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) throw_error(where, "__metadata__ must be an object of strings");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string())
          throw_error(where, "__metadata__['" + m.key() + "'] must be a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tw = where + ": tensor '" + name + "'";
    if (name.empty()) throw_error(where, "a tensor has an empty name");
    if (!entry.is_object()) throw_error(tw, "entry must be an object");
    for (auto f = entry.begin(); f != entry.end(); ++f) {
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        throw_error(tw, "unexpected field '" + f.key() + "'");
    }
    if (!entry.contains("dtype") || !entry["dtype"].is_string())
      throw_error(tw, "field 'dtype' missing or not a string");
    TensorInfo info;
    info.name = name;
    const std::string dtype_text = entry["dtype"].get<std::string>();
    if (!parse_dtype(dtype_text, &info.dtype))
      throw_error(tw, "unknown dtype '" + dtype_text + "', expected one of F32, F16, BF16, F64, I32, I64, U8, I8");
    if (!entry.contains("shape") || !entry["shape"].is_array())
      throw_error(tw, "field 'shape' missing or not an array");
    if (entry["shape"].size() > 8) throw_error(tw, "shape has more than 8 dimensions");
    uint64_t numel = 1;
    bool overflow = false;
    for (const json& d : entry["shape"]) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
        throw_error(tw, "shape " + entry["shape"].dump() + " must hold non-negative integers");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > uint64_t(std::numeric_limits<int64_t>::max())) overflow = true;
      else if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / dim) overflow = true;
      else numel *= dim;
      info.shape.push_back(int64_t(std::min<uint64_t>(dim, uint64_t(std::numeric_limits<int64_t>::max()))));
    }
    if (overflow || numel > std::numeric_limits<uint64_t>::max() / 8)
      throw_error(tw, "shape " + entry["shape"].dump() + " is too large");
    const json& offsets = entry.contains("data_offsets") ? entry["data_offsets"] : json();
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      throw_error(tw, "field 'data_offsets' must be [begin, end] with non-negative integers");
    info.begin = offsets[0].get<uint64_t>();
    info.end = offsets[1].get<uint64_t>();
    if (info.begin > info.end)
      throw_error(tw, "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                          "] has begin after end");
    if (info.end > data_size)
      throw_error(tw, "data_offsets end " + std::to_string(info.end) + " is beyond the data region of " +
                          std::to_string(data_size) + " bytes; truncated file?");
    const uint64_t expected = numel * dtype_size(info.dtype);
    if (info.end - info.begin != expected)
      throw_error(tw, "holds " + std::to_string(info.end - info.begin) + " bytes, expected " +
                          std::to_string(expected) + " for " + dtype_text + " " +
                          shape_string(info.shape));
    out.tensors.push_back(std::move(info));
  }
  std::sort(out.tensors.begin(), out.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  for (size_t i = 1; i < out.tensors.size(); ++i) {
    const TensorInfo& prev = out.tensors[i - 1];
    const TensorInfo& cur = out.tensors[i];
    if (cur.begin < prev.end)
      throw_error(where, "tensors '" + prev.name + "' and '" + cur.name + "' overlap in the data region");
  }
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  header_ = parse_safetensors(file_.data(), file_.size(), path);
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

Checkpoint::Checkpoint(const std::string& model_dir) : dir_(model_dir) {
  namespace fs = std::filesystem;
  const std::string index_path = (fs::path(model_dir) / "model.safetensors.index.json").string();
  const std::string single_path = (fs::path(model_dir) / "model.safetensors").string();
  if (file_exists(index_path)) {
    json index = json::parse(read_text_file(index_path), nullptr, false);
    if (index.is_discarded() || !index.is_object())
      throw_error(index_path, "not a JSON object");
    if (!index.contains("weight_map") || !index["weight_map"].is_object())
      throw_error(index_path, "field 'weight_map' missing or not an object of name -> file");
    std::map<std::string, std::map<std::string, std::string>> by_file;  // file -> names
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw_error(index_path, "weight_map['" + it.key() + "'] must be a file name");
      const std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos || file == ".." || file.empty())
        throw_error(index_path, "weight_map['" + it.key() + "'] = '" + file +
                                    "' must be a plain file name inside the model directory");
      by_file[file][it.key()] = file;
    }
    if (by_file.empty()) throw_error(index_path, "weight_map is empty");
    for (const auto& [file, names] : by_file) {
      files_.push_back(std::make_unique<SafetensorsFile>((fs::path(model_dir) / file).string()));
      add_file_tensors(*files_.back(), &names);
      for (const auto& [name, unused] : names) {
        if (!files_.back()->find(name))
          throw_error(files_.back()->path(), "tensor '" + name + "' listed in " +
                                                 "model.safetensors.index.json is not in this shard");
      }
    }
  } else if (file_exists(single_path)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single_path));
    add_file_tensors(*files_.back(), nullptr);
  } else {
    throw_error(model_dir, "no weights found: expected model.safetensors or "
                           "model.safetensors.index.json with its shards");
  }
}

void Checkpoint::add_file_tensors(const SafetensorsFile& file,
                                  const std::map<std::string, std::string>* only) {
  for (const TensorInfo& info : file.header().tensors) {
    if (only != nullptr && !only->count(info.name)) continue;  // not this shard's per the index
    if (tensors_.count(info.name))
      throw_error(file.path(), "tensor '" + info.name + "' appears in more than one shard");
    TensorRef ref;
    ref.name = info.name;
    ref.file = file.path();
    ref.dtype = info.dtype;
    ref.shape = info.shape;
    const uint8_t* bytes = file.tensor_data(info);
    const size_t elem = dtype_size(info.dtype);
    if (reinterpret_cast<uintptr_t>(bytes) % elem != 0) {
      // The format does not promise alignment; typed loads need it, so copy such tensors once.
      const size_t n = info.end - info.begin;
      realigned_.push_back(std::make_unique<uint8_t[]>(n == 0 ? 1 : n));
      std::memcpy(realigned_.back().get(), bytes, n);
      bytes = realigned_.back().get();
    }
    ref.data = bytes;
    tensors_[info.name] = std::move(ref);
  }
}

const TensorRef* Checkpoint::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, ref] : tensors_) out.push_back(name);
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata, bool overwrite) {
  namespace fs = std::filesystem;
  if (!overwrite && fs::exists(path))
    throw_error(path, "already exists; refusing to overwrite it");
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    const uint64_t bytes = uint64_t(numel) * dtype_size(t.dtype);
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');  // keep the data region 8-aligned
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw_error(tmp, "cannot create file");
    uint8_t len[8];
    uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), std::streamsize(text.size()));
    for (const TensorToWrite& t : tensors) {
      int64_t numel = 1;
      for (int64_t d : t.shape) numel *= d;
      out.write(static_cast<const char*>(t.data), std::streamsize(numel * dtype_size(t.dtype)));
    }
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw_error(tmp, "write failed (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw_error(path, "cannot move the finished file into place: " + ec.message());
  }
}

}  // namespace jetlm
