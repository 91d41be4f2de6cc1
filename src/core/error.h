// Errors, in three tiers (STYLE.md):
//  - invariants of our own code: JETLM_ASSERT, aborts with file:line (a bug in jetlm);
//  - user input that is wrong (files, configs, flags, requests): throw jetlm::Error with
//    "[where] what, expected X, got Y" and, where useful, a hint; caught at the CLI/API boundary;
//  - external calls (CUDA, system calls) are always checked and turned into one of the above.
#pragma once

#include <stdexcept>
#include <string>

namespace jetlm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Builds "[where] what" messages: throw_error("model.safetensors", "tensor 'x' has shape ...").
[[noreturn]] void throw_error(const std::string& where, const std::string& what);

[[noreturn]] void assert_failed(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace jetlm

#define JETLM_ASSERT(cond, ...)                                                      \
  do {                                                                               \
    if (!(cond)) ::jetlm::assert_failed(#cond, __FILE__, __LINE__, std::string{__VA_ARGS__}); \
  } while (0)
