// Tokenizer: ids equal to HF `tokenizers` on a corpus of >2,000 strings (with and without added
// tokens), decode equal to HF's, the streaming detokenizer equal to the full decode, the
// vocab.json + merges.txt path equal to the tokenizer.json path, added-token flags, errors, and the
// tokenize/detokenize CLI. References: tests/reference/make_tokenizer_goldens.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "jetlm/tokenizer.h"
#include "test_util.h"
#include "tokenizer/tokenizer_data.h"

namespace jetlm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string official_dir() { return test::shared_dir() + "/hf/jet-nemotron"; }
std::string data_dir() { return test::source_dir() + "/tests/tokenizer/data"; }

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<json> records;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) records.push_back(json::parse(line));
  return records;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += char(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

struct EncodeCase {
  std::string input;             // raw bytes given to encode (may be invalid UTF-8)
  std::vector<int32_t> ids;      // HF with the added tokens
  std::vector<int32_t> plain;    // HF with no added tokens
  std::string decoded;           // HF decode(ids)
};

struct DecodeCase {
  std::vector<int32_t> ids;
  std::string keep, skip;
};

struct Goldens {
  std::vector<EncodeCase> encode;
  std::vector<DecodeCase> decode;
};

const Goldens& goldens() {
  static const Goldens g = [] {
    Goldens out;
    for (const json& r : read_jsonl(data_dir() + "/tokenizer_goldens.jsonl")) {
      if (r.contains("decode")) {
        out.decode.push_back({r["decode"].get<std::vector<int32_t>>(), r["keep"], r["skip"]});
        continue;
      }
      EncodeCase c;
      c.input = r.contains("hex") ? from_hex(r["hex"]) : r["text"].get<std::string>();
      c.ids = r["ids"].get<std::vector<int32_t>>();
      c.plain = r.contains("plain") ? r["plain"].get<std::vector<int32_t>>() : c.ids;
      c.decoded = r.contains("dec") ? r["dec"].get<std::string>() : c.input;
      out.encode.push_back(std::move(c));
    }
    return out;
  }();
  return g;
}

// The official tokenizer, loaded once for the whole binary.
const Tokenizer* official() {
  static const std::unique_ptr<Tokenizer> tok =
      fs::exists(official_dir() + "/tokenizer.json") ? Tokenizer::load(official_dir()) : nullptr;
  return tok.get();
}

#define REQUIRE_OFFICIAL()                                                              \
  if (official() == nullptr) GTEST_SKIP() << "no " << official_dir() << "/tokenizer.json"

std::string show(const std::string& text) {
  std::string out;
  for (unsigned char c : text.substr(0, 120)) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20) out += "\\x" + std::to_string(c);
    else out += char(c);
  }
  return "\"" + out + (text.size() > 120 ? "...\"" : "\"");
}

std::string join(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size() && i < 40; ++i) {
    if (i > 0) out += ',';
    out += std::to_string(ids[i]);
  }
  return out + (ids.size() > 40 ? ",..." : "");
}

TEST(TokenizerGoldens, CorpusIsLargeAndVaried) {
  EXPECT_GE(goldens().encode.size(), 2000u);
  EXPECT_GE(goldens().decode.size(), 300u);
  size_t longest = 0;
  for (const EncodeCase& c : goldens().encode) longest = std::max(longest, c.input.size());
  EXPECT_GE(longest, 20000u);
}

void expect_corpus_ids(const Tokenizer& tok, const char* label) {
  int failures = 0;
  for (const EncodeCase& c : goldens().encode) {
    const std::vector<int32_t> ids = tok.encode(c.input);
    const std::vector<int32_t> plain = tok.encode(c.input, /*match_added_tokens=*/false);
    if (ids != c.ids && failures++ < 10)
      ADD_FAILURE() << label << " with added tokens: " << show(c.input) << "\n  jetlm: " << join(ids)
                    << "\n  HF:    " << join(c.ids);
    if (plain != c.plain && failures++ < 10)
      ADD_FAILURE() << label << " without added tokens: " << show(c.input) << "\n  jetlm: " << join(plain)
                    << "\n  HF:    " << join(c.plain);
  }
  EXPECT_EQ(failures, 0);
}

TEST(TokenizerGoldens, EncodeEqualsHfWithAndWithoutAddedTokens) {
  REQUIRE_OFFICIAL();
  expect_corpus_ids(*official(), "tokenizer.json");
}

