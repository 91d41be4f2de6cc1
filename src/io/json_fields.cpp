#include "io/json_fields.h"

#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace jetlm::json_fields {

std::string brief(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

namespace {

std::string field(const std::string& key) { return "field '" + key + "'"; }

bool number_from(const json& value, double* out) {
  if (value.is_number()) {
    *out = value.get<double>();
    return std::isfinite(*out);
  }
  if (value.is_string()) {
    const std::string text = value.get<std::string>();
    char* end = nullptr;
    *out = std::strtod(text.c_str(), &end);
    return !text.empty() && end == text.c_str() + text.size() && std::isfinite(*out);
  }
  return false;
}

int64_t int_from(const json& obj, const std::string& key, const std::string& where,
                 int64_t min_value, int64_t max_value) {
  const json& value = obj.at(key);
  if (!value.is_number_integer())
    throw_error(where, field(key) + ": expected an integer, got " + brief(value));
  if (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t(max_value))
    throw_error(where, field(key) + ": expected an integer <= " + std::to_string(max_value) +
                           ", got " + brief(value));
  const int64_t v = value.get<int64_t>();
  if (v < min_value || v > max_value)
    throw_error(where, field(key) + ": expected an integer in [" + std::to_string(min_value) +
                           ", " + std::to_string(max_value) + "], got " + std::to_string(v));
  return v;
}

}  // namespace

int64_t require_int(const json& obj, const std::string& key, const std::string& where,
                    int64_t min_value, int64_t max_value) {
  if (!obj.contains(key)) throw_error(where, field(key) + " is missing (expected an integer)");
  return int_from(obj, key, where, min_value, max_value);
}

int64_t optional_int(const json& obj, const std::string& key, const std::string& where,
                     int64_t fallback, int64_t min_value, int64_t max_value) {
  if (!obj.contains(key) || obj.at(key).is_null()) return fallback;
  return int_from(obj, key, where, min_value, max_value);
}

double require_number(const json& obj, const std::string& key, const std::string& where) {
  if (!obj.contains(key)) throw_error(where, field(key) + " is missing (expected a number)");
  double v = 0;
  if (!number_from(obj.at(key), &v))
    throw_error(where, field(key) + ": expected a finite number, got " + brief(obj.at(key)));
  return v;
}

double optional_number(const json& obj, const std::string& key, const std::string& where,
                       double fallback) {
  if (!obj.contains(key) || obj.at(key).is_null()) return fallback;
  return require_number(obj, key, where);
}

bool optional_bool(const json& obj, const std::string& key, const std::string& where,
                   bool fallback) {
  if (!obj.contains(key) || obj.at(key).is_null()) return fallback;
  if (!obj.at(key).is_boolean())
    throw_error(where, field(key) + ": expected true or false, got " + brief(obj.at(key)));
  return obj.at(key).get<bool>();
}

std::string require_string(const json& obj, const std::string& key, const std::string& where) {
  if (!obj.contains(key)) throw_error(where, field(key) + " is missing (expected a string)");
  if (!obj.at(key).is_string())
    throw_error(where, field(key) + ": expected a string, got " + brief(obj.at(key)));
  return obj.at(key).get<std::string>();
}

const json& require_object(const json& obj, const std::string& key, const std::string& where) {
  if (!obj.contains(key)) throw_error(where, field(key) + " is missing (expected an object)");
  if (!obj.at(key).is_object())
    throw_error(where, field(key) + ": expected an object, got " + brief(obj.at(key)));
  return obj.at(key);
}

}  // namespace jetlm::json_fields
