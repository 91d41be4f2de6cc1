#include "core/error.h"

#include <cstdio>
#include <cstdlib>

namespace jetlm {

void throw_error(const std::string& where, const std::string& what) {
  throw Error("[" + where + "] " + what);
}

void assert_failed(const char* expr, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "jetlm: internal error: %s:%d: assertion '%s' failed%s%s\n", file, line,
               expr, msg.empty() ? "" : ": ", msg.c_str());
  std::abort();
}

}  // namespace jetlm
