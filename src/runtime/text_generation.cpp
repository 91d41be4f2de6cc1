#include "jetlm/text_generation.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/mapped_file.h"

namespace jetlm {

StopStringFilter::StopStringFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const std::string& s : stops_)
    if (s.empty()) throw_error("stop strings", "an empty stop string would stop at once; expected non-empty text");
}

std::string StopStringFilter::push(std::string_view text) {
  if (stopped_) return {};
  pending_.append(text);
  // The earliest stop string in the pending text ends generation.
  size_t first = std::string::npos;
  for (const std::string& stop : stops_) {
    const size_t at = pending_.find(stop);
    if (at < first) {
      first = at;
      matched_ = stop;
    }
  }
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, first);
    pending_.clear();
    return out;
  }
  // Hold back the longest tail that is the beginning of some stop string.
  size_t hold = 0;
  for (const std::string& stop : stops_)
    for (size_t len = std::min(stop.size() - 1, pending_.size()); len > hold; --len)
      if (pending_.compare(pending_.size() - len, len, stop, 0, len) == 0) {
        hold = len;
        break;
      }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopStringFilter::flush() {
  std::string out = stopped_ ? std::string() : pending_;
  pending_.clear();
  return out;
}

TextGenerateResult generate_text(Session& session, const Tokenizer& tokenizer, const TextGenerateOptions& options,
                                 const std::function<void(std::string_view)>& on_text,
                                 const std::atomic<bool>* cancel) {
  StreamingDetokenizer detokenizer(tokenizer, options.skip_special);
  StopStringFilter stops(options.stop_strings);
  TextGenerateResult result;
  bool cancelled = false;
  auto emit = [&](const std::string& text) {
    if (text.empty()) return;
    result.text += text;
    if (on_text) on_text(text);
  };
  result.tokens = session.generate(options.generate, [&](int32_t token) {
    emit(stops.push(detokenizer.push(token)));
    if (stops.stopped()) return false;
    if (cancel != nullptr && cancel->load()) {
      cancelled = true;
      return false;
    }
    return true;
  });
  if (!stops.stopped()) emit(stops.push(detokenizer.flush()));
  emit(stops.flush());
  if (stops.stopped()) {
    result.stop_string = stops.matched();
    result.tokens.finish_reason = "stop";
  } else if (cancelled) {
    result.tokens.finish_reason = "cancelled";
  }
  return result;
}

namespace {
void add_eos_ids(const nlohmann::json& value, const std::string& where, std::vector<int32_t>& ids) {
  auto add = [&](const nlohmann::json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      throw_error(where, "eos_token_id: expected a non-negative integer or a list of them, got " + v.dump());
    const int32_t id = int32_t(v.get<int64_t>());
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  if (value.is_null()) return;
  if (value.is_array())
    for (const auto& v : value) add(v);
  else
    add(value);
}
}  // namespace

std::vector<int32_t> eos_token_ids(const std::string& model_dir, const ModelConfig& config) {
  std::vector<int32_t> ids;
  if (config.eos_token_id >= 0) ids.push_back(config.eos_token_id);
  for (const char* name : {"config.json", "generation_config.json"}) {
    const std::string path = model_dir + "/" + name;
    if (!file_exists(path)) continue;
    const nlohmann::json json = nlohmann::json::parse(read_text_file(path), nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded()) throw_error(path, "not valid JSON");
    if (json.is_object() && json.contains("eos_token_id")) add_eos_ids(json["eos_token_id"], path, ids);
  }
  return ids;
}

}  // namespace jetlm
