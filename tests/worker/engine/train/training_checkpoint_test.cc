#include <torch/torch.h>

#include "worker/engine/train/training_checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/support/test_support.h"

namespace d2lora::engine {
namespace {

using d2lora::testing::TempDir;

TrainingState SampleState() {
  TrainingState s;
  s.step = 7;
  s.cursor = {1, 2};
  s.optimizer_steps = 6;
  s.parameters = {{"layer.lora_A", torch::arange(6, torch::kFloat32).view({2, 3})},
                  {"layer.tau_raw", torch::tensor({0.25f})}};
  s.optimizer = {{"layer.lora_A.exp_avg", torch::ones({2, 3})}, {"layer.lora_A.exp_avg_sq", torch::ones({2, 3})}};
  s.volatility = {{"window", 50}, {"losses", {1.0, 2.0}}};
  s.nonfinite_streak = 1;
  s.skipped_steps = 2;
  s.elapsed_seconds = 12.5;
  s.fingerprint = {{"method", "d2lora"}, {"train", {{"lr", 0.001}, {"seed", 3}}}};
  return s;
}

TEST(TrainingCheckpointTest, RoundTripsEveryField) {
  TempDir tmp;
  const std::string dir = CheckpointPath(tmp.file("checkpoints"), 7);
  EXPECT_EQ(dir, tmp.file("checkpoints/step-7"));
  bool extra_called = false;
  D2_ASSERT_OK(WriteTrainingCheckpoint(dir, SampleState(), [&](const std::string& staged) {
    extra_called = true;
    d2lora::testing::WriteFile(staged + "/note.txt", "hi");
    return absl::OkStatus();
  }));
  EXPECT_TRUE(extra_called);
  EXPECT_TRUE(std::filesystem::exists(dir + "/note.txt"));
  auto read = ReadTrainingCheckpoint(dir);
  ASSERT_TRUE(read.ok()) << read.status();
  const TrainingState want = SampleState();
  EXPECT_EQ(read->step, 7);
  EXPECT_EQ(read->cursor, want.cursor);
  EXPECT_EQ(read->optimizer_steps, 6);
  EXPECT_EQ(read->nonfinite_streak, 1);
  EXPECT_EQ(read->skipped_steps, 2);
  EXPECT_DOUBLE_EQ(read->elapsed_seconds, 12.5);
  EXPECT_EQ(read->volatility, want.volatility);
  EXPECT_EQ(read->fingerprint, want.fingerprint);
  ASSERT_EQ(read->parameters.size(), 2u);
  EXPECT_EQ(read->parameters[0].first, "layer.lora_A");
  EXPECT_TRUE(torch::equal(read->parameters[0].second, want.parameters[0].second));
  ASSERT_EQ(read->optimizer.size(), 2u);
  EXPECT_TRUE(torch::equal(read->optimizer[1].second, want.optimizer[1].second));
}

TEST(TrainingCheckpointTest, CorruptFilesAreRefusedWithTheirName) {
  TempDir tmp;
  const std::string dir = tmp.file("step-1");
  D2_ASSERT_OK(WriteTrainingCheckpoint(dir, SampleState()));
  {
    std::fstream f(dir + "/" + kParametersFile, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  auto read = ReadTrainingCheckpoint(dir);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(read.status().message().find(std::string(kParametersFile) + ": checksum mismatch"), std::string::npos)
      << read.status();

  d2lora::testing::WriteFile(dir + "/" + kTrainerStateFile, "{\"format_version\": 1, \"step\": ");
  read = ReadTrainingCheckpoint(dir);
  EXPECT_NE(read.status().message().find("trainer_state.json: not a JSON object"), std::string::npos) << read.status();

  std::filesystem::remove(dir + "/" + kTrainerStateFile);
  read = ReadTrainingCheckpoint(dir);
  EXPECT_NE(read.status().message().find(kTrainerStateFile), std::string::npos) << read.status();
}

// A checkpoints folder resolves to its newest checkpoint that verifies: a
// corrupt newest one is skipped (and named), the previous one used.
TEST(TrainingCheckpointTest, ResolvingSkipsACorruptNewestCheckpoint) {
  TempDir tmp;
  const std::string ckpts = tmp.file("checkpoints");
  for (int step : {4, 8}) D2_ASSERT_OK(WriteTrainingCheckpoint(CheckpointPath(ckpts, step), SampleState()));
  D2_EXPECT_OK(VerifyTrainingCheckpoint(CheckpointPath(ckpts, 8)));
  {
    std::fstream f(CheckpointPath(ckpts, 8) + "/" + kOptimizerFile, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  absl::Status verified = VerifyTrainingCheckpoint(CheckpointPath(ckpts, 8));
  EXPECT_EQ(verified.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(verified.message().find(std::string(kOptimizerFile) + ": checksum mismatch"), std::string::npos) << verified;

  std::vector<std::string> skipped;
  auto resolved = ResolveResumePath(ckpts, &skipped);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(*resolved, CheckpointPath(ckpts, 4));
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("step-8/optimizer.safetensors: checksum mismatch"), std::string::npos) << skipped[0];
  // A checkpoint named itself is never swapped for another.
  resolved = ResolveResumePath(CheckpointPath(ckpts, 8));
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(*resolved, CheckpointPath(ckpts, 8));

  // None verifies: the newest, whose reading names the damage.
  {
    std::fstream f(CheckpointPath(ckpts, 4) + "/" + kParametersFile, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  skipped.clear();
  resolved = ResolveResumePath(ckpts, &skipped);
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(*resolved, CheckpointPath(ckpts, 8));
  EXPECT_EQ(skipped.size(), 2u);
}

TEST(TrainingCheckpointTest, FingerprintMismatchNamesTheKey) {
  const nlohmann::json a = {{"method", "d2lora"}, {"train", {{"lr", 0.001}, {"seed", 3}}}};
  D2_EXPECT_OK(CheckFingerprint(a, a));
  nlohmann::json b = a;
  b["train"]["lr"] = 0.01;
  absl::Status s = CheckFingerprint(a, b);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("checkpoint was written with train.lr = 0.001, this run has train.lr = 0.01"),
            std::string::npos)
      << s;
  nlohmann::json c = a;
  c["train"].erase("seed");
  EXPECT_NE(CheckFingerprint(a, c).message().find("train.seed"), std::string::npos);
  c = a;
  c["adapter"] = {{"r", 8}};
  EXPECT_NE(CheckFingerprint(a, c).message().find("adapter.r"), std::string::npos);
  // Written before train.micro_batch_size became free on resume: still resumable.
  nlohmann::json older = a;
  older["train"]["micro_batch_size"] = 4;
  D2_EXPECT_OK(CheckFingerprint(older, a));
  older["train"]["batch_size"] = 16;
  EXPECT_NE(CheckFingerprint(older, a).message().find("train.batch_size"), std::string::npos);
}

TEST(TrainingCheckpointTest, ListsPrunesAndResolvesCheckpoints) {
  TempDir tmp;
  const std::string ckpts = tmp.file("out/checkpoints");
  for (int step : {10, 2, 30}) D2_ASSERT_OK(WriteTrainingCheckpoint(CheckpointPath(ckpts, step), SampleState()));
  std::filesystem::create_directories(ckpts + "/step-99");  // incomplete: no trainer_state.json
  std::filesystem::create_directories(ckpts + "/other");
  auto all = ListCheckpoints(ckpts);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].first, 2);
  EXPECT_EQ(all[2].first, 30);

  auto resolved = ResolveResumePath(tmp.file("out"));
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(*resolved, CheckpointPath(ckpts, 30));
  resolved = ResolveResumePath(CheckpointPath(ckpts, 10));
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(*resolved, CheckpointPath(ckpts, 10));
  resolved = ResolveResumePath(tmp.file("nowhere"));
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kNotFound);

  D2_ASSERT_OK(PruneCheckpoints(ckpts, 2));
  all = ListCheckpoints(ckpts);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 10);
}

}  // namespace
}  // namespace d2lora::engine
