// Placeholder: issue 4 (generate/chat) replaces this file.
#include "commands.h"

namespace jetlm::cli {
void register_generate(CLI::App& app) { (void)app; }
}  // namespace jetlm::cli
