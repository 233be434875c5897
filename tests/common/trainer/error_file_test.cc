#include "common/trainer/error_file.h"

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "common/status_macros.h"
#include "common/trainer/output_names.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace d2lora::trainer {
namespace {

using d2lora::testing::ReadFile;
using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;

absl::Status Fails() { return WithReason(absl::FailedPreconditionError("training diverged: x"), FailureReason::kDiverged); }

absl::Status PassesItOn() {
  D2_RETURN_IF_ERROR(Fails());
  return absl::OkStatus();
}

TEST(ErrorFileTest, ReasonAndStepRideOnTheStatusThroughReturns) {
  absl::Status status = WithStep(PassesItOn(), 12);
  EXPECT_EQ(ReasonOf(status), FailureReason::kDiverged);
  EXPECT_EQ(StepOf(status), 12);
  EXPECT_EQ(StepOf(WithStep(status, 99)), 12);  // the innermost step stays
  EXPECT_EQ(ReasonOf(absl::InternalError("x")), FailureReason::kNone);
  EXPECT_EQ(StepOf(absl::InternalError("x")), std::nullopt);
  EXPECT_TRUE(WithReason(absl::OkStatus(), FailureReason::kDiverged).ok());
  EXPECT_EQ(ReasonOf(WithReason(absl::OkStatus(), FailureReason::kDiverged)), FailureReason::kNone);
}

TEST(ErrorFileTest, TheRetryRule) {
  // Met again by the same spec, data and seeds: not retried.
  EXPECT_FALSE(IsRetryable(absl::StatusCode::kInvalidArgument, FailureReason::kNone));
  EXPECT_FALSE(IsRetryable(absl::StatusCode::kNotFound, FailureReason::kNone));
  EXPECT_FALSE(IsRetryable(absl::StatusCode::kFailedPrecondition, FailureReason::kNone));
  EXPECT_FALSE(IsRetryable(absl::StatusCode::kInternal, FailureReason::kDiverged));
  EXPECT_FALSE(IsRetryable(absl::StatusCode::kFailedPrecondition, FailureReason::kMergeCheckFailed));
  EXPECT_FALSE(IsRetryable(absl::StatusCode::kInvalidArgument, FailureReason::kUsage));
  // A lost peer, I/O, memory, a stop: retried.
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kInternal, FailureReason::kNone));
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kUnavailable, FailureReason::kNone));
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kAborted, FailureReason::kNone));
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kResourceExhausted, FailureReason::kNone));
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kDataLoss, FailureReason::kNone));
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kAborted, FailureReason::kStopped));
}

TEST(ErrorFileTest, ErrorFromStatusTakesCodeMessageReasonAndStep) {
  const TrainerError e = ErrorFromStatus(WithStep(Fails(), 7));
  EXPECT_EQ(e.code, absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(e.message, "training diverged: x");
  EXPECT_EQ(e.reason, FailureReason::kDiverged);
  EXPECT_FALSE(e.retryable);
  EXPECT_EQ(e.step, 7);
  const TrainerError crash = ErrorFromStatus(absl::InternalError("peer went away"));
  EXPECT_TRUE(crash.retryable);
  EXPECT_EQ(crash.step, std::nullopt);
}

TEST(ErrorFileTest, WrittenAndReadBack) {
  TempDir dir;
  TrainerError e;
  e.code = absl::StatusCode::kFailedPrecondition;
  e.message = "MERGE_CHECK_FAILED: the merged model (bfloat16) was not published: \"quoted\"\nsecond line";
  e.reason = FailureReason::kMergeCheckFailed;
  e.retryable = false;
  e.step = 40;
  const std::string path = dir.file("error.json");
  ASSERT_TRUE(WriteErrorFile(path, e).ok());
  absl::StatusOr<TrainerError> back = ReadErrorFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->code, e.code);
  EXPECT_EQ(back->message, e.message);
  EXPECT_EQ(back->reason, e.reason);
  EXPECT_EQ(back->retryable, e.retryable);
  EXPECT_EQ(back->step, e.step);
  EXPECT_NE(ReadFile(path).find("\"reason\": \"MERGE_CHECK_FAILED\""), std::string::npos) << ReadFile(path);

  TrainerError plain;
  plain.code = absl::StatusCode::kInternal;
  plain.message = "boom";
  ASSERT_TRUE(WriteErrorFile(path, plain).ok());
  EXPECT_EQ(ReadFile(path).find("reason"), std::string::npos);  // absent, not ""
  EXPECT_EQ(ReadFile(path).find("step"), std::string::npos);
  back = ReadErrorFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->reason, FailureReason::kNone);
  EXPECT_EQ(back->step, std::nullopt);
  EXPECT_TRUE(back->retryable);
}

