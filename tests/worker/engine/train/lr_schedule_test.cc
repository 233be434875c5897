#include "worker/engine/train/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>

namespace d2lora::engine {
namespace {

TEST(LrScheduleTest, WarmupIsLinearAndStartsAboveZero) {
  EXPECT_DOUBLE_EQ(LearningRateAt(1.0, LrSchedule::kCosine, 4, 20, 0), 0.25);
  EXPECT_DOUBLE_EQ(LearningRateAt(1.0, LrSchedule::kCosine, 4, 20, 3), 1.0);
}

TEST(LrScheduleTest, CosineLinearConstantAfterWarmup) {
  // warmup 2, total 12: p = (step - 2) / 10.
  EXPECT_DOUBLE_EQ(LearningRateAt(2.0, LrSchedule::kCosine, 2, 12, 2), 2.0);
  EXPECT_NEAR(LearningRateAt(2.0, LrSchedule::kCosine, 2, 12, 7), 1.0, 1e-12);  // p = 0.5
  EXPECT_NEAR(LearningRateAt(2.0, LrSchedule::kCosine, 2, 12, 11), 2.0 * 0.5 * (1 + std::cos(M_PI * 0.9)), 1e-12);
  EXPECT_NEAR(LearningRateAt(2.0, LrSchedule::kLinear, 2, 12, 7), 1.0, 1e-12);
  EXPECT_NEAR(LearningRateAt(2.0, LrSchedule::kLinear, 2, 12, 11), 0.2, 1e-12);
  EXPECT_DOUBLE_EQ(LearningRateAt(2.0, LrSchedule::kConstant, 2, 12, 11), 2.0);
}

TEST(LrScheduleTest, NoWarmupAndStepsPastTheEnd) {
  EXPECT_DOUBLE_EQ(LearningRateAt(1.0, LrSchedule::kLinear, 0, 10, 0), 1.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(1.0, LrSchedule::kLinear, 0, 10, 25), 0.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(1.0, LrSchedule::kCosine, 0, 10, 25), 0.0);
}

}  // namespace
}  // namespace d2lora::engine
