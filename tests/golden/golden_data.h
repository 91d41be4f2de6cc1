// The golden cases of tests/golden/data (written by tests/reference/make_goldens.py): each is a
// random-weight checkpoint plus golden.safetensors with the float64 reference's results. Shared by
// the CPU golden tests and the CUDA engine tests.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "test_util.h"

namespace jetlm::golden {

namespace fs = std::filesystem;

inline std::string golden_root() { return test::source_dir() + "/tests/golden/data"; }

inline std::vector<std::string> case_names() {
  std::vector<std::string> names;
  if (fs::is_directory(golden_root()))
    for (const auto& entry : fs::directory_iterator(golden_root()))
      if (fs::exists(entry.path() / "golden.safetensors")) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

struct Golden {
  std::vector<int32_t> ids;
  std::vector<float> logits;                      // [T, vocab]
  std::map<int, std::vector<float>> hidden;       // layer -> [T, D]
  std::vector<int32_t> greedy_prompt, greedy_tokens;
  double tolerance = 0;
};

template <typename T>
std::vector<T> read_tensor(const SafetensorsFile& file, const std::string& name, DType dtype) {
  const TensorInfo* info = file.find(name);
  if (info == nullptr) return {};
  EXPECT_EQ(info->dtype, dtype) << name;
  std::vector<T> out(size_t(info->numel()));
  std::memcpy(out.data(), file.tensor_data(*info), out.size() * sizeof(T));
  return out;
}

inline Golden read_golden(const std::string& dir) {
  SafetensorsFile file(dir + "/golden.safetensors");
  Golden g;
  g.ids = read_tensor<int32_t>(file, "ids", DType::I32);
  g.logits = read_tensor<float>(file, "logits", DType::F32);
  g.greedy_prompt = read_tensor<int32_t>(file, "greedy.prompt", DType::I32);
  g.greedy_tokens = read_tensor<int32_t>(file, "greedy.tokens", DType::I32);
  for (const TensorInfo& info : file.header().tensors)
    if (info.name.rfind("hidden.", 0) == 0)
      g.hidden[std::stoi(info.name.substr(7))] = read_tensor<float>(file, info.name, DType::F32);
  const auto& meta = file.header().metadata;
  EXPECT_TRUE(meta.count("tolerance")) << dir << ": golden.safetensors has no tolerance metadata";
  g.tolerance = meta.count("tolerance") ? std::stod(meta.at("tolerance")) : 0.0;
  return g;
}

}  // namespace jetlm::golden
