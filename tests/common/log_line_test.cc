#include "common/log_line.h"

#include <gtest/gtest.h>

namespace d2lora {
namespace {

TEST(LogLineTest, UtcTimeProgramAndMessageOnOneLine) {
  const absl::Time t = absl::FromUnixSeconds(1738324800);  // 2025-01-31T12:00:00Z
  EXPECT_EQ(LogLine("d2lora-worker", "stopped", t), "2025-01-31T12:00:00Z d2lora-worker: stopped\n");
  EXPECT_EQ(LogLine("d2lora-coordinator", "", t), "2025-01-31T12:00:00Z d2lora-coordinator: \n");
}

}  // namespace
}  // namespace d2lora
