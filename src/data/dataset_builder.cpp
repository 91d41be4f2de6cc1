#include "data/dataset_builder.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "data/documents.h"
#include "data/file_util.h"
#include "io/mapped_file.h"
#include "jetlm/tokenizer.h"

namespace jetlm::data {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The eos token: tokenizer_config.json's eos_token (a string or {content}), else <|endoftext|>.
int32_t find_eos(const Tokenizer& tok, const std::string& dir) {
  std::string name = "<|endoftext|>";
  const std::string config_path = dir + "/tokenizer_config.json";
  if (file_exists(config_path)) {
    const nlohmann::json config =
        nlohmann::json::parse(read_text_file(config_path), nullptr, false);
    if (config.is_object() && config.contains("eos_token")) {
      const auto& e = config["eos_token"];
      if (e.is_string())
        name = e.get<std::string>();
      else if (e.is_object() && e.contains("content") && e["content"].is_string())
        name = e["content"].get<std::string>();
    }
  }
  const auto id = tok.token_to_id(name);
  if (!id) throw_error(dir, "the eos token '" + name + "' is not in the tokenizer's vocabulary");
  return *id;
}

// Appends documents of one split to numbered shard files.
class ShardWriter {
 public:
  ShardWriter(std::string dir, std::string split, int64_t shard_tokens)
      : dir_(std::move(dir)), split_(std::move(split)), shard_tokens_(shard_tokens) {}
  ~ShardWriter() {
    if (file_ != nullptr) std::fclose(file_);
  }

  void append(const std::vector<int32_t>& ids, int32_t eos) {
    if (file_ == nullptr) open_next();
    buffer_.resize(ids.size() + 1);
    for (size_t i = 0; i < ids.size(); ++i)
      buffer_[i] = uint32_t(ids[i]);  // little-endian host (static_assert in token_dataset.cpp)
    buffer_.back() = uint32_t(eos);
    if (std::fwrite(buffer_.data(), 4, buffer_.size(), file_) != buffer_.size())
      throw_error(dir_ + "/" + shards_.back().file, "write failed (disk full?)");
    shards_.back().tokens += int64_t(buffer_.size());
    shards_.back().documents += 1;
    total_tokens_ += int64_t(buffer_.size());
    total_documents_ += 1;
    if (shards_.back().tokens >= shard_tokens_) close();
  }

  void close() {
    if (file_ == nullptr) return;
    const bool ok = std::fclose(file_) == 0;
    file_ = nullptr;
    if (!ok) throw_error(dir_ + "/" + shards_.back().file, "write failed (disk full?)");
  }

  ojson index() const {
    ojson list = ojson::array();
    for (const Shard& s : shards_)
      list.push_back({{"file", s.file}, {"tokens", s.tokens}, {"documents", s.documents}});
    return list;
  }
  int64_t tokens() const { return total_tokens_; }
  int64_t documents() const { return total_documents_; }

 private:
  struct Shard {
    std::string file;
    int64_t tokens = 0, documents = 0;
  };
  void open_next() {
    char name[64];
    std::snprintf(name, sizeof name, "%s-%05zu.bin", split_.c_str(), shards_.size());
    shards_.push_back({name});
    file_ = std::fopen((dir_ + "/" + name).c_str(), "wb");
    if (file_ == nullptr)
      throw_error(dir_ + "/" + name, std::string("cannot create: ") + std::strerror(errno));
  }
  std::string dir_, split_;
  int64_t shard_tokens_;
  FILE* file_ = nullptr;
  std::vector<Shard> shards_;
  std::vector<uint32_t> buffer_;
  int64_t total_tokens_ = 0, total_documents_ = 0;
};

// Removes the partial output directory unless the build completed.
struct PartialDir {
  std::string path;
  bool keep = false;
  ~PartialDir() {
    std::error_code ec;
    if (!keep && !path.empty()) fs::remove_all(path, ec);
  }
};

using Clock = std::chrono::steady_clock;

void print_progress(double done_bytes, double total_bytes, int64_t tokens, double seconds,
                    bool final) {
  const double frac = total_bytes > 0 ? done_bytes / total_bytes : 1;
  constexpr int kWidth = 28;
  char bar[kWidth + 1];
  const int filled = int(frac * kWidth);
  for (int i = 0; i < kWidth; ++i) bar[i] = i < filled ? '#' : '.';
  bar[kWidth] = 0;
  const double rate = seconds > 0 ? done_bytes / seconds : 0;
  std::fprintf(stderr, "\r[%s] %5.1f%%  %s/%s  %s/s  %.2fM tokens  %s %s   ", bar, 100 * frac,
               format_bytes(done_bytes).c_str(), format_bytes(total_bytes).c_str(),
               format_bytes(rate).c_str(), double(tokens) / 1e6, final ? "took" : "ETA",
               format_seconds(final ? seconds : (rate > 0 ? (total_bytes - done_bytes) / rate : -1))
                   .c_str());
  if (final) std::fprintf(stderr, "\n");
}

}  // namespace

