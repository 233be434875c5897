#include "worker/daemon/assignment_runner.h"

#include <gtest/gtest.h>

namespace d2lora::worker {
namespace {

// A retry resumes from the folder of its checkpoints, so that the trainer can
// fall back to the previous one when the newest fails its checksums.
TEST(AssignmentRunnerTest, ResumesFromTheCheckpointsFolder) {
  EXPECT_EQ(ResumeArgument("/w/jobs/j/attempt-2/rank-0", "resume/checkpoints/step-8"),
            "/w/jobs/j/attempt-2/rank-0/resume/checkpoints");
  EXPECT_EQ(ResumeArgument("/w/r", "resume/out"), "/w/r/resume/out");
  EXPECT_EQ(ResumeArgument("/w/r", "resume/elsewhere/step-8"), "/w/r/resume/elsewhere/step-8");
}

TEST(AssignmentRunnerTest, RecognisesADivergedRun) {
  EXPECT_TRUE(IsDivergence(
      "d2lora train: error: training diverged: non-finite loss at step 7, 6 step(s) in a row "
      "(train.max_nonfinite_steps = 5); lower train.lr, or clip harder with a smaller train.grad_clip"));
  EXPECT_TRUE(IsDivergence(
      "d2lora train: error: training diverged: loss spike at step 12: loss 9.1 > guard.spike_factor 3 x EMA 1.2; "
      "1 rollback(s) already (guard.max_rollbacks = 1); lower train.lr or guard.lr_backoff, or raise guard.skip_batches"));
  EXPECT_FALSE(IsDivergence("d2lora train: error: out of memory"));
  EXPECT_FALSE(IsDivergence(""));
}

TEST(AssignmentRunnerTest, RecognisesAMergeTheGateStopped) {
  EXPECT_TRUE(IsMergeCheckFailure(
      "d2lora train: error: MERGE_CHECK_FAILED: the merged model (bfloat16) was not published: "
      "logits: max_abs_diff 0.7 > 0.5; see merge_report.json"));
  EXPECT_FALSE(IsMergeCheckFailure("d2lora train: error: FAILED_PRECONDITION: data.train: no such file"));
  EXPECT_FALSE(IsMergeCheckFailure(""));
}

}  // namespace
}  // namespace d2lora::worker
