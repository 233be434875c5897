#include "server/submit_memory.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/status_macros.h"
#include "server/artifact_store_memory.h"
#include "tests/server/server_test_util.h"
#include "tests/support/test_support.h"

namespace d2lora::server {
namespace {

using testing::Put;

v1::JobSpec Spec(const std::string& model) {
  v1::JobSpec s;
  s.set_name("m");
  s.set_model(model);
  s.mutable_data()->set_train("upload:up-data/train.jsonl");
  s.mutable_train()->set_batch_size(4);
  s.mutable_train()->set_micro_batch_size(4);
  return s;
}

TEST(PlanJobMemoryTest, PlansFromAnUploadedOrReadableModel) {
  MemoryArtifactStore artifacts;
  Put(artifacts, "uploads/up-model/config.json", testing::kTinyModelConfigJson);
  Put(artifacts, "uploads/up-model/model.safetensors", std::string(1000, 'w'));
  Put(artifacts, "uploads/up-data/train.jsonl", std::string(2000, 'd'));
  auto planned = PlanJobMemory(Spec("upload:up-model"), artifacts);
  ASSERT_TRUE(planned.ok()) << planned.status();
  EXPECT_GT(planned->bytes, 0);
  EXPECT_NE(planned->note.find("memory plan: "), std::string::npos) << planned->note;

  // The data files' bytes bound the data term: more data, a larger plan.
  Put(artifacts, "uploads/up-data/train.jsonl", std::string(2000000, 'd'));
  auto more = PlanJobMemory(Spec("upload:up-model"), artifacts);
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->bytes - planned->bytes, (2000000 - 2000) * 9);

  // A path this host can read plans the same as the upload.
  d2lora::testing::TempDir dir;
  std::filesystem::create_directories(dir.file("model"));
  d2lora::testing::WriteFile(dir.file("model/config.json"), testing::kTinyModelConfigJson);
  d2lora::testing::WriteFile(dir.file("model/model.safetensors"), std::string(1000, 'w'));
  auto local = PlanJobMemory(Spec(dir.file("model")), artifacts);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(local->bytes, more->bytes);
}

TEST(PlanJobMemoryTest, AModelThisHostCannotReadGetsNoPlan) {
  MemoryArtifactStore artifacts;
  auto planned = PlanJobMemory(Spec("/nowhere/model"), artifacts);
  ASSERT_TRUE(planned.ok()) << planned.status();
  EXPECT_EQ(planned->bytes, 0);
  EXPECT_NE(planned->note.find("no memory plan: /nowhere/model/config.json cannot be read"), std::string::npos)
      << planned->note;
}

TEST(PlanJobMemoryTest, ABadConfigOrASpecThatDoesNotFitTheModelIsRefused) {
  MemoryArtifactStore artifacts;
  Put(artifacts, "uploads/up-bad/config.json", R"({"model_type": "llama"})");
  auto bad = PlanJobMemory(Spec("upload:up-bad"), artifacts);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("spec.model: upload:up-bad/config.json"), std::string::npos) << bad.status();

  Put(artifacts, "uploads/up-model/config.json", testing::kTinyModelConfigJson);
  v1::JobSpec s = Spec("upload:up-model");
  s.mutable_adapter()->add_target_modules("cross_attn");
  auto none = PlanJobMemory(s, artifacts);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("adapter.target_modules"), std::string::npos) << none.status();
}

TEST(CheckFitsAWorkerTest, RefusesWhatFitsNoSlotNamingBothSizes) {
  v1::RegisterWorkerRequest small, big, silent;
  small.add_slots()->set_memory_bytes(4000);
  small.add_slots()->set_memory_bytes(4000);
  big.add_slots()->set_memory_bytes(9000);
  silent.add_slots();  // advertises no memory
  EXPECT_TRUE(CheckFitsAWorker(8000, {&small, &big}).ok());
  EXPECT_TRUE(CheckFitsAWorker(8000, {}).ok());          // no worker yet: cannot judge
  EXPECT_TRUE(CheckFitsAWorker(0, {&small}).ok());       // no plan
  EXPECT_TRUE(CheckFitsAWorker(8000, {&small, &silent}).ok());
  absl::Status s = CheckFitsAWorker(10000, {&small, &big});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("predicts 10000 bytes"), std::string::npos) << s;
  EXPECT_NE(s.message().find("the largest worker slot has 9000 bytes"), std::string::npos) << s;
}

}  // namespace
}  // namespace d2lora::server
