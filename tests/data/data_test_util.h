// Shared fixtures of the data tests: a small fixed corpus, a tokenizer trained on it, temp dirs.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "data/bpe_trainer.h"
#include "jetlm/tokenizer.h"
#include "test_util.h"

namespace jetlm::test {

// A fresh directory under the system temp dir, removed when the object dies.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) {
    path = (std::filesystem::temp_directory_path() /
            ("jetlm_data_" + name + "_" + std::to_string(::getpid())))
               .string();
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Fixed documents: English prose, some code-like text, numbers and non-ASCII text (NFC already,
// so decode(encode(x)) == x holds for them).
inline const std::vector<std::string>& corpus_documents() {
  static const std::vector<std::string> docs = [] {
    const std::vector<std::string> base = {
        "It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, must be in want "
        "of a wife. However little known the feelings or views of such a man may be on his first "
        "entering a "
        "neighbourhood, this truth is so well fixed in the minds of the surrounding families.",
        "The quick brown fox jumps over the lazy dog. The lazy dog sleeps in the sun, and the fox "
        "runs into the "
        "forest where the trees are tall and the paths are narrow.",
        "In the beginning God created the heavens and the earth. The earth was formless and empty. "
        "Darkness was on "
        "the surface of the deep and God's Spirit was hovering over the surface of the waters.",
        "To open a file, call open(path, mode) and check the result.\n    int fd = "
        "open(\"data.bin\", O_RDONLY);\n"
        "    if (fd < 0) return -1;\nThe call returns a file descriptor, or -1 when it fails.",
        "Café au lait costs 3.50 euros; naïve résumé writers say 東京 is big. Ünïcödé text: "
        "Ελληνικά, русский, "
        "日本語のテキスト, emoji 🙂🚀 and math ∑ x² ≤ 10.",
        "Numbers: 12345 + 67890 = 80235. 3.14159 is pi, 2.71828 is e. Dates: 2024-01-31, "
        "1999-12-31.",
        "She said, \"I can't, won't, and shouldn't.\" They'll go; we've gone; he'd stay. It's 10 "
        "o'clock.",
        "WordNet: dog (noun): a member of the genus Canis that has been domesticated by man since "
        "prehistoric "
        "times; occurs in many breeds.",
    };
    std::vector<std::string> out;
    // Repeat with small variations so pairs have meaningful counts and documents differ.
    for (int r = 0; r < 6; ++r)
      for (size_t i = 0; i < base.size(); ++i)
        out.push_back(base[i] + " (copy " + std::to_string(r) + "." + std::to_string(i) + ")");
    return out;
  }();
  return docs;
}

inline std::string join_documents(const std::vector<std::string>& docs) {
  std::string text;
  for (size_t i = 0; i < docs.size(); ++i) text += (i ? "\n\f\n" : "") + docs[i];
  return text + "\n";
}

// A tokenizer trained once per test binary on corpus_documents(), in a temp dir.
inline const std::string& small_tokenizer_dir() {
  static TempDir dir("tokenizer");
  static const bool trained = [] {
    data::WordCounts counts;
    for (const std::string& d : corpus_documents())
      data::count_words(d, {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}, counts);
    data::BpeTrainOptions options;
    options.vocab_size = 420;
    const data::BpeVocab vocab = data::train_bpe(counts, options);
    data::write_tokenizer_files(dir.path, vocab, options);
    return true;
  }();
  (void)trained;
  return dir.path;
}

inline const Tokenizer& small_tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = Tokenizer::load(small_tokenizer_dir());
  return *tok;
}

// Runs tests/data/hf_tokenizers.py; returns its exit code (77: the package is missing).
inline int run_hf(const std::string& args) {
  const std::string cmd =
      "python3 " + source_dir() + "/tests/data/hf_tokenizers.py " + args + " > /dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace jetlm::test