bool is_heldout(std::string_view document, uint64_t seed, double fraction) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over the bytes, then mixed with the seed
  for (unsigned char c : document) h = (h ^ c) * 0x100000001b3ull;
  const uint64_t r = mix64(h ^ mix64(seed));
  return double(r >> 11) * 0x1.0p-53 < fraction;
}

BuildStats build_dataset(const BuildOptions& options) {
  const auto start = Clock::now();
  if (options.inputs.empty()) throw_error("--input", "no input files given");
  if (!(options.heldout_fraction >= 0 && options.heldout_fraction <= 1))
    throw_error("--heldout-fraction",
                "expected a number in 0..1, got " + std::to_string(options.heldout_fraction));
  if (options.shard_tokens <= 0)
    throw_error("--shard-tokens", "expected a positive number of tokens");
  if (options.out_dir.empty()) throw_error("--out", "no output directory given");
  int64_t total_bytes = 0;
  for (const std::string& path : options.inputs) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec))
      throw_error(path, "input file not found (or not a regular file)");
    total_bytes += int64_t(fs::file_size(path, ec));
  }
  // The output directory: refuse to clobber data unless asked.
  const fs::path out = fs::absolute(options.out_dir).lexically_normal();
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (!fs::is_directory(out, ec)) throw_error(options.out_dir, "exists and is not a directory");
    if (!fs::is_empty(out, ec) && !options.force)
      throw_error(options.out_dir, "exists and is not empty; pass --force to replace it");
  }
  const fs::path tokenizer_dir = fs::absolute(options.tokenizer_dir).lexically_normal();
  if (!fs::is_directory(tokenizer_dir, ec))
    throw_error(options.tokenizer_dir,
                "tokenizer directory not found (expected tokenizer.json inside)");

  const int threads =
      std::max(1, options.threads > 0 ? options.threads : int(std::thread::hardware_concurrency()));
  // One Tokenizer per thread: each keeps its own word cache warm (a shared one would be contended).
  std::vector<std::unique_ptr<Tokenizer>> tokenizers;
  for (int t = 0; t < threads; ++t) tokenizers.push_back(Tokenizer::load(tokenizer_dir.string()));
  const Tokenizer& tok = *tokenizers[0];
  const int32_t eos = find_eos(tok, tokenizer_dir.string());
  const int32_t vocab_size = tok.vocab_size();

  PartialDir partial;
  partial.path = out.string() + ".partial-" + std::to_string(::getpid());
  fs::remove_all(partial.path, ec);
  fs::create_directories(partial.path + "/tokenizer", ec);
  if (ec) throw_error(partial.path, "cannot create the output directory: " + ec.message());
  // A copy of the tokenizer travels with the data, so the ids always have their vocabulary.
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                           "chat_template.jinja", "special_tokens_map.json"}) {
    const fs::path src = tokenizer_dir / name;
    if (fs::exists(src, ec)) {
      fs::copy_file(src, fs::path(partial.path) / "tokenizer" / name,
                    fs::copy_options::overwrite_existing, ec);
      if (ec) throw_error(src.string(), "cannot copy into the dataset: " + ec.message());
    }
  }

  ShardWriter train(partial.path, "train", options.shard_tokens);
  ShardWriter heldout(partial.path, "heldout", options.shard_tokens);
  BuildStats stats;
  stats.bytes = total_bytes;
  int64_t done_bytes = 0;
  double last_report = -1;
  constexpr size_t kBatchBytes = size_t(4) << 20;
  for (const std::string& path : options.inputs) {
    const MappedFile file(path);
    const std::string_view text(reinterpret_cast<const char*>(file.data()), file.size());
    std::vector<std::string_view> docs;
    for_each_document(text, [&](std::string_view d) { docs.push_back(d); });
    size_t next = 0;
    while (next < docs.size()) {
      // A batch of documents, encoded in parallel, written in order.
      size_t end = next, bytes = 0;
      while (end < docs.size() && (bytes < kBatchBytes || end == next)) bytes += docs[end++].size();
      std::vector<std::vector<int32_t>> ids(end - next);
      std::vector<std::thread> pool;
      std::vector<std::exception_ptr> errors(static_cast<size_t>(threads));
      std::atomic<size_t> cursor{next};
      for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
          try {
            for (size_t i = cursor++; i < end; i = cursor++)
              ids[i - next] = tokenizers[size_t(t)]->encode(docs[i], options.match_special);
          } catch (...) {
            errors[size_t(t)] = std::current_exception();
          }
        });
      for (auto& th : pool) th.join();
      for (auto& e : errors)
        if (e) std::rethrow_exception(e);
      for (size_t i = next; i < end; ++i) {
        if (is_heldout(docs[i], options.seed, options.heldout_fraction))
          heldout.append(ids[i - next], eos);
        else
          train.append(ids[i - next], eos);
      }
      next = end;
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      const int64_t pos = int64_t(docs[end - 1].data() + docs[end - 1].size() - text.data());
      if (options.progress && seconds - last_report > 0.25) {
        last_report = seconds;
        print_progress(double(done_bytes + pos), double(total_bytes),
                       train.tokens() + heldout.tokens(), seconds, false);
      }
    }
    done_bytes += int64_t(text.size());
  }
  train.close();
  heldout.close();
  stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  stats.train_tokens = train.tokens();
  stats.heldout_tokens = heldout.tokens();
  stats.train_documents = train.documents();
  stats.heldout_documents = heldout.documents();
  if (options.progress)
    print_progress(double(total_bytes), double(total_bytes),
                   stats.train_tokens + stats.heldout_tokens, stats.seconds, true);

  ojson index;
  index["format"] = "jetlm-tokens-v1";
  index["dtype"] = "uint32";
  index["vocab_size"] = vocab_size;
  index["eos_id"] = eos;
  index["tokenizer"] = "tokenizer";  // the copy inside the dataset
  index["tokenizer_source"] = tokenizer_dir.string();
  index["seed"] = options.seed;
  index["heldout_fraction"] = options.heldout_fraction;
  ojson inputs = ojson::array();
  for (const std::string& p : options.inputs)
    inputs.push_back(fs::absolute(p).lexically_normal().string());
  index["inputs"] = inputs;
  index["splits"] = {{"train", train.index()}, {"heldout", heldout.index()}};
  write_file_atomic(partial.path + "/index.json", index.dump(2) + "\n");

  // Swap the finished directory into place.
  if (fs::exists(out, ec)) {
    fs::remove_all(out, ec);
    if (ec) throw_error(options.out_dir, "cannot remove the old dataset: " + ec.message());
  }
  if (out.has_parent_path()) fs::create_directories(out.parent_path(), ec);
  fs::rename(partial.path, out, ec);
  if (ec)
    throw_error(options.out_dir, "cannot move the finished dataset into place: " + ec.message());
  partial.keep = true;
  return stats;
}

}  // namespace jetlm::data
