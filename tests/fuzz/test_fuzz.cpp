// A bounded mutation fuzzer over the safetensors header parser and the config parser, run in
// the default test suite (JETLM_FUZZ_SECONDS per target, default 5). Seeds are valid inputs;
// mutations flip bytes, splice JSON tokens and extreme numbers, cut and duplicate ranges.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "fuzz_inputs.h"
#include "model/presets.h"

namespace jetlm {
namespace {

double fuzz_seconds() {
  const char* env = std::getenv("JETLM_FUZZ_SECONDS");
  return env ? std::atof(env) : 5.0;
}

std::string safetensors_seed() {
  const std::string header =
      R"({"__metadata__": {"format": "pt"}, "w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},)"
      R"( "b": {"dtype": "F32", "shape": [3], "data_offsets": [12, 24]}, "e": {"dtype": "I64", "shape": [0], "data_offsets": [24, 24]}})";
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((header.size() >> (8 * i)) & 0xff);
  return bytes + header + std::string(24, '\x01');
}

const char* const kTokens[] = {
    "{", "}", "[", "]", ",", ":", "\"", "\\", "null", "true", "-1", "0", "1e400", "-0",
    "18446744073709551615", "9223372036854775807", "4294967296", "1.5", "\"F32\"", "\"BF16\"",
    "\"shape\"", "\"dtype\"", "\"data_offsets\"", "\"__metadata__\"", "\"layer_types\"",
    "\"jet\"", "\"swa\"", "\"attn\"", "\"1e-5\"", "[[[[[[[[", "\xff\xfe", "\"\\u0000\""};

std::string mutate(std::string s, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? size_t(0) : size_t(rng() % n); };
  const int rounds = 1 + int(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    switch (rng() % 7) {
      case 0: if (!s.empty()) s[pick(s.size())] ^= char(1 << (rng() % 8)); break;
      case 1: if (!s.empty()) s[pick(s.size())] = char(rng()); break;
      case 2: s.insert(pick(s.size() + 1), kTokens[pick(std::size(kTokens))]); break;
      case 3: if (!s.empty()) { size_t a = pick(s.size()); s.erase(a, pick(s.size() - a) + 1); } break;
      case 4: if (!s.empty()) { size_t a = pick(s.size()); s.insert(pick(s.size()), s.substr(a, pick(64) + 1)); } break;
      case 5: s.resize(pick(s.size() + 1)); break;
      case 6: {  // replace a digit run with an extreme number
        size_t a = pick(s.size());
        while (a < s.size() && !std::isdigit(static_cast<unsigned char>(s[a]))) ++a;
        size_t b = a;
        while (b < s.size() && std::isdigit(static_cast<unsigned char>(s[b]))) ++b;
        if (a < s.size()) s.replace(a, b - a, kTokens[12 + pick(6)]);
        break;
      }
    }
  }
  return s;
}

// Runs `entry` on mutations of the seeds until the time budget is spent.
template <typename Entry>
size_t fuzz_for(const std::vector<std::string>& seeds, Entry entry, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(fuzz_seconds());
  size_t runs = 0;
  for (const std::string& s : seeds) entry(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  std::vector<std::string> pool = seeds;
  while (std::chrono::steady_clock::now() < deadline) {
    std::string input = mutate(pool[rng() % pool.size()], rng);
    entry(reinterpret_cast<const uint8_t*>(input.data()), input.size());
    if (pool.size() < 256 && rng() % 16 == 0) pool.push_back(std::move(input));  // keep some mutants
    ++runs;
  }
  return runs;
}

TEST(Fuzz, SafetensorsHeaderParser) {
  const size_t runs = fuzz_for({safetensors_seed()}, fuzz::safetensors_entry, 1234);
  std::printf("  safetensors parser: %zu mutated inputs, no crash\n", runs);
  EXPECT_GT(runs, 100u);
}

TEST(Fuzz, ConfigParser) {
  std::vector<std::string> seeds;
  for (const char* name : {"jet-nemotron-2b", "jet-nemotron-4b", "qwen3-1.7b", "qwen2.5-1.5b"})
    seeds.push_back(find_preset_config(name));
  const size_t runs = fuzz_for(seeds, fuzz::config_entry, 5678);
  std::printf("  config parser: %zu mutated inputs, no crash\n", runs);
  EXPECT_GT(runs, 100u);
}

}  // namespace
}  // namespace jetlm