TEST(TokenizerGoldens, DecodeOfEncodeIsTheNfcText) {
  REQUIRE_OFFICIAL();
  int failures = 0;
  for (const EncodeCase& c : goldens().encode) {
    const std::string text = official()->decode(c.ids);
    if (text != c.decoded && failures++ < 10)
      ADD_FAILURE() << "decode of " << show(c.input) << " gave " << show(text) << ", HF " << show(c.decoded);
  }
  EXPECT_EQ(failures, 0);
}

TEST(TokenizerGoldens, DecodeOfRandomIdsEqualsHf) {
  REQUIRE_OFFICIAL();
  int failures = 0;
  for (const DecodeCase& c : goldens().decode) {
    const std::string keep = official()->decode(c.ids, false), skip = official()->decode(c.ids, true);
    if (keep != c.keep && failures++ < 10)
      ADD_FAILURE() << "decode(" << join(c.ids) << ") = " << show(keep) << ", HF " << show(c.keep);
    if (skip != c.skip && failures++ < 10)
      ADD_FAILURE() << "decode(" << join(c.ids) << ", skip) = " << show(skip) << ", HF " << show(c.skip);
  }
  EXPECT_EQ(failures, 0);
}

TEST(StreamingDetokenizer, ConcatenationEqualsFullDecode) {
  REQUIRE_OFFICIAL();
  std::vector<std::vector<int32_t>> sequences;
  for (const DecodeCase& c : goldens().decode) sequences.push_back(c.ids);
  for (const EncodeCase& c : goldens().encode) sequences.push_back(c.ids);
  for (const bool skip : {false, true}) {
    for (const auto& ids : sequences) {
      StreamingDetokenizer stream(*official(), skip);
      std::string text;
      for (const int32_t id : ids) {
        const std::string piece = stream.push(id);
        ASSERT_TRUE(tokenizer_detail::is_valid_utf8(piece)) << "push emitted a broken character: " << show(piece);
        text += piece;
      }
      text += stream.flush();
      ASSERT_EQ(text, official()->decode(ids, skip)) << "ids " << join(ids);
    }
  }
}

TEST(StreamingDetokenizer, HoldsACharacterUntilItIsComplete) {
  REQUIRE_OFFICIAL();
  // "👍" is four bytes; byte-level tokens split it, and nothing may come out before the last one.
  const std::string thumbs = "\xF0\x9F\x91\x8D";
  std::vector<int32_t> byte_ids;
  for (unsigned char b : thumbs) {
    const auto id = official()->token_to_id(tokenizer_detail::bytes_to_byte_level(std::string(1, char(b))));
    ASSERT_TRUE(id.has_value());
    byte_ids.push_back(*id);
  }
  StreamingDetokenizer stream(*official());
  EXPECT_EQ(stream.push(official()->encode("a")[0]), "a");
  EXPECT_EQ(stream.push(byte_ids[0]), "");
  EXPECT_EQ(stream.push(byte_ids[1]), "");
  EXPECT_EQ(stream.push(byte_ids[2]), "");
  EXPECT_EQ(stream.push(byte_ids[3]), thumbs);
  // A dangling start of a character becomes one U+FFFD at the end, and at once when it is broken.
  EXPECT_EQ(stream.push(byte_ids[0]), "");
  EXPECT_EQ(stream.push(byte_ids[1]), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.push(byte_ids[0]), "");
  EXPECT_EQ(stream.push(official()->encode("b")[0]), "\xEF\xBF\xBD" "b");
  EXPECT_EQ(stream.flush(), "");
  // Special tokens are skipped or kept as asked.
  const int32_t im_end = *official()->token_to_id("<|im_end|>");
  EXPECT_EQ(stream.push(im_end), "");
  StreamingDetokenizer keep(*official(), /*skip_special=*/false);
  EXPECT_EQ(keep.push(im_end), "<|im_end|>");
}

