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
inline CLI::Validator number_check(bool zero_allowed) {
  const std::string expected = zero_allowed ? "a number >= 0" : "a positive number";
  return CLI::Validator(
      [zero_allowed, expected](std::string& text) {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        const bool ok = end != text.c_str() && *end == '\0' && (zero_allowed ? v >= 0 : v > 0);
        return ok ? std::string() : "expected " + expected + ", got '" + text + "'";
      },
      zero_allowed ? "NON-NEGATIVE" : "POSITIVE");
}
inline const CLI::Validator kPositive = number_check(false);
inline const CLI::Validator kNonNegative = number_check(true);

// --hugepages and --no-hugepages (HugepagesFlags, cli_util.h) on a subcommand.
template <class Flags>
void add_hugepages_flags(CLI::App* cmd, Flags& flags, const char* on_help, const char* off_help) {
  CLI::Option* on = cmd->add_flag("--hugepages", flags.on, on_help);
  cmd->add_flag("--no-hugepages", flags.off, off_help)->excludes(on);
}

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
