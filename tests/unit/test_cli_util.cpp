// CLI helpers: the rule that puts a model's weights on 2 MiB pages by default.
#include <gtest/gtest.h>

#include "cli_util.h"

namespace jetlm::cli {
namespace {

constexpr int64_t kGB = int64_t(1) << 30;

TEST(WeightPlacementAuto, NeedsTransparentHugePagesAndHalfTheAvailableMemory) {
  const std::string always = "[always] madvise never\n", madvise = "always [madvise] never\n",
                    never = "always madvise [never]\n";
  EXPECT_TRUE(auto_weights_on_hugepages(always, 4 * kGB, 16 * kGB));
  EXPECT_TRUE(auto_weights_on_hugepages(madvise, 4 * kGB, 8 * kGB));  // exactly half
  EXPECT_FALSE(auto_weights_on_hugepages(madvise, 4 * kGB + 1, 8 * kGB));
  EXPECT_FALSE(auto_weights_on_hugepages(never, 1 * kGB, 16 * kGB));
  EXPECT_FALSE(auto_weights_on_hugepages("", 1 * kGB, 16 * kGB));   // no THP file (not Linux, container)
  EXPECT_FALSE(auto_weights_on_hugepages(always, 0, 16 * kGB));     // no safetensors found
  EXPECT_FALSE(auto_weights_on_hugepages(always, 1 * kGB, 0));      // MemAvailable unknown
}

TEST(WeightPlacementAuto, FlagsAndTheGpuDecide) {
  const std::string dir = std::string(JETLM_SOURCE_DIR) + "/models/jet-postnas-tiny";
  EXPECT_EQ(weight_placement(HugepagesFlags{true, false}, "cpu", dir), WeightPlacement::Memory);
  EXPECT_EQ(weight_placement(HugepagesFlags{false, true}, "cpu", dir), WeightPlacement::Mapped);
  EXPECT_EQ(weight_placement(HugepagesFlags{true, false}, "cuda", dir), WeightPlacement::Mapped);
  EXPECT_EQ(weight_placement(HugepagesFlags{}, "cuda", dir), WeightPlacement::Mapped);
  // Commands whose default is the map (generate) copy only when asked.
  EXPECT_EQ(weight_placement(HugepagesFlags{false, false, false}, "cpu", dir), WeightPlacement::Mapped);
  EXPECT_EQ(weight_placement(HugepagesFlags{true, false, false}, "cpu", dir), WeightPlacement::Memory);
}

}  // namespace
}  // namespace jetlm::cli
