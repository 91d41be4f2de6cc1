// Dataset build + TokenDataset: ids read back equal encode(document) + eos per split, in order;
// train and heldout partition the documents; the split is deterministic by seed; shards are
// whole documents and reads cross them; the output is atomic and never clobbered without --force;
// errors name the file.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "data/data_test_util.h"
#include "data/dataset_builder.h"
#include "data/documents.h"
#include "data/token_dataset.h"

namespace jetlm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::TempDir;

std::vector<int32_t> read_all(const data::TokenDataset& ds) {
  std::vector<int32_t> out(size_t(ds.size()));
  ds.read(0, ds.size(), out.data());
  return out;
}

// Two input files; documents in the second are numbered so they are all distinct.
struct Inputs {
  TempDir dir{"inputs"};
  std::vector<std::string> files;
  std::vector<std::string> docs;  // in file order
  Inputs() {
    const auto& base = test::corpus_documents();
    std::vector<std::string> a(base.begin(), base.begin() + 20), b;
    for (int i = 0; i < 60; ++i)
      b.push_back("Document number " + std::to_string(i) + ". " + base[size_t(i) % base.size()]);
    // Whitespace around documents and a form feed inside a line are part of the format's rules.
    test::write_text(dir.path + "/a.txt", "\n\n" + test::join_documents(a) + "\n\f\n\n\f\n");
    test::write_text(dir.path + "/b.txt", test::join_documents(b));
    files = {dir.path + "/a.txt", dir.path + "/b.txt"};
    docs = a;
    docs.insert(docs.end(), b.begin(), b.end());
  }
};

data::BuildOptions options_for(const Inputs& in, const std::string& out) {
  data::BuildOptions o;
  o.tokenizer_dir = test::small_tokenizer_dir();
  o.inputs = in.files;
  o.out_dir = out;
  o.heldout_fraction = 0.3;
  o.threads = 2;
  return o;
}

TEST(Documents, SplitsOnFormFeedLines) {
  std::vector<std::string> got;
  data::for_each_document("  one\n\ftwo\n\f\n three \n\f\n\n\f\nfour\n\f",
                          [&](std::string_view d) { got.emplace_back(d); });
  EXPECT_EQ(got, (std::vector<std::string>{"one\n\ftwo", "three", "four"}));
}

TEST(DatasetBuild, RoundTripAndSplits) {
  Inputs in;
  TempDir out("build");
  data::BuildOptions o = options_for(in, out.path + "/ds");
  o.shard_tokens = 150;  // several shards per split
  const data::BuildStats stats = data::build_dataset(o);

  const Tokenizer& tok = test::small_tokenizer();
  const int32_t eos = *tok.token_to_id("<|endoftext|>");
  // Expected streams computed from the documents directly.
  std::vector<int32_t> expected_train, expected_heldout;
  int64_t n_train = 0, n_heldout = 0;
  for (const std::string& d : in.docs) {
    const bool h = data::is_heldout(d, 0, 0.3);
    std::vector<int32_t>& dst = h ? expected_heldout : expected_train;
    const std::vector<int32_t> ids = tok.encode(d, false);
    dst.insert(dst.end(), ids.begin(), ids.end());
    dst.push_back(eos);
    (h ? n_heldout : n_train) += 1;
  }
  ASSERT_GT(n_heldout, 5);
  ASSERT_GT(n_train, 30);

  const data::TokenDataset train = data::TokenDataset::open(out.path + "/ds", "train");
  const data::TokenDataset heldout = data::TokenDataset::open(out.path + "/ds", "heldout");
  EXPECT_EQ(read_all(train), expected_train);
  EXPECT_EQ(read_all(heldout), expected_heldout);
  EXPECT_EQ(train.documents(), n_train);
  EXPECT_EQ(heldout.documents(), n_heldout);
  EXPECT_EQ(stats.train_tokens, train.size());
  EXPECT_EQ(train.vocab_size(), tok.vocab_size());
  EXPECT_EQ(train.eos_id(), eos);
  EXPECT_GT(train.shards().size(), 2u);

  // Decoding each document of a split gives back the (trimmed) text: the two splits partition them.
  std::multiset<std::string> decoded, all(in.docs.begin(), in.docs.end());
  for (const data::TokenDataset* ds : {&train, &heldout}) {
    const std::vector<int32_t> ids = read_all(*ds);
    size_t start = 0;
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] == eos) {
        decoded.insert(tok.decode(std::span<const int32_t>(ids.data() + start, i - start)));
        start = i + 1;
      }
  }
  EXPECT_EQ(decoded, all);

  // Reads crossing shard boundaries equal slices of the whole.
  const std::vector<int32_t> whole = read_all(train);
  for (int64_t start : {int64_t(0), int64_t(149), int64_t(151), train.size() - 7})
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(400)}) {
      if (start + n > train.size()) continue;
      std::vector<int32_t> got(static_cast<size_t>(n));
      train.read(start, n, got.data());
      EXPECT_TRUE(std::equal(got.begin(), got.end(), whole.begin() + start)) << start << "+" << n;
    }
  std::vector<int32_t> buf(10);
  EXPECT_THROW(train.read(train.size() - 5, 10, buf.data()), Error);
  EXPECT_THROW(train.read(-1, 1, buf.data()), Error);

  // The index says what it should, and the tokenizer copy is loadable.
  const json index = json::parse(test::slurp(out.path + "/ds/index.json"));
  EXPECT_EQ(index["format"], "jetlm-tokens-v1");
  EXPECT_EQ(index["dtype"], "uint32");
  EXPECT_NO_THROW(Tokenizer::load(train.tokenizer_dir()));
  // No temporary directory is left behind.
  for (const auto& e : fs::directory_iterator(out.path)) EXPECT_EQ(e.path().filename(), "ds");
}

