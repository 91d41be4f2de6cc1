#include "data/token_dataset.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_fields.h"

namespace jetlm::data {

static_assert(std::endian::native == std::endian::little,
              "token shards are little-endian uint32; add a byte swap");

struct TokenDataset::Impl {
  std::string dir, split, tokenizer;
  int32_t vocab_size = 0, eos_id = 0;
  std::vector<ShardInfo> shards;
  std::vector<MappedFile> maps;
  std::vector<int64_t> starts;  // first split token of each shard, plus the total at the end
  int64_t documents = 0;
};

namespace {

using json = nlohmann::json;

int64_t int_field(const json& obj, const char* key, const std::string& where, int64_t lo,
                  int64_t hi) {
  const auto it = obj.find(key);
  if (it == obj.end()) throw_error(where, std::string("field '") + key + "': missing");
  if (!it->is_number_integer() || it->get<int64_t>() < lo || it->get<int64_t>() > hi)
    throw_error(where, std::string("field '") + key + "': expected an integer in " +
                           std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
                           json_fields::brief(*it));
  return it->get<int64_t>();
}

std::string string_field(const json& obj, const char* key, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || !it->is_string())
    throw_error(where, std::string("field '") + key + "': expected a string, got " +
                           (it == obj.end() ? std::string("nothing") : json_fields::brief(*it)));
  return it->get<std::string>();
}

}  // namespace

TokenDataset::TokenDataset() : impl_(std::make_unique<Impl>()) {}
TokenDataset::TokenDataset(TokenDataset&&) noexcept = default;
TokenDataset& TokenDataset::operator=(TokenDataset&&) noexcept = default;
TokenDataset::~TokenDataset() = default;

TokenDataset TokenDataset::open(const std::string& dir, const std::string& split) {
  const std::string index_path = dir + "/index.json";
  if (!file_exists(index_path))
    throw_error(index_path,
                "missing: expected a token dataset directory written by `jetlm data build`");
  json index;
  try {
    index = json::parse(read_text_file(index_path));
  } catch (const json::parse_error& e) {
    throw_error(index_path, std::string("not valid JSON: ") + e.what());
  }
  if (!index.is_object())
    throw_error(index_path, "expected a JSON object, got " + json_fields::brief(index));
  const std::string format = string_field(index, "format", index_path);
  if (format != "jetlm-tokens-v1")
    throw_error(index_path, "field 'format': expected \"jetlm-tokens-v1\", got \"" + format + "\"");
  const std::string dtype = string_field(index, "dtype", index_path);
  if (dtype != "uint32")
    throw_error(index_path, "field 'dtype': expected \"uint32\", got \"" + dtype + "\"");

  TokenDataset ds;
  Impl& d = *ds.impl_;
  d.dir = dir;
  d.split = split;
  d.vocab_size = int32_t(int_field(index, "vocab_size", index_path, 1, INT32_MAX));
  d.eos_id = int32_t(int_field(index, "eos_id", index_path, 0, d.vocab_size - 1));
  if (index.contains("tokenizer") && index["tokenizer"].is_string()) {
    const std::filesystem::path t = index["tokenizer"].get<std::string>();
    d.tokenizer = t.is_absolute() ? t.string() : (std::filesystem::path(dir) / t).string();
  }
  const auto splits = index.find("splits");
  if (splits == index.end() || !splits->is_object())
    throw_error(index_path,
                "field 'splits': expected an object {\"train\": [...], \"heldout\": [...]}");
  const auto list = splits->find(split);
  if (list == splits->end()) {
    std::string names;
    for (const auto& [k, v] : splits->items()) names += (names.empty() ? "" : ", ") + k;
    throw_error(index_path, "no split '" + split + "', expected one of: " + names);
  }
  if (!list->is_array()) throw_error(index_path, "splits." + split + ": expected a list of shards");
  d.starts.push_back(0);
  for (size_t i = 0; i < list->size(); ++i) {
    const json& entry = (*list)[i];
    const std::string where = index_path + " splits." + split + "[" + std::to_string(i) + "]";
    if (!entry.is_object())
      throw_error(where, "expected {\"file\", \"tokens\", \"documents\"}, got " +
                             json_fields::brief(entry));
    ShardInfo info;
    info.file = string_field(entry, "file", where);
    info.tokens = int_field(entry, "tokens", where, 0, int64_t(1) << 40);
    info.documents = int_field(entry, "documents", where, 0, int64_t(1) << 40);
    const std::filesystem::path p = info.file;
    if (p.is_absolute() || info.file.find("..") != std::string::npos)
      throw_error(where, "field 'file': expected a file name inside the dataset directory, got \"" +
                             info.file + "\"");
    const std::string path = dir + "/" + info.file;
    if (!file_exists(path)) throw_error(path, "shard listed in " + index_path + " is missing");
    MappedFile map(path);
    if (map.size() != size_t(info.tokens) * 4)
      throw_error(path, "size " + std::to_string(map.size()) + " bytes, expected " +
                            std::to_string(info.tokens * 4) + " (" + std::to_string(info.tokens) +
                            " uint32 tokens per index.json): truncated or wrong file");
    // Cheap structural check: a shard holds whole documents, so it ends with eos.
    if (info.tokens > 0) {
      uint32_t last;
      std::memcpy(&last, map.data() + map.size() - 4, 4);
      if (last != uint32_t(d.eos_id))
        throw_error(path, "last token is " + std::to_string(last) + ", expected eos_id " +
                              std::to_string(d.eos_id) + " (every document ends with eos)");
    }
    d.documents += info.documents;
    d.starts.push_back(d.starts.back() + info.tokens);
    d.shards.push_back(std::move(info));
    d.maps.push_back(std::move(map));
  }
  return ds;
}

