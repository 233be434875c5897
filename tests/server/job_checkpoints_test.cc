#include "server/job_checkpoints.h"

#include <gtest/gtest.h>

#include <fstream>

#include "absl/strings/match.h"
#include "server/artifact_store_local.h"
#include "server/artifact_store_memory.h"
#include "tests/server/server_test_util.h"
#include "tests/support/test_support.h"

namespace d2lora::server {
namespace {

using testing::Put;

v1::Job Job(const std::string& id, v1::JobState state = v1::RUNNING) {
  v1::Job job;
  job.set_id(id);
  job.set_state(state);
  return job;
}

void PutCheckpoint(ArtifactStore& store, const std::string& job, int step, bool complete, bool adapter) {
  const std::string dir = "jobs/" + job + "/checkpoints/step-" + std::to_string(step) + "/";
  Put(store, dir + "parameters.safetensors", "p" + std::to_string(step));
  if (adapter) {
    Put(store, dir + "adapter/adapter_config.json", "{}");
    Put(store, dir + "adapter/adapter_model.safetensors", "a" + std::to_string(step));
  }
  if (complete) {
    Put(store, dir + "trainer_state.json",
        R"({"step": )" + std::to_string(step) + R"(, "metrics": {"train": {"step": )" + std::to_string(step) +
            R"(, "loss": 2.5, "volatility": 0.25}, "eval": {"step": )" + std::to_string(step) +
            R"(, "loss": 1.75, "accuracy": 0.5, "scoring": "mean"}}})");
  }
}

TEST(JobCheckpointsTest, ListsStepsWithTheirStateFilesAndMetrics) {
  d2lora::testing::TempDir dir;
  auto local = LocalArtifactStore::Create({dir.path() + "/store"});
  ASSERT_TRUE(local.ok()) << local.status();
  ArtifactStore& store = **local;
  PutCheckpoint(store, "j", 10, /*complete=*/true, /*adapter=*/true);
  PutCheckpoint(store, "j", 20, /*complete=*/false, /*adapter=*/true);
  PutCheckpoint(store, "j", 30, /*complete=*/true, /*adapter=*/false);
  PutCheckpoint(store, "j", 40, /*complete=*/true, /*adapter=*/true);
  Put(store, "jobs/j/checkpoints/notes.txt", "not a checkpoint");
  std::ofstream(dir.path() + "/store/jobs/j/checkpoints/step-40/parameters.safetensors", std::ios::app) << "rot";

  auto listed = ListJobCheckpoints(store, Job("j"));
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->checkpoints_size(), 4);
  const v1::Checkpoint& ten = listed->checkpoints(0);
  EXPECT_EQ(ten.step(), 10);
  EXPECT_TRUE(ten.complete());
  EXPECT_TRUE(ten.has_adapter());
  EXPECT_EQ(ten.damaged(), "");
  EXPECT_EQ(ten.files_size(), 4);
  EXPECT_EQ(ten.files(0).name(), "checkpoints/step-10/adapter/adapter_config.json");
  EXPECT_EQ(ten.metrics().step(), 10);
  EXPECT_EQ(ten.metrics().loss(), 2.5);
  EXPECT_EQ(ten.metrics().volatility(), 0.25);
  EXPECT_EQ(ten.eval().accuracy(), 0.5);
  EXPECT_TRUE(ten.has_time());
  int64_t bytes = 0;
  for (const v1::Artifact& f : ten.files()) bytes += f.size();
  EXPECT_EQ(ten.bytes(), bytes);
  EXPECT_FALSE(listed->checkpoints(1).complete());
  EXPECT_FALSE(listed->checkpoints(1).has_metrics());
  EXPECT_FALSE(listed->checkpoints(2).has_adapter());
  const v1::Checkpoint& forty = listed->checkpoints(3);
  EXPECT_TRUE(absl::StartsWith(forty.damaged(), "checkpoints/step-40/parameters.safetensors: ")) << forty.damaged();
  EXPECT_FALSE(forty.has_metrics());  // a damaged checkpoint's figures are not trusted
  EXPECT_EQ(listed->final_adapter_step(), 0);

