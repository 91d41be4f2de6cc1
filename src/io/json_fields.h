// Typed reads of JSON fields with errors that name the file, the field, what was expected and
// what was found: "[config.json] field 'hidden_size': expected a positive integer, got "abc"".
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace jetlm::json_fields {

using json = nlohmann::json;

// `where` names the file (and object path) for messages.
// Integers must lie in [min_value, max_value]; the default bound keeps products of a few
// sizes inside int64 and every size inside int.
constexpr int64_t kMaxSize = int64_t(1) << 24;
int64_t require_int(const json& obj, const std::string& key, const std::string& where,
                    int64_t min_value = 1, int64_t max_value = kMaxSize);
int64_t optional_int(const json& obj, const std::string& key, const std::string& where,
                     int64_t fallback, int64_t min_value = 0, int64_t max_value = kMaxSize);
// Numbers may be written as JSON numbers or as numeric strings ("1e-5" occurs in real configs).
double require_number(const json& obj, const std::string& key, const std::string& where);
double optional_number(const json& obj, const std::string& key, const std::string& where,
                       double fallback);
bool optional_bool(const json& obj, const std::string& key, const std::string& where, bool fallback);
std::string require_string(const json& obj, const std::string& key, const std::string& where);
const json& require_object(const json& obj, const std::string& key, const std::string& where);
// A short rendering of a JSON value for messages (long values are cut).
std::string brief(const json& value);

}  // namespace jetlm::json_fields