int64_t TokenDataset::size() const {
  return impl_->starts.back();
}
int32_t TokenDataset::vocab_size() const {
  return impl_->vocab_size;
}
int32_t TokenDataset::eos_id() const {
  return impl_->eos_id;
}
int64_t TokenDataset::documents() const {
  return impl_->documents;
}
const std::vector<ShardInfo>& TokenDataset::shards() const {
  return impl_->shards;
}
const std::string& TokenDataset::tokenizer_dir() const {
  return impl_->tokenizer;
}
const std::string& TokenDataset::split() const {
  return impl_->split;
}

void TokenDataset::read(int64_t start, int64_t n, int32_t* out) const {
  const Impl& d = *impl_;
  if (start < 0 || n < 0 || start > size() || n > size() - start)
    throw_error(d.dir + " " + d.split,
                "read of tokens [" + std::to_string(start) + ", " + std::to_string(start + n) +
                    ") is out of range, the split has " + std::to_string(size()) + " tokens");
  // The shard holding `start`: the last one whose first token is <= start.
  size_t s =
      size_t(std::upper_bound(d.starts.begin(), d.starts.end(), start) - d.starts.begin()) - 1;
  int64_t pos = start, done = 0;
  while (done < n) {
    while (s < d.shards.size() && pos >= d.starts[s + 1]) ++s;  // skip exhausted (or empty) shards
    const int64_t offset = pos - d.starts[s];
    const int64_t take = std::min(n - done, d.starts[s + 1] - pos);
    const uint8_t* src = d.maps[s].data() + offset * 4;
    std::memcpy(out + done, src, size_t(take) * 4);
    // Validating while copying is nearly free and catches corrupt shards without a scan at open.
    uint32_t bad = 0;
    for (int64_t i = 0; i < take; ++i)
      bad |= uint32_t(uint32_t(out[done + i]) >= uint32_t(d.vocab_size));
    if (bad)
      for (int64_t i = 0; i < take; ++i)
        if (uint32_t(out[done + i]) >= uint32_t(d.vocab_size))
          throw_error(d.dir + "/" + d.shards[s].file,
                      "token " + std::to_string(offset + i) + " is " +
                          std::to_string(uint32_t(out[done + i])) + ", expected < vocab_size " +
                          std::to_string(d.vocab_size));
    done += take;
    pos += take;
  }
}

}  // namespace jetlm::data