  // init.from_job's choice.
  auto at10 = FindInitSource(store, Job("j"), 10);
  ASSERT_TRUE(at10.ok()) << at10.status();
  EXPECT_EQ(at10->folder, "jobs/j/checkpoints/step-10/adapter/");
  EXPECT_FALSE(at10->final);
  auto newest = FindInitSource(store, Job("j"), 0);  // 40 is damaged, 30 has no adapter, 20 is incomplete
  ASSERT_TRUE(newest.ok()) << newest.status();
  EXPECT_EQ(newest->step, 10);
  for (const auto& [step, expected] : std::vector<std::pair<int64_t, std::string>>{
           {20, "at step 20: it is not complete"},
           {30, "at step 30: it holds no adapter"},
           {40, "at step 40: it is damaged (checkpoints/step-40/parameters.safetensors: "},
           {50, "no usable checkpoint at step 50 (stored with an adapter: 10)"}}) {
    auto refused = FindInitSource(store, Job("j"), step);
    ASSERT_FALSE(refused.ok()) << step;
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(refused.status().message().find(expected), std::string::npos) << refused.status();
  }
  auto none = FindInitSource(store, Job("empty", v1::QUEUED), 0);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().message(),
            "spec.init.from_job: job empty (QUEUED) has no final adapter and no complete checkpoint with one yet");

  // A stored final adapter wins for step 0; its step is the last checkpoint's.
  Put(store, "jobs/j/adapter/adapter_config.json", "{}");
  Put(store, "jobs/j/adapter/adapter_model.safetensors", "final");
  auto final_adapter = FindInitSource(store, Job("j", v1::SUCCEEDED), 0);
  ASSERT_TRUE(final_adapter.ok()) << final_adapter.status();
  EXPECT_TRUE(final_adapter->final);
  EXPECT_EQ(final_adapter->folder, "jobs/j/adapter/");
  EXPECT_EQ(final_adapter->step, 40);
  EXPECT_EQ(ListJobCheckpoints(store, Job("j"))->final_adapter_step(), 40);
}

TEST(JobCheckpointsTest, CopyArtifactFolderCopiesEveryFileCheckedOrNothingDamaged) {
  d2lora::testing::TempDir dir;
  auto local = LocalArtifactStore::Create({dir.path() + "/store"});
  ASSERT_TRUE(local.ok()) << local.status();
  ArtifactStore& store = **local;
  const std::string big(3 << 20, 'x');  // more than one copy chunk
  Put(store, "jobs/j/adapter/adapter_model.safetensors", big);
  Put(store, "jobs/j/adapter/adapter_config.json", "{}");
  D2_ASSERT_OK(CopyArtifactFolder(store, "jobs/j/adapter/", "uploads/up-1/"));
  auto copied = store.List("uploads/up-1/");
  ASSERT_TRUE(copied.ok());
  ASSERT_EQ(copied->size(), 2u);
  EXPECT_EQ((*copied)[1].size, static_cast<int64_t>(big.size()));
  EXPECT_EQ((*copied)[1].sha256, store.Stat("jobs/j/adapter/adapter_model.safetensors")->sha256);

  std::ofstream(dir.path() + "/store/jobs/j/adapter/adapter_config.json", std::ios::app) << "changed";
  const absl::Status damaged = CopyArtifactFolder(store, "jobs/j/adapter/", "uploads/up-2/");
  EXPECT_EQ(damaged.code(), absl::StatusCode::kDataLoss) << damaged;
  EXPECT_TRUE(store.List("uploads/up-2/")->empty());
  EXPECT_EQ(CopyArtifactFolder(store, "jobs/none/", "uploads/up-3/").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace d2lora::server
