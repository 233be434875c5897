// One rank as a process (worker/engine/tasks/train_rank.h): a failure writes
// error.json to $D2LORA_ERROR_FILE before it returns.
#include "worker/engine/tasks/train_rank.h"

#include <cstdlib>

#include "common/trainer/error_file.h"
#include "common/trainer/output_names.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace d2lora::engine {
namespace {

using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;

class TrainRankTest : public ::testing::Test {
 protected:
  void SetUp() override { ::setenv(trainer::kErrorFileEnv, error_path_.c_str(), 1); }
  void TearDown() override { ::unsetenv(trainer::kErrorFileEnv); }

  TempDir dir_;
  const std::string error_path_ = dir_.file("error.json");
};

TEST_F(TrainRankTest, AnInvalidSpecWritesANonRetryableErrorFile) {
  WriteFile(dir_.file("spec.yaml"), "name: x\nmodel: m\ndata:\n  train: t.jsonl\ntrain:\n  lr: -1\n");
  TrainRankOptions options;
  options.config = dir_.file("spec.yaml");
  absl::StatusOr<TrainRankResult> result = RunTrainRank(options);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<trainer::TrainerError> error = trainer::ReadErrorFile(error_path_);
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_EQ(error->code, absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(error->message, result.status().message());
  EXPECT_NE(error->message.find("train.lr"), std::string::npos) << error->message;
  EXPECT_FALSE(error->retryable);
  EXPECT_EQ(error->reason, trainer::FailureReason::kNone);
  EXPECT_EQ(error->step, std::nullopt);  // it never started
}

TEST_F(TrainRankTest, AMissingSpecIsNotRetriedEither) {
  TrainRankOptions options;
  options.config = dir_.file("missing.yaml");
  ASSERT_FALSE(RunTrainRank(options).ok());
  absl::StatusOr<trainer::TrainerError> error = trainer::ReadErrorFile(error_path_);
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_NE(error->message.find("missing.yaml"), std::string::npos) << error->message;
  EXPECT_FALSE(error->retryable);
}

TEST_F(TrainRankTest, AFlagThatContradictsTheSpecIsNamed) {
  WriteFile(dir_.file("spec.yaml"), "name: x\nmodel: m\ndata:\n  train: t.jsonl\n");
  TrainRankOptions options;
  options.config = dir_.file("spec.yaml");
  options.flags.world_size = 3;
  options.flags.rank = 0;
  absl::StatusOr<TrainRankResult> result = RunTrainRank(options);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("differs from the spec's resources.world_size = 1"), std::string::npos)
      << result.status();
  absl::StatusOr<trainer::TrainerError> error = trainer::ReadErrorFile(error_path_);
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_EQ(error->code, absl::StatusCode::kInvalidArgument);
}

TEST(RankThreadsTest, SplitsTheCoresAmongTheRanksOnTheHost) {
  DistributedOptions local;
  local.world_size = 4;
  local.master_addr = "127.0.0.1";
  ::unsetenv("LOCAL_WORLD_SIZE");
  EXPECT_EQ(RankThreads(3, local, 16), 3);  // the spec decides
  EXPECT_EQ(RankThreads(0, local, 16), 4);  // every rank on this host
  EXPECT_EQ(RankThreads(0, local, 2), 1);   // never below one
  DistributedOptions remote = local;
  remote.master_addr = "10.0.0.7";
  EXPECT_EQ(RankThreads(0, remote, 16), 16);  // alone on this host, as far as it knows
  ::setenv("LOCAL_WORLD_SIZE", "2", 1);
  EXPECT_EQ(RankThreads(0, remote, 16), 8);  // torchrun says two share it
  ::setenv("LOCAL_WORLD_SIZE", "junk", 1);
  EXPECT_EQ(RankThreads(0, remote, 16), 16);
  ::unsetenv("LOCAL_WORLD_SIZE");
}

}  // namespace
}  // namespace d2lora::engine
