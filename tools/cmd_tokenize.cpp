// Placeholder: the tokenizer work (issue 3) replaces this file.
#include "commands.h"

namespace jetlm::cli {
void register_tokenize(CLI::App& app) { (void)app; }
}  // namespace jetlm::cli
