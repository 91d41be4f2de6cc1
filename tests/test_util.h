// Helpers shared by the test binaries.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace jetlm::test {

// max |a - b| / max |b|: the normalised error every comparison in the tests uses.
inline double normalized_error(const float* a, const float* b, size_t n) {
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    max_diff = std::max(max_diff, double(std::fabs(a[i] - b[i])));
    max_ref = std::max(max_ref, double(std::fabs(b[i])));
  }
  return max_ref > 0 ? max_diff / max_ref : max_diff;
}

inline double normalized_error(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() ? normalized_error(a.data(), b.data(), a.size()) : INFINITY;
}

inline std::vector<float> random_vector(std::mt19937& rng, size_t n, float lo = -1, float hi = 1) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Sets (value != nullptr) or unsets an environment variable for one scope and puts back what was
// there before: A/B switches read per call, set by a test without leaking into the next one.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    if (old) old_ = old, had_ = true;
    set(value);
  }
  ~ScopedEnv() { set(had_ ? old_.c_str() : nullptr); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  void set(const char* value) {
    if (value) setenv(name_.c_str(), value, 1);
    else unsetenv(name_.c_str());
  }
  std::string name_, old_;
  bool had_ = false;
};

// Where the test data lives (set by CMake; JETLM_SOURCE_DIR in the environment overrides it, for
// test binaries carried to another machine).
inline std::string source_dir() {
  const char* env = std::getenv("JETLM_SOURCE_DIR");
  return env && *env ? env : JETLM_SOURCE_DIR;
}
inline std::string shared_dir() { return JETLM_SHARED_DIR; }
inline std::string binary_path() { return JETLM_BINARY; }

struct CliResult {
  int exit_code = -1;
  std::string out, err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs the jetlm CLI with `args` (shell syntax), stdin from /dev/null unless `stdin_text` is given.
inline CliResult run_cli(const std::string& args, const std::string& stdin_text = "") {
  const std::string base = std::filesystem::temp_directory_path().string() + "/jetlm_cli_" +
                           std::to_string(::getpid()) + "_" + std::to_string(std::rand());
  std::string input = "/dev/null";
  if (!stdin_text.empty()) {
    input = base + ".in";
    std::ofstream(input, std::ios::binary) << stdin_text;
  }
  const int status = std::system((binary_path() + " " + args + " < " + input + " > " + base + ".out 2> " + base +
                                  ".err").c_str());
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(base + ".out");
  r.err = slurp(base + ".err");
  std::filesystem::remove(base + ".out");
  std::filesystem::remove(base + ".err");
  if (!stdin_text.empty()) std::filesystem::remove(input);
  return r;
}

}  // namespace jetlm::test
