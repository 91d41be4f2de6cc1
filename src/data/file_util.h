// Small file helpers shared by the data tools.
#pragma once

#include <string>
#include <string_view>

namespace jetlm::data {

// Writes `bytes` to `path` through `path.tmp` + rename, so readers never see a half-written file.
// Throws jetlm::Error naming the path.
void write_file_atomic(const std::string& path, std::string_view bytes);

// "12.3 MB", "4.0 s" style numbers for progress lines.
std::string format_bytes(double bytes);
std::string format_seconds(double seconds);

}  // namespace jetlm::data