TEST(TokenizerLoad, VocabJsonAndMergesGiveTheSameIds) {
  REQUIRE_OFFICIAL();
  const fs::path dir = fs::temp_directory_path() / ("jetlm_tok_vocab_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const char* name : {"vocab.json", "merges.txt", "tokenizer_config.json"})
    fs::copy_file(official_dir() + "/" + name, dir / name, fs::copy_options::overwrite_existing);
  const auto tok = Tokenizer::load(dir.string());
  fs::remove_all(dir);
  EXPECT_EQ(tok->vocab_size(), official()->vocab_size());
  EXPECT_EQ(tok->added_token_ids(), official()->added_token_ids());
  for (int32_t id : official()->added_token_ids()) EXPECT_EQ(tok->is_special(id), official()->is_special(id)) << id;
  expect_corpus_ids(*tok, "vocab.json");
}

TEST(TokenizerApi, VocabularyQueries) {
  REQUIRE_OFFICIAL();
  const Tokenizer& tok = *official();
  EXPECT_EQ(tok.vocab_size(), 151665);
  EXPECT_EQ(tok.token_to_id("<|im_start|>"), 151644);
  EXPECT_EQ(tok.token_to_id("<|endoftext|>"), 151643);
  EXPECT_EQ(tok.token_to_id("Hello"), 9707);
  EXPECT_EQ(tok.token_to_id("\xC4\xA0world"), 1879);  // "Ġworld"
  EXPECT_FALSE(tok.token_to_id("no such token here").has_value());
  EXPECT_EQ(tok.id_to_token(1879), "\xC4\xA0world");
  EXPECT_EQ(tok.token_bytes(1879), " world");
  EXPECT_EQ(tok.id_to_token(151645), "<|im_end|>");
  EXPECT_TRUE(tok.is_special(151645));
  EXPECT_FALSE(tok.is_special(151657));  // <tool_call> is an added token but not special
  EXPECT_FALSE(tok.is_special(1879));
  EXPECT_EQ(tok.id_to_token(-1), "");
  EXPECT_EQ(tok.id_to_token(tok.vocab_size()), "");
  EXPECT_TRUE(tok.encode("").empty());
  EXPECT_EQ(tok.decode(std::vector<int32_t>{}), "");
  EXPECT_EQ(tok.decode(std::vector<int32_t>{9707, -5, 1 << 30, 1879}), "Hello world");  // ids without a token are skipped
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{9707, 1879}));
}

