// Each `jetlm` subcommand lives in tools/cmd_<name>.cpp and registers itself on the CLI11 app.
// A registration adds the subcommand and its callback; the callback throws jetlm::Error on bad
// input, and main() turns that into one error line and exit code 1.
#pragma once

#include <CLI/CLI.hpp>

namespace jetlm::cli {

void register_forward(CLI::App& app);
void register_info(CLI::App& app);
void register_bench(CLI::App& app);
void register_tokenize(CLI::App& app);  // tokenize + detokenize (tools/cmd_tokenize.cpp)
void register_generate(CLI::App& app);  // generate + chat (tools/cmd_generate.cpp)
void register_random_model(CLI::App& app);  // random-weight checkpoints (tools/cmd_random_model.cpp)
void register_quantize(CLI::App& app);  // q8 checkpoints (tools/cmd_quantize.cpp)

}  // namespace jetlm::cli
