#include "worker/engine/train/guard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "common/trainer/error_file.h"

namespace d2lora::engine {
namespace {

using ::testing::HasSubstr;

GuardSpec On(double factor = 3, int64_t max_rollbacks = 2, double backoff = 0.5, int64_t skip = 1) {
  GuardSpec g;
  g.spike_factor = factor;
  g.max_rollbacks = max_rollbacks;
  g.lr_backoff = backoff;
  g.skip_batches = skip;
  return g;
}

TEST(TrainingGuardTest, OffByDefaultNeverTriggers) {
  TrainingGuard guard(GuardSpec{}, 0);
  EXPECT_FALSE(guard.enabled());
  EXPECT_FALSE(guard.Check(5, 1e9, true, 1.0, 0).has_value());
  EXPECT_FALSE(guard.Check(5, NAN, false, 1.0, 100).has_value());
}

TEST(TrainingGuardTest, ASpikeOverTheFactorTimesTheEmaTriggers) {
  TrainingGuard guard(On(3), 5);
  EXPECT_FALSE(guard.Check(1, 50.0, true, std::nullopt, 0).has_value());  // no EMA yet
  EXPECT_FALSE(guard.Check(7, 3.0, true, 1.0, 0).has_value());            // exactly 3x: not over
  auto why = guard.Check(7, 3.5, true, 1.0, 0);
  ASSERT_TRUE(why.has_value());
  EXPECT_THAT(*why, HasSubstr("loss spike at step 7: loss 3.5 > guard.spike_factor 3 x EMA 1"));
}

TEST(TrainingGuardTest, NonFiniteTriggersOnlyPastMaxNonfiniteSteps) {
  TrainingGuard guard(On(), 2);
  EXPECT_FALSE(guard.Check(4, NAN, false, 1.0, 1).has_value());
  EXPECT_FALSE(guard.Check(5, NAN, false, 1.0, 2).has_value());
  auto why = guard.Check(6, NAN, false, 1.0, 3);
  ASSERT_TRUE(why.has_value());
  EXPECT_THAT(*why, HasSubstr("non-finite loss at step 6, 3 step(s) in a row (train.max_nonfinite_steps = 2)"));
  EXPECT_THAT(*guard.Check(6, 2.0, false, 1.0, 3), HasSubstr("non-finite gradients"));
}

TEST(TrainingGuardTest, RollbacksBackOffSkipAndRunOut) {
  TrainingGuard guard(On(3, 2, 0.5, 1), 0);
  ASSERT_TRUE(guard.Record(10, "spike one").ok());
  EXPECT_EQ(guard.state().rollbacks, 1);
  EXPECT_DOUBLE_EQ(guard.lr_scale(), 0.5);
  EXPECT_TRUE(guard.Skips(10));
  EXPECT_TRUE(guard.Skips(11));
  EXPECT_FALSE(guard.Skips(9));
  EXPECT_FALSE(guard.Skips(12));
  ASSERT_TRUE(guard.Record(20, "spike two").ok());
  EXPECT_DOUBLE_EQ(guard.lr_scale(), 0.25);
  absl::Status third = guard.Record(30, "spike three");
  EXPECT_EQ(third.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(trainer::ReasonOf(third), trainer::FailureReason::kDiverged);
  EXPECT_THAT(third.message(), HasSubstr("training diverged: spike three; 2 rollback(s) already (guard.max_rollbacks = 2)"));
  EXPECT_EQ(guard.state().rollbacks, 2);  // unchanged by the refusal
  EXPECT_FALSE(guard.Skips(30));
}

TEST(TrainingGuardTest, StateRoundTripsThroughJsonAndBadStateIsNamed) {
  TrainingGuard guard(On(3, 5, 0.5, 2), 0);
  ASSERT_TRUE(guard.Record(7, "x").ok());
  auto back = GuardStateFromJson(GuardStateToJson(guard.state()), "t.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->rollbacks, 1);
  EXPECT_EQ(back->lr_scale, 0.5);
  EXPECT_EQ(back->skipped, (std::set<int64_t>{7, 8, 9}));
  nlohmann::json bad = GuardStateToJson(guard.state());
  bad["lr_scale"] = 2;
  EXPECT_THAT(GuardStateFromJson(bad, "t.json").status().message(), HasSubstr("t.json: guard.lr_scale"));
  bad = GuardStateToJson(guard.state());
  bad["skipped_batches"] = {1, -2};
  EXPECT_THAT(GuardStateFromJson(bad, "t.json").status().message(), HasSubstr("t.json: guard.skipped_batches"));
  EXPECT_EQ(GuardStateFromJson(nlohmann::json::array(), "t.json").status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace d2lora::engine