std::string file_bytes(const std::string& dir) {
  std::string all;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".bin")
      all += e.path().filename().string() + test::slurp(e.path().string());
  return all;
}

TEST(DatasetBuild, DeterministicBySeed) {
  Inputs in;
  TempDir out("seed");
  data::BuildOptions o = options_for(in, out.path + "/a");
  data::build_dataset(o);
  o.out_dir = out.path + "/b";
  o.threads = 1;  // thread count must not matter
  data::build_dataset(o);
  EXPECT_EQ(file_bytes(out.path + "/a"), file_bytes(out.path + "/b"));
  o.out_dir = out.path + "/c";
  o.seed = 12345;
  data::build_dataset(o);
  EXPECT_NE(data::TokenDataset::open(out.path + "/a", "heldout").size(), 0);
  EXPECT_NE(file_bytes(out.path + "/a"), file_bytes(out.path + "/c"));
}

TEST(DatasetBuild, RefusesToOverwriteUnlessForced) {
  Inputs in;
  TempDir out("force");
  const std::string ds = out.path + "/ds";
  fs::create_directories(ds);
  test::write_text(ds + "/keep.txt", "precious");
  data::BuildOptions o = options_for(in, ds);
  try {
    data::build_dataset(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos) << e.what();
  }
  EXPECT_EQ(test::slurp(ds + "/keep.txt"), "precious");
  o.force = true;
  data::build_dataset(o);
  EXPECT_FALSE(fs::exists(ds + "/keep.txt"));
  EXPECT_TRUE(fs::exists(ds + "/index.json"));
  // An empty existing directory is fine without --force.
  fs::create_directories(out.path + "/empty");
  o.force = false;
  o.out_dir = out.path + "/empty";
  EXPECT_NO_THROW(data::build_dataset(o));
}

TEST(DatasetBuild, ErrorsNameTheFile) {
  Inputs in;
  TempDir out("errors");
  data::BuildOptions o = options_for(in, out.path + "/ds");
  o.inputs.push_back(in.dir.path + "/missing.txt");
  try {
    data::build_dataset(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.txt"), std::string::npos) << e.what();
  }
  o = options_for(in, out.path + "/ds");
  o.tokenizer_dir = in.dir.path;  // no tokenizer files there
  EXPECT_THROW(data::build_dataset(o), Error);
  EXPECT_FALSE(fs::exists(out.path + "/ds"));

  // CLI: the same errors become exit code 1 with a message.
  const test::CliResult r = test::run_cli("data build --tokenizer " + in.dir.path + " --input " +
                                          in.files[0] + " --out " + out.path + "/x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(in.dir.path), std::string::npos) << r.err;
  const test::CliResult ok = test::run_cli("data build --tokenizer " + test::small_tokenizer_dir() +
                                           " --input " + in.files[0] + " " + in.files[1] +
                                           " --out " + out.path + "/cli --heldout-fraction 0.2");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.err.find("tokens"), std::string::npos) << ok.err;
  const test::CliResult again =
      test::run_cli("data build --tokenizer " + test::small_tokenizer_dir() + " --input " +
                    in.files[0] + " --out " + out.path + "/cli");
  EXPECT_EQ(again.exit_code, 1);
  const test::CliResult info = test::run_cli("data info " + out.path + "/cli");
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("heldout"), std::string::npos);
}

TEST(TokenDataset, DetectsCorruption) {
  Inputs in;
  TempDir out("corrupt");
  const std::string ds = out.path + "/ds";
  data::build_dataset(options_for(in, ds));
  const std::string shard = ds + "/train-00000.bin";
  const std::string original = test::slurp(shard);
  auto expect_error = [&](const std::string& needle) {
    try {
      const data::TokenDataset d = data::TokenDataset::open(ds, "train");
      std::vector<int32_t> all(size_t(d.size()));
      d.read(0, d.size(), all.data());
      ADD_FAILURE() << "expected an error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // Truncated shard.
  test::write_text(shard, original.substr(0, original.size() - 4));
  expect_error("train-00000.bin");
  // An id >= vocab_size (caught while reading).
  std::string bad = original;
  bad[4] = bad[5] = bad[6] = char(0x7f);
  test::write_text(shard, bad);
  expect_error("vocab_size");
  test::write_text(shard, original);
  EXPECT_NO_THROW(data::TokenDataset::open(ds, "train"));
  // Broken index fields.
  const std::string index = test::slurp(ds + "/index.json");
  json j = json::parse(index);
  j["dtype"] = "uint16";
  test::write_text(ds + "/index.json", j.dump());
  expect_error("dtype");
  j = json::parse(index);
  j["splits"]["train"][0]["tokens"] = "many";
  test::write_text(ds + "/index.json", j.dump());
  expect_error("tokens");
  test::write_text(ds + "/index.json", "{not json");
  expect_error("index.json");
  test::write_text(ds + "/index.json", index);
  EXPECT_THROW(data::TokenDataset::open(ds, "validation"), Error);
  EXPECT_THROW(data::TokenDataset::open(out.path + "/nowhere", "train"), Error);
}

}  // namespace
}  // namespace jetlm