TEST(TokenizerUtf8, InvalidInputIsRepairedLikePython) {
  using tokenizer_detail::repair_utf8;
  const std::string r = "\xEF\xBF\xBD";
  // bytes.decode("utf-8", "replace") on each input:
  EXPECT_EQ(repair_utf8("abc\xFF"), "abc" + r);
  EXPECT_EQ(repair_utf8("\xC3"), r);
  EXPECT_EQ(repair_utf8("\xE2\x82"), r);                      // a truncated character is one subsequence
  EXPECT_EQ(repair_utf8("\xED\xA0\x80"), r + r + r);          // a surrogate: each byte on its own
  EXPECT_EQ(repair_utf8("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(repair_utf8("\xC0\xAF"), r + r);                  // overlong
  EXPECT_EQ(repair_utf8("a\xF0\x9F\x98" "b"), "a" + r + "b");
  EXPECT_EQ(repair_utf8("\xE0\xA0"), r);
  EXPECT_EQ(repair_utf8("\xE2\x82\xAC"), "\xE2\x82\xAC");
  EXPECT_EQ(repair_utf8(std::string("a\0b", 3)), std::string("a\0b", 3));
  REQUIRE_OFFICIAL();
  EXPECT_EQ(official()->encode("caf\xE9"), official()->encode("caf" + r));
}

TEST(TokenizerSplit, LongRunsUseTheHeapMergeAndAgreeWithTheScan) {
  REQUIRE_OFFICIAL();
  // Words longer than 64 bytes take the heap path; a word made of repeated short words must give
  // the same ids as the scan path gives on those words when no merge crosses them.
  for (int n : {63, 64, 65, 66, 200, 5000}) {
    const std::string spaces(size_t(n), ' ');
    const std::vector<int32_t> ids = official()->encode(spaces);
    EXPECT_EQ(official()->decode(ids), spaces);
    std::string digits;
    for (int i = 0; i < n; ++i) digits += char('0' + i % 10);
    EXPECT_EQ(official()->encode(digits).size(), size_t(n));  // \p{N} splits digits one by one
  }
  const std::string letters(300, 'a');
  const std::vector<int32_t> ids = official()->encode(letters);
  EXPECT_EQ(official()->decode(ids), letters);
}

// The small tokenizer whose added tokens use every flag (see make_tokenizer_goldens.py).
TEST(TokenizerAddedTokens, FlagsBehaveAsInHf) {
  const std::string dir = data_dir() + "/flags";
  const auto tok = Tokenizer::load(dir);
  const std::vector<json> records = read_jsonl(data_dir() + "/flags_goldens.jsonl");
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(tok->vocab_size(), records[0]["vocab_size"].get<int32_t>());
  for (const auto& [content, id] : records[0]["added_ids"].items())
    EXPECT_EQ(tok->token_to_id(content), id.get<int32_t>()) << content;
  for (size_t i = 1; i < records.size(); ++i) {
    const std::string text = records[i]["text"];
    const std::vector<int32_t> ids = tok->encode(text);
    EXPECT_EQ(ids, records[i]["ids"].get<std::vector<int32_t>>()) << show(text);
    EXPECT_EQ(tok->decode(records[i]["ids"].get<std::vector<int32_t>>(), false), records[i]["keep"].get<std::string>())
        << show(text);
    EXPECT_EQ(tok->decode(records[i]["ids"].get<std::vector<int32_t>>(), true), records[i]["skip"].get<std::string>())
        << show(text);
  }
}

// A model directory in a temp folder with the given files.
class TempModelDir {
 public:
  TempModelDir() {
    path_ = fs::temp_directory_path() / ("jetlm_tok_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempModelDir() { fs::remove_all(path_); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name, std::ios::binary) << text;
  }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

// A minimal valid tokenizer.json: the 256 byte tokens, one merge, NFC + Qwen2 split + ByteLevel.
json minimal_tokenizer_json() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[tokenizer_detail::bytes_to_byte_level(std::string(1, char(b)))] = b;
  vocab["ab"] = 256;
  json j;
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b"})}};
  j["normalizer"] = {{"type", "NFC"}};
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         json::array({{{"type", "Split"},
                                       {"pattern", {{"Regex", tokenizer_detail::kQwen2SplitPattern}}},
                                       {"behavior", "Isolated"},
                                       {"invert", false}},
                                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
  j["decoder"] = {{"type", "ByteLevel"}};
  j["added_tokens"] = json::array({{{"id", 257}, {"content", "<s>"}, {"special", true}}});
  return j;
}

void expect_load_error(const TempModelDir& dir, const std::string& needle) {
  try {
    Tokenizer::load(dir.str());
    ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(TokenizerLoad, MinimalTokenizerWorks) {
  TempModelDir dir;
  dir.write("tokenizer.json", minimal_tokenizer_json().dump());
  const auto tok = Tokenizer::load(dir.str());
  EXPECT_EQ(tok->encode("ab<s>abc"), (std::vector<int32_t>{256, 257, 256, 'c' - 0}));
  EXPECT_EQ(tok->decode(tok->encode("ab<s>abc"), true), "ababc");
  EXPECT_EQ(tok->vocab_size(), 258);
}

TEST(TokenizerLoad, BadFilesAreErrorsNamingTheProblem) {
  {
    TempModelDir dir;
    expect_load_error(dir, "no tokenizer files");
  }
  {
    TempModelDir dir;
    try {
      Tokenizer::load(dir.str() + "/missing");
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not a directory"), std::string::npos) << e.what();
    }
  }
  {
    TempModelDir dir;
    dir.write("tokenizer.json", "{\"model\": ");
    expect_load_error(dir, "not valid JSON");
  }
  {
    TempModelDir dir;
    json j = minimal_tokenizer_json();
    j["model"]["merges"] = json::array({"a q_not_there"});
    dir.write("tokenizer.json", j.dump());
    expect_load_error(dir, "not in the vocab");
  }
  {
    TempModelDir dir;
    json j = minimal_tokenizer_json();
    j["model"]["merges"] = json::array({42});
    dir.write("tokenizer.json", j.dump());
    expect_load_error(dir, "merge 0");
  }
  {
    TempModelDir dir;
    json j = minimal_tokenizer_json();
    j["normalizer"] = {{"type", "Lowercase"}};
    dir.write("tokenizer.json", j.dump());
    expect_load_error(dir, "normalizer");
  }
  {
    TempModelDir dir;
    json j = minimal_tokenizer_json();
    j["model"]["type"] = "WordPiece";
    dir.write("tokenizer.json", j.dump());
    expect_load_error(dir, "model.type");
  }
  {
    TempModelDir dir;
    json j = minimal_tokenizer_json();
    j["added_tokens"][0]["special"] = "yes";
    dir.write("tokenizer.json", j.dump());
    expect_load_error(dir, "special");
  }
  {
    TempModelDir dir;
    json j = minimal_tokenizer_json();
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
    dir.write("tokenizer.json", j.dump());
    expect_load_error(dir, "split regex");
  }
  {
    TempModelDir dir;
    dir.write("vocab.json", "{\"a\": 0}");
    expect_load_error(dir, "merges.txt");
  }
  {
    TempModelDir dir;
    dir.write("vocab.json", "{\"a\": 0, \"b\": 1}");
    dir.write("merges.txt", "#version: 0.2\na b\n");
    dir.write("tokenizer_config.json", "{}");
    expect_load_error(dir, "merges.txt line 2");
  }
  {
    TempModelDir dir;
    dir.write("vocab.json", "{\"a\": 0, \"b\": 1, \"ab\": 2}");
    dir.write("merges.txt", "#version: 0.2\na b\n");
    dir.write("tokenizer_config.json", "{\"added_tokens_decoder\": {\"x\": {\"content\": \"<s>\"}}}");
    expect_load_error(dir, "added_tokens_decoder");
  }
}

// ---- CLI ----

TEST(TokenizeCli, TokenizeAndDetokenize) {
  REQUIRE_OFFICIAL();
  const std::string model = " --model " + official_dir();
  test::CliResult r = test::run_cli("tokenize" + model + " --text 'Hello world'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "9707,1879\n");
  r = test::run_cli("tokenize" + model + " --text '<|im_start|>user'");
  EXPECT_EQ(r.out, "151644,872\n");
  r = test::run_cli("tokenize" + model + " --no-special --text '<|im_start|>user'");
  EXPECT_EQ(r.out, "27,91,318,4906,91,29,872\n");
  r = test::run_cli("detokenize" + model + " --ids 151644,9707,11,1879");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "<|im_start|>Hello, world");  // exactly the text: no newline added
  r = test::run_cli("detokenize" + model + " --ids 151644,9707 --skip-special");
  EXPECT_EQ(r.out, "Hello");
}

TEST(TokenizeCli, FileIsReadByteForByte) {
  REQUIRE_OFFICIAL();
  const std::string path = (fs::temp_directory_path() / ("jetlm_tok_file_" + std::to_string(::getpid()))).string();
  const std::string text = std::string("a\0b\r\n\xF0\x9F\x91\x8D end\n\n", 16);
  std::ofstream(path, std::ios::binary) << text;
  const test::CliResult r = test::run_cli("tokenize --model " + official_dir() + " --file " + path);
  fs::remove(path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string expected;
  for (int32_t id : official()->encode(text)) {
    if (!expected.empty()) expected += ',';
    expected += std::to_string(id);
  }
  EXPECT_EQ(r.out, expected + "\n");
}

TEST(TokenizeCli, ErrorsExitWithOneLine) {
  REQUIRE_OFFICIAL();
  test::CliResult r = test::run_cli("tokenize --model /nonexistent/dir --text hi");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent/dir"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  r = test::run_cli("detokenize --model " + official_dir() + " --ids 1,151665");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("151665"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("vocab size 151665"), std::string::npos) << r.err;
  r = test::run_cli("detokenize --model " + official_dir() + " --ids 1,-3");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("-3"), std::string::npos) << r.err;
  r = test::run_cli("detokenize --model " + official_dir() + " --ids 1,x");
  EXPECT_EQ(r.exit_code, 1);
  r = test::run_cli("tokenize --model " + official_dir());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--text"), std::string::npos) << r.err;
}

TEST(TokenizeCli, BenchPrintsThroughput) {
  REQUIRE_OFFICIAL();
  const std::string path = (fs::temp_directory_path() / ("jetlm_tok_bench_" + std::to_string(::getpid()))).string();
  std::ofstream(path, std::ios::binary) << "Hello world, this is a small benchmark text. 12345\n";
  const test::CliResult r = test::run_cli("tokenize --model " + official_dir() + " --file " + path + " --bench --repeat 2");
  fs::remove(path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const json result = json::parse(r.out);
  EXPECT_EQ(result["tokens"].get<size_t>(), official()->encode("Hello world, this is a small benchmark text. 12345\n").size());
  EXPECT_GT(result["best_mb_per_s"].get<double>(), 0);
}

}  // namespace
}  // namespace jetlm
