// Each `jetlm` subcommand lives in tools/cmd_<name>.cpp and registers itself on the CLI11 app.
// A registration adds the subcommand and its callback; the callback throws jetlm::Error on bad
// input, and main() turns that into one error line and exit code 1.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <string>
#include <vector>

namespace jetlm::cli {

// Range checks whose message says what was expected (CLI11's own name a range up to DBL_MAX).
inline const CLI::Validator kPositive(
    [](std::string& text) {
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      return end != text.c_str() && *end == '\0' && v > 0 ? std::string() : "expected a positive number, got '" + text + "'";
    },
    "POSITIVE");
inline const CLI::Validator kNonNegative(
    [](std::string& text) {
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      return end != text.c_str() && *end == '\0' && v >= 0 ? std::string() : "expected a number >= 0, got '" + text + "'";
    },
    "NON-NEGATIVE");

void register_forward(CLI::App& app);
void register_info(CLI::App& app);
void register_bench(CLI::App& app);
void register_tokenize(CLI::App& app);  // tokenize + detokenize (tools/cmd_tokenize.cpp)
void register_generate(CLI::App& app);  // generate + chat (tools/cmd_generate.cpp)
void register_random_model(CLI::App& app);  // random-weight checkpoints (tools/cmd_random_model.cpp)
void register_quantize(CLI::App& app);  // q8 checkpoints (tools/cmd_quantize.cpp)

// Components with their own library (server, data, postnas) register their subcommands from their
// tools/cmd_*.cpp file with a static registrar, so adding one touches neither main.cpp nor this file:
//   static const jetlm::cli::CommandRegistrar registrar(register_serve);
using RegisterFn = void (*)(CLI::App&);
std::vector<RegisterFn>& registered_commands();
struct CommandRegistrar {
  explicit CommandRegistrar(RegisterFn fn) { registered_commands().push_back(fn); }
};

}  // namespace jetlm::cli
