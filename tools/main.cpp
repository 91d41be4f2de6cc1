// jetlm: the command-line entry point. Subcommands live in tools/cmd_*.cpp.
#include <cstdio>
#include <exception>

#include "commands.h"

namespace jetlm::cli {
std::vector<RegisterFn>& registered_commands() {
  static std::vector<RegisterFn> commands;
  return commands;
}
}  // namespace jetlm::cli
#include "backend/ops.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"jetlm: a C++ engine and toolkit for Jet-Nemotron hybrid language models"};
  app.require_subcommand(1);
  jetlm::cli::register_forward(app);
  jetlm::cli::register_info(app);
  jetlm::cli::register_bench(app);
  jetlm::cli::register_tokenize(app);
  jetlm::cli::register_generate(app);
  jetlm::cli::register_random_model(app);
  jetlm::cli::register_quantize(app);
  for (jetlm::cli::RegisterFn register_command : jetlm::cli::registered_commands()) register_command(app);
  try {
    // A bad $JETLM_CPU_ISA is reported here, before any kernel runs inside a thread pool.
    jetlm::cpu::active_isa();
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const jetlm::Error& e) {
    std::fprintf(stderr, "jetlm: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "jetlm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
