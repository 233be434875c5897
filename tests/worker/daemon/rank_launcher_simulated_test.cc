#include "worker/daemon/rank_launcher_simulated.h"

#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/trainer/metrics_events.h"
#include "common/trainer/output_names.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace d2lora::worker {
namespace {

using d2lora::testing::ReadFile;
using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;

class SimulatedRankTest : public ::testing::Test {
 protected:
  RankLaunch Launch(int rank, const std::string& spec_text) {
    WriteFile(dir_.file("spec.yaml"), spec_text);
    RankLaunch launch;
    launch.argv = {"d2lora", "train", "--config", dir_.file("spec.yaml"), "--quiet", "--rank", std::to_string(rank)};
    launch.log_path = dir_.file("rank.log");
    launch.env = {std::string(trainer::kErrorFileEnv) + "=" + dir_.file("error.json")};
    return launch;
  }
  std::string Spec() const {
    return "name: sim\nmodel: /m\ndata: {train: /t.jsonl}\noutput: {dir: " + dir_.file("out") + "}\n";
  }

  TempDir dir_;
};

TEST_F(SimulatedRankTest, RankZeroWritesWhatATrainerWrites) {
  SimulatedRankOptions options;
  options.run_time = absl::Milliseconds(200);
  options.step_time = absl::Milliseconds(40);
  SimulatedRankLauncher launcher(options);
  auto rank = launcher.Launch(Launch(0, Spec()));
  ASSERT_TRUE(rank.ok()) << rank.status();
  EXPECT_FALSE((*rank)->Poll().has_value());
  const std::optional<ExitStatus> exit = (*rank)->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->success()) << exit->Describe();
  EXPECT_TRUE(absl::StrContains(ReadFile(dir_.file("out/summary.json")), "\"completed\""));
  EXPECT_TRUE(absl::StrContains(ReadFile(dir_.file("out/spec.yaml")), "name: \"sim\""));
  int steps = 0, ends = 0;
  for (absl::string_view line : absl::StrSplit(ReadFile(dir_.file("out/metrics.jsonl")), '\n', absl::SkipEmpty())) {
    std::optional<trainer::MetricsEvent> event = trainer::ParseEventLine(line);
    ASSERT_TRUE(event.has_value()) << line;
    steps += std::holds_alternative<trainer::StepMetrics>(event->body) ? 1 : 0;
    ends += std::holds_alternative<trainer::EndInfo>(event->body) ? 1 : 0;
  }
  EXPECT_GE(steps, 3);
  EXPECT_EQ(ends, 1);
  EXPECT_TRUE(absl::StrContains(ReadFile(dir_.file("rank.log")), "step 1/5"));
  EXPECT_EQ(launcher.launched(), 1);
}

TEST_F(SimulatedRankTest, SigtermStopsLikeTheTrainerAndSigkillAtOnce) {
  SimulatedRankOptions options;
  options.run_time = absl::Seconds(60);
  SimulatedRankLauncher launcher(options);
  auto rank = launcher.Launch(Launch(1, Spec()));
  ASSERT_TRUE(rank.ok());
  (*rank)->Signal(SIGTERM);
  std::optional<ExitStatus> exit = (*rank)->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code, 1);
  auto error = trainer::ReadErrorFile(dir_.file("error.json"));
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_EQ(error->code, absl::StatusCode::kAborted);
  EXPECT_EQ(error->reason, trainer::FailureReason::kStopped);
  EXPECT_FALSE(std::filesystem::exists(dir_.file("out/summary.json")));  // rank 1 writes no outputs

  auto killed = launcher.Launch(Launch(0, Spec()));
  ASSERT_TRUE(killed.ok());
  (*killed)->Signal(SIGKILL);
  exit = (*killed)->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->signal, SIGKILL);
}

TEST_F(SimulatedRankTest, ASpecThatDoesNotLoadIsAUsageFailure) {
  SimulatedRankLauncher launcher;
  auto rank = launcher.Launch(Launch(0, "name: sim\nmodel: /m\ndata: {train: /t.jsonl}\ntrain: {batch_size: 0}\n"));
  ASSERT_TRUE(rank.ok());
  const std::optional<ExitStatus> exit = (*rank)->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code, 2);
  auto error = trainer::ReadErrorFile(dir_.file("error.json"));
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_EQ(error->code, absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(error->message, "train.batch_size = 0")) << error->message;
  EXPECT_FALSE(launcher.Launch(RankLaunch{}).ok());  // nothing to simulate
}

}  // namespace
}  // namespace d2lora::worker
