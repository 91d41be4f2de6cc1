// Byte-level BPE training. See bpe_trainer.h for the rules; this file is about doing it fast:
// words are counted once, and each merge only revisits the words that hold the merged pair.
#include "data/bpe_trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <queue>
#include <thread>

#include "core/error.h"
#include "data/file_util.h"
#include "tokenizer/tokenizer_data.h"

namespace jetlm::data {

namespace td = tokenizer_detail;
using ojson = nlohmann::ordered_json;

namespace {

const td::Regex& qwen2_regex() {
  static const td::Regex regex(td::kQwen2SplitPattern, false, "Qwen2 split regex");
  return regex;
}

void count_piece(std::string_view piece, WordCounts& counts) {
  if (piece.empty()) return;
  std::string storage;
  const std::string_view normalized = td::nfc_normalize(piece, storage);
  qwen2_regex().for_each_span(normalized, [&](size_t begin, size_t end, bool) {
    const std::string_view word = normalized.substr(begin, end - begin);
    const auto it = counts.find(word);
    if (it != counts.end())
      ++it->second;
    else
      counts.emplace(std::string(word), 1);
  });
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

std::vector<std::string> byte_alphabet() {
  std::vector<int> bytes(256);
  for (int b = 0; b < 256; ++b) bytes[b] = b;
  std::sort(bytes.begin(), bytes.end(), [](int a, int b) {
    return td::byte_to_codepoint(uint8_t(a)) < td::byte_to_codepoint(uint8_t(b));
  });
  std::vector<std::string> out;
  for (int b : bytes) out.push_back(td::bytes_to_byte_level(std::string(1, char(b))));
  return out;
}

void count_words(std::string_view document, const std::vector<std::string>& special_tokens,
                 WordCounts& counts) {
  std::string repaired;
  if (!td::is_valid_utf8(document)) {
    repaired = td::repair_utf8(document);
    document = repaired;
  }
  // Cut the special tokens out (leftmost match first), so they never take part in merges.
  size_t pos = 0;
  while (pos < document.size()) {
    size_t best = std::string_view::npos, best_len = 0;
    for (const std::string& s : special_tokens) {
      if (s.empty()) continue;
      const size_t at = document.find(s, pos);
      if (at < best || (at == best && s.size() > best_len)) best = at, best_len = s.size();
    }
    if (best == std::string_view::npos) break;
    count_piece(document.substr(pos, best - pos), counts);
    pos = best + best_len;
  }
  count_piece(document.substr(pos), counts);
}

WordCounts count_words_parallel(const std::vector<std::string_view>& documents,
                                const std::vector<std::string>& special_tokens, int threads,
                                bool progress) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::max(1, std::min<int>(threads, int(documents.size())));
  std::vector<WordCounts> partial(size_t(std::max(threads, 1)));
  const auto start = Clock::now();
  // Documents are handed out one at a time (sources differ a lot in document size); the counts
  // are merged at the end, so the result does not depend on who counted what. Thread 0 reports.
  std::atomic<size_t> cursor{0};
  std::atomic<size_t> bytes_done{0};
  size_t total_bytes = 0;
  for (std::string_view d : documents) total_bytes += d.size();
  auto work = [&](int t) {
    double last = 0;
    for (size_t i = cursor++; i < documents.size(); i = cursor++) {
      count_words(documents[i], special_tokens, partial[size_t(t)]);
      bytes_done += documents[i].size();
      if (progress && t == 0 && seconds_since(start) - last > 0.5) {
        last = seconds_since(start);
        std::fprintf(stderr, "\rpre-tokenizing: %5.1f%%  %s",
                     100.0 * double(bytes_done) / double(std::max<size_t>(total_bytes, 1)),
                     format_seconds(last).c_str());
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
  WordCounts merged = std::move(partial[0]);
  for (size_t t = 1; t < partial.size(); ++t)
    for (auto& [word, n] : partial[t]) merged[word] += n;
  if (progress)
    std::fprintf(stderr, "\rpre-tokenizing: done, %zu distinct words in %s                \n",
                 merged.size(), format_seconds(seconds_since(start)).c_str());
  return merged;
}

namespace {

struct HeapEntry {
  int64_t count;
  int32_t left, right;
};
// Max-heap on count; among equal counts the smallest (left, right) comes first.
struct HeapLess {
  bool operator()(const HeapEntry& a, const HeapEntry& b) const {
    if (a.count != b.count) return a.count < b.count;
    if (a.left != b.left) return a.left > b.left;
    return a.right > b.right;
  }
};

uint64_t pair_key(int32_t a, int32_t b) {
  return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
}

struct Word {
  std::vector<int32_t> symbols;
  int64_t count;
};

// Pair statistics: pair -> slot with its total count and the words it (may) occur in.
struct PairTable {
  std::unordered_map<uint64_t, int32_t> index;
  std::vector<int64_t> count;
  std::vector<std::vector<int32_t>> where;  // word ids; may hold duplicates and stale entries
  std::vector<uint64_t> key;                // the pair of each slot

  int32_t slot(int32_t a, int32_t b) {
    const auto [it, inserted] = index.try_emplace(pair_key(a, b), int32_t(count.size()));
    if (inserted) {
      count.push_back(0);
      where.emplace_back();
      key.push_back(pair_key(a, b));
    }
    return it->second;
  }
  int64_t count_of(int32_t a, int32_t b) const {
    const auto it = index.find(pair_key(a, b));
    return it == index.end() ? 0 : count[size_t(it->second)];
  }
};

}  // namespace

BpeVocab train_bpe(const WordCounts& counts, const BpeTrainOptions& options) {
  const int64_t specials = int64_t(options.special_tokens.size());
  if (options.vocab_size < 256 + specials)
    throw_error("--vocab-size", "expected at least " + std::to_string(256 + specials) +
                                    " (256 byte tokens + " + std::to_string(specials) +
                                    " special tokens), got " + std::to_string(options.vocab_size));
  const auto start = Clock::now();
  BpeVocab out;
  out.tokens = byte_alphabet();
  std::unordered_map<std::string, int32_t> token_id;
  for (size_t i = 0; i < out.tokens.size(); ++i) token_id[out.tokens[i]] = int32_t(i);
  int32_t byte_id[256];
  for (int b = 0; b < 256; ++b)
    byte_id[b] = token_id.at(td::bytes_to_byte_level(std::string(1, char(b))));

  // Words in a fixed order (sorted by bytes) so that nothing depends on hash-map iteration order.
  std::vector<std::pair<std::string_view, int64_t>> sorted;
  sorted.reserve(counts.size());
  for (const auto& [w, n] : counts) sorted.emplace_back(w, n);
  std::sort(sorted.begin(), sorted.end());
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (const auto& [w, n] : sorted) {
    Word word{{}, n};
    word.symbols.reserve(w.size());
    for (unsigned char c : w) word.symbols.push_back(byte_id[c]);
    words.push_back(std::move(word));
  }

  PairTable pairs;
  for (size_t wi = 0; wi < words.size(); ++wi) {
    const Word& w = words[wi];
    for (size_t i = 0; i + 1 < w.symbols.size(); ++i) {
      const int32_t s = pairs.slot(w.symbols[i], w.symbols[i + 1]);
      pairs.count[size_t(s)] += w.count;
      if (pairs.where[size_t(s)].empty() || pairs.where[size_t(s)].back() != int32_t(wi))
        pairs.where[size_t(s)].push_back(int32_t(wi));
    }
  }
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, HeapLess> heap;
  for (const auto& [key, s] : pairs.index)
    if (pairs.count[size_t(s)] > 0)
      heap.push({pairs.count[size_t(s)], int32_t(key >> 32), int32_t(uint32_t(key))});

  const int64_t target = options.vocab_size - specials;
  const int64_t min_frequency = std::max<int64_t>(options.min_frequency, 1);
  std::vector<int32_t> touched;  // pair slots that gained occurrences in this step
  std::vector<int32_t> merged_symbols;
  double last_report = 0;
  while (int64_t(out.tokens.size()) < target && !heap.empty()) {
    const HeapEntry top = heap.top();
    heap.pop();
    const int64_t current = pairs.count_of(top.left, top.right);
    if (current != top.count) {  // stale entry: requeue with the real count
      if (current > 0) heap.push({current, top.left, top.right});
      continue;
    }
    if (current < min_frequency) break;

    const int32_t a = top.left, b = top.right;
    const std::string merged_string = out.tokens[size_t(a)] + out.tokens[size_t(b)];
    int32_t c;
    if (const auto it = token_id.find(merged_string); it != token_id.end()) {
      c = it->second;
    } else {
      c = int32_t(out.tokens.size());
      out.tokens.push_back(merged_string);
      token_id.emplace(merged_string, c);
    }
    out.merges.emplace_back(out.tokens[size_t(a)], out.tokens[size_t(b)]);
    out.merge_counts.push_back(current);

    const int32_t slot_ab = pairs.index.at(pair_key(a, b));
    std::vector<int32_t> affected = std::move(pairs.where[size_t(slot_ab)]);
    pairs.where[size_t(slot_ab)].clear();
    std::sort(affected.begin(), affected.end());
    affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
    touched.clear();
    for (const int32_t wi : affected) {
      Word& w = words[size_t(wi)];
      std::vector<int32_t>& sym = w.symbols;
      bool present = false;
      for (size_t i = 0; i + 1 < sym.size() && !present; ++i)
        present = sym[i] == a && sym[i + 1] == b;
      if (!present) continue;  // stale entry
      // Remove the word's old pairs, merge left to right, add its new pairs. Only pairs holding c
      // can gain counts, so only those need fresh heap entries.
      for (size_t i = 0; i + 1 < sym.size(); ++i)
        pairs.count[size_t(pairs.index.at(pair_key(sym[i], sym[i + 1])))] -= w.count;
      merged_symbols.clear();
      for (size_t i = 0; i < sym.size(); ++i) {
        if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
          merged_symbols.push_back(c);
          ++i;
        } else {
          merged_symbols.push_back(sym[i]);
        }
      }
      sym.swap(merged_symbols);
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        const int32_t s = pairs.slot(sym[i], sym[i + 1]);
        pairs.count[size_t(s)] += w.count;
        if (sym[i] == c || sym[i + 1] == c) {
          if (pairs.where[size_t(s)].empty() || pairs.where[size_t(s)].back() != wi)
            pairs.where[size_t(s)].push_back(wi);
          touched.push_back(s);
        }
      }
    }
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (const int32_t s : touched) {
      const uint64_t key = pairs.key[size_t(s)];
      if (pairs.count[size_t(s)] > 0)
        heap.push({pairs.count[size_t(s)], int32_t(key >> 32), int32_t(uint32_t(key))});
    }
    if (options.progress && seconds_since(start) - last_report > 0.25) {
      last_report = seconds_since(start);
      const double done =
          double(out.tokens.size() - 256) / double(std::max<int64_t>(1, target - 256));
      std::fprintf(stderr, "\rmerges: %zu/%lld  vocab %zu/%d  last pair count %lld  %s, ETA %s   ",
                   out.merges.size(), (long long)(target - 256),
                   out.tokens.size() + size_t(specials), options.vocab_size, (long long)current,
                   format_seconds(last_report).c_str(),
                   format_seconds(done > 0 ? last_report * (1 - done) / done : -1).c_str());
    }
  }
  if (options.progress)
    std::fprintf(
        stderr, "\rmerges: %zu learned, vocab %zu (+%lld special) in %s%s\n", out.merges.size(),
        out.tokens.size(), (long long)specials, format_seconds(seconds_since(start)).c_str(),
        int64_t(out.tokens.size()) < target ? " (stopped early: no pair reaches --min-frequency)"
                                            : "                ");
  return out;
}

namespace {

// The ChatML template of Qwen2 without tool calls.
const char* const kChatTemplate =
    "{%- for message in messages %}\n"
    "    {%- if loop.first and message.role != 'system' %}\n"
    "        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n";

ojson byte_level_step() {
  return ojson{{"type", "ByteLevel"},
               {"add_prefix_space", false},
               {"trim_offsets", false},
               {"use_regex", false}};
}

}  // namespace

void write_tokenizer_files(const std::string& dir, const BpeVocab& vocab,
                           const BpeTrainOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw_error(dir, "cannot create the output directory: " + ec.message());
  const int32_t n_bpe = int32_t(vocab.tokens.size());
  bool eos_found = false;
  for (const std::string& s : options.special_tokens) eos_found |= s == options.eos_token;
  if (!eos_found)
    throw_error("--eos",
                "the eos token '" + options.eos_token + "' is not one of the special tokens");

  ojson added = ojson::array();
  ojson added_decoder = ojson::object();
  for (size_t i = 0; i < options.special_tokens.size(); ++i) {
    const int32_t id = n_bpe + int32_t(i);
    ojson t = {{"id", id},
               {"content", options.special_tokens[i]},
               {"single_word", false},
               {"lstrip", false},
               {"rstrip", false},
               {"normalized", false},
               {"special", true}};
    added.push_back(t);
    added_decoder[std::to_string(id)] = {{"content", options.special_tokens[i]},
                                         {"lstrip", false},
                                         {"normalized", false},
                                         {"rstrip", false},
                                         {"single_word", false},
                                         {"special", true}};
  }
  ojson vocab_json = ojson::object();
  for (int32_t i = 0; i < n_bpe; ++i) vocab_json[vocab.tokens[size_t(i)]] = i;
  ojson merges_json = ojson::array();
  std::string merges_txt = "#version: 0.2\n";
  for (const auto& [l, r] : vocab.merges) {
    merges_json.push_back(ojson::array({l, r}));
    merges_txt += l + " " + r + "\n";
  }

  ojson tok;
  tok["version"] = "1.0";
  tok["truncation"] = nullptr;
  tok["padding"] = nullptr;
  tok["added_tokens"] = added;
  tok["normalizer"] = {{"type", "NFC"}};
  tok["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", ojson::array({ojson{{"type", "Split"},
                                            {"pattern", {{"Regex", td::kQwen2SplitPattern}}},
                                            {"behavior", "Isolated"},
                                            {"invert", false}},
                                      byte_level_step()})}};
  tok["post_processor"] = byte_level_step();
  tok["decoder"] = byte_level_step();
  tok["model"] = {{"type", "BPE"},
                  {"dropout", nullptr},
                  {"unk_token", nullptr},
                  {"continuing_subword_prefix", ""},
                  {"end_of_word_suffix", ""},
                  {"fuse_unk", false},
                  {"byte_fallback", false},
                  {"ignore_merges", false},
                  {"vocab", vocab_json},
                  {"merges", merges_json}};

  ojson additional = ojson::array();
  for (const std::string& s : options.special_tokens)
    if (s != options.eos_token) additional.push_back(s);
  const bool chatml = std::find(options.special_tokens.begin(), options.special_tokens.end(),
                                "<|im_start|>") != options.special_tokens.end() &&
                      std::find(options.special_tokens.begin(), options.special_tokens.end(),
                                "<|im_end|>") != options.special_tokens.end();
  ojson config;
  config["add_bos_token"] = false;
  config["add_prefix_space"] = false;
  config["added_tokens_decoder"] = added_decoder;
  config["additional_special_tokens"] = additional;
  config["bos_token"] = nullptr;
  if (chatml) config["chat_template"] = kChatTemplate;
  config["clean_up_tokenization_spaces"] = false;
  config["eos_token"] = options.eos_token;
  config["errors"] = "replace";
  config["model_max_length"] = 131072;
  config["pad_token"] = options.eos_token;
  config["split_special_tokens"] = false;
  config["tokenizer_class"] = "Qwen2Tokenizer";
  config["unk_token"] = nullptr;

  write_file_atomic(dir + "/tokenizer.json", tok.dump(2) + "\n");
  write_file_atomic(dir + "/vocab.json", vocab_json.dump() + "\n");
  write_file_atomic(dir + "/merges.txt", merges_txt);
  write_file_atomic(dir + "/tokenizer_config.json", config.dump(2) + "\n");
}

}  // namespace jetlm::data
