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

}  // namespace
}  // namespace d2lora::worker
