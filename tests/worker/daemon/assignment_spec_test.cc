#include "worker/daemon/assignment_spec.h"

#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "common/spec/job_spec.h"

namespace d2lora::worker {
namespace {

using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;

// What the coordinator sends: upload references rewritten to paths relative
// to the assignment's directory.
v1::JobSpec WireSpec() {
  v1::JobSpec spec;
  spec.set_name("unit");
  spec.set_model("inputs/model");
  spec.mutable_data()->set_train("inputs/train.jsonl");
  spec.mutable_data()->set_validation("inputs/val.jsonl");
  spec.mutable_train()->set_batch_size(4);
  spec.mutable_train()->set_micro_batch_size(2);
  return spec;
}

void MakeInputs(const std::string& dir) {
  std::filesystem::create_directories(dir + "/inputs/model");
  WriteFile(dir + "/inputs/model/config.json", "{}");
  WriteFile(dir + "/inputs/train.jsonl", "{}\n");
  WriteFile(dir + "/inputs/val.jsonl", "{}\n");
}

TEST(AssignmentSpecTest, ResolvesPathsUnderTheDirectory) {
  TempDir dir;
  MakeInputs(dir.path());
  AssignmentSpecOptions options{dir.path(), 2, 3};
  auto path = PrepareAssignmentSpec(WireSpec(), options);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, dir.path() + "/spec.yaml");
  absl::StatusOr<spec::JobSpec> spec = spec::LoadJobSpec(*path);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model, dir.path() + "/inputs/model");
  EXPECT_EQ(spec->data.train, dir.path() + "/inputs/train.jsonl");
  EXPECT_EQ(spec->data.validation, dir.path() + "/inputs/val.jsonl");
  EXPECT_EQ(spec->output.dir, dir.path() + "/out");
  EXPECT_EQ(spec->resources.world_size, 2);
  EXPECT_EQ(spec->resources.threads, 3);  // the slot's cores
  EXPECT_EQ(spec->train.batch_size, 4);
}

TEST(AssignmentSpecTest, KeepsAbsolutePathsAndExplicitThreads) {
  TempDir dir, shared;
  MakeInputs(shared.path());
  v1::JobSpec wire = WireSpec();
  wire.set_model(shared.path() + "/inputs/model");
  wire.mutable_data()->set_train(shared.path() + "/inputs/train.jsonl");
  wire.mutable_data()->clear_validation();
  wire.mutable_resources()->set_threads(7);
  auto path = PrepareAssignmentSpec(wire, {dir.path(), 1, 3});
  ASSERT_TRUE(path.ok()) << path.status();
  absl::StatusOr<spec::JobSpec> spec = spec::LoadJobSpec(*path);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model, shared.path() + "/inputs/model");
  EXPECT_EQ(spec->data.validation, "");
  EXPECT_EQ(spec->resources.threads, 7);
  EXPECT_EQ(spec->resources.world_size, 1);
}

TEST(AssignmentSpecTest, MissingTrainDataIsAFailedPreconditionNamingTheField) {
  TempDir dir;
  MakeInputs(dir.path());
  std::filesystem::remove(dir.path() + "/inputs/train.jsonl");
  auto path = PrepareAssignmentSpec(WireSpec(), {dir.path(), 1, 1});
  ASSERT_FALSE(path.ok());
  EXPECT_EQ(path.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(path.status().message(),
            "data.train: " + dir.path() + "/inputs/train.jsonl: No such file or directory");
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/spec.yaml"));
}

TEST(AssignmentSpecTest, UnreadableInputsNameTheirField) {
  TempDir dir;
  MakeInputs(dir.path());
  std::filesystem::remove(dir.path() + "/inputs/val.jsonl");
  auto path = PrepareAssignmentSpec(WireSpec(), {dir.path(), 1, 1});
  ASSERT_FALSE(path.ok());
  EXPECT_EQ(path.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StartsWith(path.status().message(), "data.validation: ")) << path.status();

  MakeInputs(dir.path());
  std::filesystem::remove(dir.path() + "/inputs/model/config.json");
  path = PrepareAssignmentSpec(WireSpec(), {dir.path(), 1, 1});
  ASSERT_FALSE(path.ok());
  EXPECT_EQ(path.status().message(), "model: " + dir.path() + "/inputs/model/config.json: No such file or directory");

  // A directory is not a data file.
  MakeInputs(dir.path());
  std::filesystem::remove(dir.path() + "/inputs/train.jsonl");
  std::filesystem::create_directories(dir.path() + "/inputs/train.jsonl");
  path = PrepareAssignmentSpec(WireSpec(), {dir.path(), 1, 1});
  ASSERT_FALSE(path.ok());
  EXPECT_EQ(path.status().message(), "data.train: " + dir.path() + "/inputs/train.jsonl: Is a directory");
}

TEST(AssignmentSpecTest, BadSpecIsInvalidArgument) {
  TempDir dir;
  MakeInputs(dir.path());
  v1::JobSpec wire = WireSpec();
  wire.mutable_train()->set_batch_size(0);
  auto path = PrepareAssignmentSpec(wire, {dir.path(), 1, 1});
  ASSERT_FALSE(path.ok());
  EXPECT_EQ(path.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(path.status().message(), "train.batch_size")) << path.status();

  // The attempt's world size must divide the batch.
  auto sized = PrepareAssignmentSpec(WireSpec(), {dir.path(), 3, 1});
  ASSERT_FALSE(sized.ok());
  EXPECT_EQ(sized.status().code(), absl::StatusCode::kInvalidArgument) << sized.status();
}

}  // namespace
}  // namespace d2lora::worker
