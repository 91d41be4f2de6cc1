// BPE trainer: pre-token counts on hand-checked text; merges equal to an independent, naive
// recomputation of the greedy most-frequent-pair rule; HF `tokenizers` loads the written
// tokenizer.json and gives the same ids as jetlm; HF's own BpeTrainer learns the same merges;
// the written files load in jetlm (tokenizer.json and vocab.json + merges.txt) and its chat
// template renders; the CLI trains and reports errors.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/bpe_trainer.h"
#include "data/data_test_util.h"
#include "jetlm/chat_template.h"
#include "jetlm/tokenizer.h"

namespace jetlm {
namespace {

using json = nlohmann::json;
using test::TempDir;

const std::vector<std::string> kSpecials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};

TEST(BpeTrainer, CountsQwen2PreTokens) {
  data::WordCounts counts;
  data::count_words("Hello world, hello world!\n\nIt's 42.", kSpecials, counts);
  // Written out by hand from the Qwen2 regex: letters take one leading non-letter, digits are
  // single, punctuation takes one leading space, newlines group.
  const std::map<std::string, int64_t> expected = {
      {"Hello", 1}, {" world", 2}, {",", 1}, {" hello", 1}, {"!\n\n", 1}, {"It", 1},
      {"'s", 1},    {" ", 1},      {"4", 1}, {"2", 1},      {".", 1}};
  std::map<std::string, int64_t> got(counts.begin(), counts.end());
  EXPECT_EQ(got, expected);
}

TEST(BpeTrainer, SpecialTokensAreCutOut) {
  data::WordCounts counts;
  data::count_words("a<|endoftext|>b<|im_start|>", kSpecials, counts);
  std::map<std::string, int64_t> got(counts.begin(), counts.end());
  EXPECT_EQ(got, (std::map<std::string, int64_t>{{"a", 1}, {"b", 1}}));
}

TEST(BpeTrainer, NfcBeforeCounting) {
  data::WordCounts counts;
  data::count_words("cafe\xcc\x81", kSpecials, counts);  // e + combining acute -> é
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts.begin()->first, "caf\xc3\xa9");
}

// GPT-2's bytes_to_unicode, written independently: printable Latin-1 bytes keep their code point,
// the other 68 bytes get 256, 257, ... in byte order.
uint32_t gpt2_codepoint(int b) {
  auto printable = [](int x) {
    return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
  };
  if (printable(b)) return uint32_t(b);
  uint32_t n = 0;
  for (int x = 0; x < b; ++x) n += !printable(x);
  return 256 + n;
}

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80)
    s += char(cp);
  else {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

TEST(BpeTrainer, ByteAlphabetOrder) {
  const std::vector<std::string> alphabet = data::byte_alphabet();
  ASSERT_EQ(alphabet.size(), 256u);
  std::vector<std::pair<uint32_t, int>> order;
  for (int b = 0; b < 256; ++b) order.emplace_back(gpt2_codepoint(b), b);
  std::sort(order.begin(), order.end());
  for (int i = 0; i < 256; ++i) EXPECT_EQ(alphabet[size_t(i)], utf8(order[size_t(i)].first)) << i;
  EXPECT_EQ(alphabet[0], "!");
  EXPECT_EQ(
      alphabet[size_t(std::find(alphabet.begin(), alphabet.end(), "\xc4\xa0") - alphabet.begin())],
      "\xc4\xa0");  // Ġ
}

// The greedy rule recomputed the slow, obvious way: every step recounts all pairs from scratch.
std::vector<std::pair<std::string, std::string>> naive_merges(const data::WordCounts& counts,
                                                              int n_merges, int64_t min_freq) {
  std::vector<std::pair<uint32_t, int>> order;
  for (int b = 0; b < 256; ++b) order.emplace_back(gpt2_codepoint(b), b);
  std::sort(order.begin(), order.end());
  std::vector<std::string> tokens;
  std::map<int, int> byte_id;
  for (int i = 0; i < 256; ++i) {
    tokens.push_back(utf8(order[size_t(i)].first));
    byte_id[order[size_t(i)].second] = i;
  }
  std::vector<std::pair<std::vector<int>, int64_t>> words;
  for (const auto& [w, n] : counts) {
    std::vector<int> s;
    for (unsigned char c : w) s.push_back(byte_id[c]);
    words.emplace_back(s, n);
  }
  std::vector<std::pair<std::string, std::string>> merges;
  for (int m = 0; m < n_merges; ++m) {
    std::map<std::pair<int, int>, int64_t> pc;
    for (const auto& [s, n] : words)
      for (size_t i = 0; i + 1 < s.size(); ++i) pc[{s[i], s[i + 1]}] += n;
    std::pair<int, int> best{-1, -1};
    int64_t best_count = 0;
    for (const auto& [p, c] : pc)  // map order: ascending pair, so '>' keeps the smallest on ties
      if (c > best_count) best_count = c, best = p;
    if (best_count < min_freq || best_count == 0) break;
    const std::string merged = tokens[size_t(best.first)] + tokens[size_t(best.second)];
    int id = int(std::find(tokens.begin(), tokens.end(), merged) - tokens.begin());
    if (id == int(tokens.size())) tokens.push_back(merged);
    merges.emplace_back(tokens[size_t(best.first)], tokens[size_t(best.second)]);
    for (auto& [s, n] : words) {
      std::vector<int> out;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == best.first && s[i + 1] == best.second) {
          out.push_back(id);
          ++i;
        } else {
          out.push_back(s[i]);
        }
      }
      s = out;
    }
  }
  return merges;
}

