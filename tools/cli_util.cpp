#include "cli_util.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/mapped_file.h"

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

bool auto_weights_on_hugepages(const std::string& thp_enabled, int64_t checkpoint_bytes, int64_t available_bytes) {
  const bool thp = thp_enabled.find("[always]") != std::string::npos ||
                   thp_enabled.find("[madvise]") != std::string::npos;
  return thp && checkpoint_bytes > 0 && available_bytes > 0 && checkpoint_bytes <= available_bytes / 2;
}

namespace {

// The kernel's transparent-hugepage setting ("" where there is none, e.g. not Linux).
std::string thp_setting() {
  constexpr const char* kPath = "/sys/kernel/mm/transparent_hugepage/enabled";
  try {
    return file_exists(kPath) ? read_text_file(kPath) : "";
  } catch (const Error&) {
    return "";
  }
}

// MemAvailable from /proc/meminfo in bytes (0 when unknown).
int64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

// The bytes of the checkpoint's *.safetensors files (0 when there are none).
int64_t checkpoint_bytes(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  int64_t total = 0;
  for (const auto& entry : fs::directory_iterator(model_dir, ec))
    if (entry.path().extension() == ".safetensors") total += int64_t(entry.file_size(ec));
  return total;
}

}  // namespace

WeightPlacement weight_placement_for_bytes(const HugepagesFlags& flags, const std::string& device,
                                           int64_t weight_bytes) {
  if (device == "cuda" || flags.off) return WeightPlacement::Mapped;
  if (flags.on) return WeightPlacement::Memory;
  return flags.auto_copy && auto_weights_on_hugepages(thp_setting(), weight_bytes, available_memory_bytes())
             ? WeightPlacement::Memory
             : WeightPlacement::Mapped;
}

WeightPlacement weight_placement(const HugepagesFlags& flags, const std::string& device, const std::string& model_dir) {
  if (device == "cuda" || flags.off) return WeightPlacement::Mapped;  // no directory walk
  return weight_placement_for_bytes(flags, device, checkpoint_bytes(model_dir));
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
