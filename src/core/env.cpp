#include "core/env.h"

#include <cerrno>
#include <cstdlib>
#include <string_view>

#include "core/error.h"

namespace jetlm {

namespace {
const char* env_value(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}
}  // namespace

bool env_switch(const char* name, bool fallback) {
  const char* v = env_value(name);
  if (!v) return fallback;
  if (std::string_view(v) == "1") return true;
  if (std::string_view(v) == "0") return false;
  throw_error(name, std::string("expected 0 or 1, got '") + v + "'");
}

int64_t env_int(const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const char* v = env_value(name);
  if (!v) return fallback;
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v, &end, 10);
  if (end == v || *end != '\0' || errno == ERANGE || x < lo || x > hi)
    throw_error(name, "expected an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got '" + v + "'");
  return int64_t(x);
}

std::string env_choice(const char* name, const std::string& fallback, std::initializer_list<const char*> choices) {
  const char* v = env_value(name);
  if (!v) return fallback;
  std::string listed;
  for (const char* c : choices) {
    if (std::string_view(v) == c) return v;
    listed += (listed.empty() ? "" : ", ") + std::string(c);
  }
  throw_error(name, "expected one of " + listed + ", got '" + v + "'");
}

}  // namespace jetlm