TEST(BpeTrainer, MergesAreTheGreedySequence) {
  data::WordCounts counts;
  for (const std::string& d : test::corpus_documents()) data::count_words(d, kSpecials, counts);
  // Words with runs ("aaaa", "ababab") exercise overlapping and repeated pairs.
  counts["aaaaaaa"] += 9;
  counts[" ababab"] += 7;
  counts["abab"] += 3;
  for (int64_t min_freq : {1, 2}) {
    data::BpeTrainOptions options;
    options.vocab_size = 256 + 3 + 400;
    options.min_frequency = min_freq;
    const data::BpeVocab vocab = data::train_bpe(counts, options);
    const auto expected = naive_merges(counts, 400, min_freq);
    ASSERT_GT(expected.size(), 150u);
    ASSERT_EQ(vocab.merges.size(), expected.size()) << "min_frequency " << min_freq;
    for (size_t i = 0; i < expected.size(); ++i)
      ASSERT_EQ(vocab.merges[i], expected[i]) << "merge " << i;
    EXPECT_EQ(vocab.tokens.size(),
              256 + std::set<std::string>(vocab.tokens.begin() + 256, vocab.tokens.end()).size());
  }
}

TEST(BpeTrainer, StopsAtVocabSizeAndRejectsTooSmall) {
  data::WordCounts counts;
  for (const std::string& d : test::corpus_documents()) data::count_words(d, kSpecials, counts);
  data::BpeTrainOptions options;
  options.vocab_size = 300;
  const data::BpeVocab vocab = data::train_bpe(counts, options);
  EXPECT_EQ(vocab.tokens.size() + 3, 300u);
  options.vocab_size = 258;
  EXPECT_THROW(data::train_bpe(counts, options), Error);
}

std::vector<std::string> heldout_texts() {
  return {"A truth universally acknowledged, in the minds of the surrounding families.",
          "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\nFine, "
          "thanks!<|im_end|><|endoftext|>",
          "Unseen words: zyzzyva, quixotic, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, Ελληνικά γράμματα, 中文字符, "
          "🙂🙂🙂.",
          "   leading spaces\n\n\n\ttabs\r\n  and trailing   ",
          "numbers 1234567890 and symbols ~!@#$%^&*()_+{}|:\"<>?",
          "It's, they'll, I'M, WE'VE -- contractions in any case.",
          ""};
}

TEST(BpeTrainer, WrittenTokenizerLoadsAndRoundTrips) {
  const Tokenizer& tok = test::small_tokenizer();
  EXPECT_EQ(tok.vocab_size(), 420);
  EXPECT_EQ(tok.token_to_id("<|endoftext|>"), 417);
  EXPECT_EQ(tok.token_to_id("<|im_start|>"), 418);
  EXPECT_EQ(tok.token_to_id("<|im_end|>"), 419);
  EXPECT_TRUE(tok.is_special(417));
  for (const std::string& text : heldout_texts()) {
    const std::vector<int32_t> ids = tok.encode(text);
    EXPECT_EQ(tok.decode(ids), text);
  }
  // Special tokens are single ids only when matched.
  EXPECT_EQ(tok.encode("<|im_end|>"), std::vector<int32_t>{419});
  EXPECT_GT(tok.encode("<|im_end|>", false).size(), 1u);
  // vocab.json + merges.txt + tokenizer_config.json alone give the same ids.
  TempDir alt("vocab_merges");
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json"})
    std::filesystem::copy_file(test::small_tokenizer_dir() + "/" + f, alt.path + "/" + f);
  const auto tok2 = Tokenizer::load(alt.path);
  for (const std::string& text : heldout_texts())
    EXPECT_EQ(tok2->encode(text), tok.encode(text)) << text;
}