TEST(ErrorFileTest, BadFilesNameThePathAndTheField) {
  TempDir dir;
  const std::string path = dir.file("error.json");
  EXPECT_EQ(ReadErrorFile(path).status().code(), absl::StatusCode::kNotFound);
  const std::pair<const char*, const char*> cases[] = {
      {"{\"code\": \"INTERNAL\", \"mess", "not JSON"},
      {"[1]", "not a JSON object"},
      {"{\"message\": \"m\", \"retryable\": true}", "field \"code\""},
      {"{\"code\": \"NOPE\", \"message\": \"m\", \"retryable\": true}", "\"NOPE\" is not an error code's name"},
      {"{\"code\": \"OK\", \"message\": \"m\", \"retryable\": true}", "\"OK\" is not an error code's name"},
      {"{\"code\": \"INTERNAL\", \"retryable\": true}", "field \"message\""},
      {"{\"code\": \"INTERNAL\", \"message\": \"m\", \"retryable\": \"yes\"}", "field \"retryable\""},
      {"{\"code\": \"INTERNAL\", \"message\": \"m\", \"retryable\": true, \"reason\": \"BORED\"}", "field \"reason\""},
      {"{\"code\": \"INTERNAL\", \"message\": \"m\", \"retryable\": true, \"step\": -1}", "field \"step\""},
  };
  for (const auto& [text, expected] : cases) {
    WriteFile(path, text);
    absl::StatusOr<TrainerError> e = ReadErrorFile(path);
    ASSERT_FALSE(e.ok()) << text;
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(e.status().message().find(path + ": "), std::string::npos) << e.status();
    EXPECT_NE(e.status().message().find(expected), std::string::npos) << e.status();
  }
}

TEST(ErrorFileTest, TheEnvironmentNamesTheFile) {
  TempDir dir;
  TrainerError e;
  e.code = absl::StatusCode::kInvalidArgument;
  e.message = "bad";
  ::unsetenv(kErrorFileEnv);
  EXPECT_TRUE(WriteErrorFileFromEnvironment(e).ok());  // nowhere to write: nothing to do
  const std::string path = dir.file("error.json");
  ::setenv(kErrorFileEnv, path.c_str(), 1);
  EXPECT_TRUE(WriteErrorFileFromEnvironment(e).ok());
  ::unsetenv(kErrorFileEnv);
  absl::StatusOr<TrainerError> back = ReadErrorFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->message, "bad");

  // Under torchrun: TORCHELASTIC_ERROR_FILE gets torchelastic's format as well.
  const std::string elastic = dir.file("torchelastic.json");
  ::setenv(kTorchelasticErrorFileEnv, elastic.c_str(), 1);
  EXPECT_TRUE(WriteErrorFileFromEnvironment(e).ok());
  ::unsetenv(kTorchelasticErrorFileEnv);
  nlohmann::json j = nlohmann::json::parse(::d2lora::testing::ReadFile(elastic));
  EXPECT_EQ(j["message"]["message"], "INVALID_ARGUMENT: bad");
  EXPECT_TRUE(j["message"]["extraInfo"]["timestamp"].is_string());
}

// The form torchelastic's error_handler.py writes (message.message,
// extraInfo.py_callstack, extraInfo.timestamp as a string of unix seconds).
TEST(ErrorFileTest, TorchelasticForm) {
  TrainerError e;
  e.code = absl::StatusCode::kFailedPrecondition;
  e.message = "training diverged: 5 non-finite steps";
  e.reason = FailureReason::kDiverged;
  e.retryable = false;
  e.step = 12;
  const nlohmann::json j = nlohmann::json::parse(TorchelasticErrorJson(e, 1796563242));
  EXPECT_EQ(j, nlohmann::json::parse(R"({"message": {
      "message": "FAILED_PRECONDITION: training diverged: 5 non-finite steps",
      "extraInfo": {"py_callstack": "d2lora train (C++): FAILED_PRECONDITION, reason DIVERGED, at step 12, not retryable",
                    "timestamp": "1796563242"}}})"));
}

TEST(OutputNamesTest, CheckpointNames) {
  EXPECT_EQ(CheckpointName(12), "checkpoints/step-12");
  EXPECT_EQ(CompleteCheckpointStep("checkpoints/step-12/trainer_state.json"), 12);
  EXPECT_EQ(CompleteCheckpointStep("checkpoints/step-12/parameters.safetensors"), std::nullopt);
  EXPECT_EQ(CompleteCheckpointStep("checkpoints/step-0/trainer_state.json"), std::nullopt);
  EXPECT_EQ(CompleteCheckpointStep("checkpoints/step-x/trainer_state.json"), std::nullopt);
  EXPECT_EQ(CompleteCheckpointStep("adapter/step-3/trainer_state.json"), std::nullopt);
  EXPECT_EQ(CompleteCheckpointStep("checkpoints/step-3/adapter/trainer_state.json"), std::nullopt);
}

}  // namespace
}  // namespace d2lora::trainer
