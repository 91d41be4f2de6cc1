// Environment switches (A/B runs, kernel choices). One reader for all of them, so every
// variable takes the same spellings and a misspelt value is an error that names the variable,
// not a silent fallback to the default.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

namespace jetlm {

// Unset or empty: `fallback`. "1" / "0": on / off. Anything else throws jetlm::Error.
bool env_switch(const char* name, bool fallback);

// Unset or empty: `fallback`. A whole decimal integer in [lo, hi], else throws jetlm::Error.
int64_t env_int(const char* name, int64_t fallback, int64_t lo, int64_t hi);

// Unset or empty: `fallback`. One of `choices`, else throws jetlm::Error listing them.
std::string env_choice(const char* name, const std::string& fallback, std::initializer_list<const char*> choices);

}  // namespace jetlm
