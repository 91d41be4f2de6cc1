// Environment switches: one spelling for every JETLM_* switch, and a misspelt value is an error
// that names the variable.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/env.h"
#include "core/error.h"

namespace jetlm {
namespace {

constexpr const char* kVar = "JETLM_TEST_ENV_SWITCH";

struct ScopedEnv {
  explicit ScopedEnv(const char* value) {
    if (value) ::setenv(kVar, value, 1);
    else ::unsetenv(kVar);
  }
  ~ScopedEnv() { ::unsetenv(kVar); }
};

// The error message names the variable and the value it got.
template <typename F>
void expect_error_naming(F&& f, const std::string& value) {
  try {
    f();
    ADD_FAILURE() << "expected jetlm::Error for '" << value << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(kVar), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'" + value + "'"), std::string::npos) << e.what();
  }
}

TEST(EnvSwitch, UnsetOrEmptyGivesTheDefault) {
  for (const char* value : {static_cast<const char*>(nullptr), ""}) {
    ScopedEnv env(value);
    EXPECT_TRUE(env_switch(kVar, true));
    EXPECT_FALSE(env_switch(kVar, false));
    EXPECT_EQ(env_int(kVar, 7, 0, 10), 7);
    EXPECT_EQ(env_choice(kVar, "b", {"a", "b"}), "b");
  }
}

TEST(EnvSwitch, ZeroAndOneOverrideTheDefault) {
  {
    ScopedEnv env("1");
    EXPECT_TRUE(env_switch(kVar, false));
  }
  {
    ScopedEnv env("0");
    EXPECT_FALSE(env_switch(kVar, true));
  }
}

TEST(EnvSwitch, OtherSpellingsAreErrors) {
  for (const char* value : {"true", "on", "yes", "2", " 1", "1 ", "00"}) {
    ScopedEnv env(value);
    expect_error_naming([] { env_switch(kVar, true); }, value);
  }
}

TEST(EnvInt, ParsesWholeIntegersInRange) {
  {
    ScopedEnv env("42");
    EXPECT_EQ(env_int(kVar, 0, 16, 64), 42);
  }
  {
    ScopedEnv env("-3");
    EXPECT_EQ(env_int(kVar, 0, -5, 5), -3);
  }
  for (const char* value : {"15", "65", "4x", "x", "1.5", "99999999999999999999999"}) {
    ScopedEnv env(value);
    expect_error_naming([] { env_int(kVar, 32, 16, 64); }, value);
  }
}

TEST(EnvChoice, OnlyTheListedValues) {
  {
    ScopedEnv env("wmma");
    EXPECT_EQ(env_choice(kVar, "registers", {"registers", "wmma"}), "wmma");
  }
  ScopedEnv env("WMMA");
  expect_error_naming([] { env_choice(kVar, "registers", {"registers", "wmma"}); }, "WMMA");
}

}  // namespace
}  // namespace jetlm
