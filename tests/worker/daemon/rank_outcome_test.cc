// A failed rank reads from its error.json alone (worker/daemon/rank_outcome.h).
#include "worker/daemon/rank_outcome.h"

#include <gtest/gtest.h>

namespace d2lora::worker {
namespace {

using trainer::FailureReason;
using trainer::TrainerError;

ExitStatus Exited(int code) { return ExitStatus{code, 0}; }
ExitStatus Killed(int signal) { return ExitStatus{0, signal}; }

TrainerError Error(absl::StatusCode code, FailureReason reason, bool retryable, std::string message) {
  TrainerError e;
  e.code = code;
  e.reason = reason;
  e.retryable = retryable;
  e.message = std::move(message);
  return e;
}

TEST(RankOutcomeTest, AnInvalidSpecIsNotRetried) {
  const RankOutcome o = ClassifyRankExit(
      Exited(1), Error(absl::StatusCode::kInvalidArgument, FailureReason::kNone, false, "train.lr: must be > 0"),
      "d2lora train: error: train.lr: must be > 0");
  EXPECT_EQ(o.code, "INVALID_ARGUMENT");
  EXPECT_EQ(o.message, "train.lr: must be > 0");
  EXPECT_FALSE(o.retryable);
  EXPECT_FALSE(o.merge_check_failed);
}

TEST(RankOutcomeTest, ADivergenceIsNotRetried) {
  const RankOutcome o = ClassifyRankExit(
      Exited(1),
      Error(absl::StatusCode::kFailedPrecondition, FailureReason::kDiverged, false, "training diverged: ..."), "");
  EXPECT_EQ(o.code, "FAILED_PRECONDITION");
  EXPECT_FALSE(o.retryable);
}

TEST(RankOutcomeTest, TheFileDecidesNotTheLog) {
  // stderr's line names another code; the file wins.
  const RankOutcome o = ClassifyRankExit(
      Exited(1), Error(absl::StatusCode::kUnavailable, FailureReason::kNone, true, "peer 1 went away"),
      "d2lora train: error: INVALID_ARGUMENT out of memory training diverged: ");
  EXPECT_EQ(o.code, "UNAVAILABLE");
  EXPECT_EQ(o.message, "peer 1 went away");
  EXPECT_TRUE(o.retryable);
}

TEST(RankOutcomeTest, TheMergeGateKeepsItsArtifacts) {
  const RankOutcome o = ClassifyRankExit(
      Exited(1),
      Error(absl::StatusCode::kFailedPrecondition, FailureReason::kMergeCheckFailed, false,
            "MERGE_CHECK_FAILED: the merged model (bfloat16) was not published: ..."),
      "");
  EXPECT_TRUE(o.merge_check_failed);
  EXPECT_FALSE(o.retryable);
}

TEST(RankOutcomeTest, ACrashIsRetried) {
  // Killed: whatever a file says (none should be there).
  RankOutcome o = ClassifyRankExit(
      Killed(9), Error(absl::StatusCode::kInvalidArgument, FailureReason::kNone, false, "stale"), "");
  EXPECT_EQ(o.code, "INTERNAL");
  EXPECT_TRUE(o.retryable);
  EXPECT_EQ(o.message, "rank process killed by signal 9 (Killed)");
  // Exited without a word.
  o = ClassifyRankExit(Exited(134), absl::NotFoundError("no file"), "d2lora train: error: INVALID_ARGUMENT");
  EXPECT_EQ(o.code, "INTERNAL");
  EXPECT_TRUE(o.retryable);
  EXPECT_EQ(o.message,
            "rank process exited with code 134 without an error file; its last error line: "
            "d2lora train: error: INVALID_ARGUMENT");
  // A file that does not parse is no verdict either; the message says why.
  o = ClassifyRankExit(Exited(1), absl::InvalidArgumentError("/w/error.json: field \"code\": missing"), "");
  EXPECT_EQ(o.code, "INTERNAL");
  EXPECT_TRUE(o.retryable);
  EXPECT_EQ(o.message,
            "rank process exited with code 1 with an unreadable error file (/w/error.json: field \"code\": missing)");
}

}  // namespace
}  // namespace d2lora::worker