TEST(BpeTrainer, ChatTemplateRenders) {
  const ChatTemplate t = ChatTemplate::load(test::small_tokenizer_dir());
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  messages.push_back({{"role", "user"}, {"content", "Hi"}});
  EXPECT_EQ(
      t.render(messages, true),
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
      "<|im_start|>assistant\n");
  const json config =
      json::parse(test::slurp(test::small_tokenizer_dir() + "/tokenizer_config.json"));
  EXPECT_EQ(config["eos_token"], "<|endoftext|>");
}

TEST(BpeTrainer, HfTokenizersGiveTheSameIds) {
  TempDir dir("hf_encode");
  const std::vector<std::string> texts = heldout_texts();
  test::write_text(dir.path + "/in.json", json(texts).dump());
  const int rc = test::run_hf("encode " + test::small_tokenizer_dir() + "/tokenizer.json " +
                              dir.path + "/in.json " + dir.path + "/out.json");
  if (rc == 77) GTEST_SKIP() << "python3 package `tokenizers` not installed";
  ASSERT_EQ(rc, 0) << "tests/data/hf_tokenizers.py encode failed";
  const json out = json::parse(test::slurp(dir.path + "/out.json"));
  const Tokenizer& tok = test::small_tokenizer();
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(out["ids"][i].get<std::vector<int32_t>>(), tok.encode(texts[i])) << texts[i];
    EXPECT_EQ(out["decoded"][i].get<std::string>(), texts[i]);
  }
}

TEST(BpeTrainer, HfTrainerLearnsTheSameMerges) {
  // HF's BpeTrainer orders pairs by count, then by the smaller (left id, right id), with the byte
  // alphabet sorted by code point: the same rule as ours, so the merges must agree exactly.
  TempDir dir("hf_train");
  test::write_text(dir.path + "/corpus.json", json(test::corpus_documents()).dump());
  const int vocab_size = 256 + 3 + 300;
  const int rc = test::run_hf("train " + dir.path + "/corpus.json " + std::to_string(vocab_size) +
                              " 2 " + dir.path + "/out.json");
  if (rc == 77) GTEST_SKIP() << "python3 package `tokenizers` not installed";
  ASSERT_EQ(rc, 0) << "tests/data/hf_tokenizers.py train failed";
  const json out = json::parse(test::slurp(dir.path + "/out.json"));
  data::WordCounts counts;
  for (const std::string& d : test::corpus_documents()) data::count_words(d, kSpecials, counts);
  data::BpeTrainOptions options;
  options.vocab_size = vocab_size;
  const data::BpeVocab vocab = data::train_bpe(counts, options);
  ASSERT_EQ(out["merges"].size(), vocab.merges.size());
  for (size_t i = 0; i < vocab.merges.size(); ++i) {
    EXPECT_EQ(out["merges"][i][0].get<std::string>(), vocab.merges[i].first) << "merge " << i;
    EXPECT_EQ(out["merges"][i][1].get<std::string>(), vocab.merges[i].second) << "merge " << i;
  }
}

TEST(BpeTrainerCli, TrainsAndReportsErrors) {
  TempDir dir("cli_train");
  test::write_text(dir.path + "/a.txt", test::join_documents(test::corpus_documents()));
  const test::CliResult ok = test::run_cli("tokenizer train --input " + dir.path +
                                           "/a.txt --vocab-size 300 --out " + dir.path + "/tok");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  const auto tok = Tokenizer::load(dir.path + "/tok");
  EXPECT_EQ(tok->vocab_size(), 300);
  EXPECT_NE(ok.err.find("merges"), std::string::npos);  // progress / summary on stderr

  const test::CliResult missing =
      test::run_cli("tokenizer train --input " + dir.path + "/nope.txt --vocab-size 300 --out " +
                    dir.path + "/t2");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("nope.txt"), std::string::npos) << missing.err;
  const test::CliResult small = test::run_cli("tokenizer train --input " + dir.path +
                                              "/a.txt --vocab-size 100 --out " + dir.path + "/t3");
  EXPECT_NE(small.exit_code, 0);
  EXPECT_NE(small.err.find("--vocab-size"), std::string::npos) << small.err;
  const test::CliResult eos =
      test::run_cli("tokenizer train --input " + dir.path +
                    "/a.txt --vocab-size 300 --eos '<x>' --out " + dir.path + "/t4");
  EXPECT_NE(eos.exit_code, 0);
  EXPECT_NE(eos.err.find("--eos"), std::string::npos) << eos.err;
}

}  // namespace
}  // namespace jetlm
