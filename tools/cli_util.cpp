#include "cli_util.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace jetlm::cli {

std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i <= text.size()) {
    size_t end = text.find(',', i);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(i, end - i);
    const size_t first = item.find_first_not_of(" \t\n");
    const size_t last = item.find_last_not_of(" \t\n");
    item = first == std::string::npos ? "" : item.substr(first, last - first + 1);
    if (item.empty()) {
      if (end == text.size() && !ids.empty() && i == text.size()) break;  // trailing comma
      throw_error(flag, "empty item at character " + std::to_string(i) + ", expected comma-separated integers");
    }
    errno = 0;
    char* stop = nullptr;
    const long long value = std::strtoll(item.c_str(), &stop, 10);
    if (*stop != '\0' || errno == ERANGE || value < INT32_MIN || value > INT32_MAX)
      throw_error(flag, "'" + item + "' is not an integer token id");
    ids.push_back(int32_t(value));
    i = end + 1;
  }
  if (ids.empty()) throw_error(flag, "no ids given");
  return ids;
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw_error(path, "cannot create output file");
    out.write(static_cast<const char*>(data), std::streamsize(size));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw_error(path, "write failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw_error(path, "cannot move the output into place: " + ec.message());
  }
}

WeightPlacement weight_placement(bool hugepages_flag, const std::string& device) {
  return hugepages_flag && device != "cuda" ? WeightPlacement::Memory : WeightPlacement::Mapped;
}

std::string resolve_model_dir(const std::string& given) {
  namespace fs = std::filesystem;
  if (!given.empty()) return given;
  if (const char* env = std::getenv("JETLM_MODEL"); env && *env) return env;
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path() / ".." / kDefaultModelSubdir);  // build/jetlm, prefix/bin/jetlm
    candidates.push_back(exe.parent_path() / kDefaultModelSubdir);
    candidates.push_back(exe.parent_path() / ".." / "share" / "jetlm" / kDefaultModelSubdir);
  }
#ifdef JETLM_SOURCE_ROOT
  candidates.push_back(fs::path(JETLM_SOURCE_ROOT) / kDefaultModelSubdir);
#endif
  std::string looked;
  for (const fs::path& c : candidates) {
    if (fs::exists(c / "config.json", ec)) return c.lexically_normal().string();
    looked += "\n  " + c.lexically_normal().string();
  }
  throw_error("--model", "not given, $JETLM_MODEL is not set, and the embedded default model (" +
                             std::string(kDefaultModelSubdir) + ") was not found; looked in:" + looked);
}

}  // namespace jetlm::cli
