// Small helpers shared by the subcommands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace jetlm::cli {

// Parses "5,17,42" (spaces allowed) into ids; throws jetlm::Error naming `flag` on bad text.
std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag);

// Writes bytes to `path` through a temporary file and a rename, so a failed run leaves no
// half-written output.
void write_file_atomic(const std::string& path, const void* data, size_t size);

}  // namespace jetlm::cli
