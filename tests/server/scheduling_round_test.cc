#include "server/scheduling_round.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "absl/strings/match.h"

#include "server/artifact_store_local.h"
#include "server/artifact_store_memory.h"
#include "tests/support/test_support.h"

namespace d2lora::server {
namespace {

v1::RegisterWorkerRequest Registration(int slots, int port_first = 29500, int port_last = 29999) {
  v1::RegisterWorkerRequest r;
  for (int i = 0; i < slots; ++i) r.add_slots()->set_index(i);
  r.set_rendezvous_port_first(port_first);
  r.set_rendezvous_port_last(port_last);
  return r;
}

TEST(SchedulingRoundTest, LostWorkersAreThosePastTheTimeout) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  const v1::RegisterWorkerRequest r = Registration(1);
  const std::vector<WorkerView> workers = {{"fresh", &r, now - absl::Seconds(5), false},
                                           {"lost", &r, now - absl::Seconds(31), false},
                                           {"edge", &r, now - absl::Seconds(30), false}};
  EXPECT_EQ(LostWorkers(workers, now, absl::Seconds(30)), std::vector<std::string>{"lost"});
}

// Heard from longest ago first (their heartbeat comes soonest), late ones last; busy slots left out;
// a draining worker (shutting down) offers none.
TEST(SchedulingRoundTest, FreeSlotsInThePlacementsOrder) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  const v1::RegisterWorkerRequest two = Registration(2), one = Registration(1);
  const std::vector<WorkerView> workers = {{"recent", &two, now - absl::Milliseconds(100), false},
                                           {"late", &one, now - absl::Seconds(5), false},
                                           {"draining", &two, now - absl::Seconds(1.5), true},
                                           {"older", &two, now - absl::Seconds(1), false}};
  const std::map<std::string, std::set<int>> busy = {{"older", {0}}};
  const std::vector<WorkerSlots> slots = FreeSlots(workers, busy, now, absl::Seconds(2));
  ASSERT_EQ(slots.size(), 3u);
  EXPECT_EQ(slots[0].worker_id, "older");
  EXPECT_EQ(slots[0].free_slots, std::vector<int>{1});
  EXPECT_EQ(slots[0].total_slots, 2);
  EXPECT_EQ(slots[1].worker_id, "recent");
  EXPECT_EQ(slots[1].free_slots, (std::vector<int>{0, 1}));
  EXPECT_EQ(slots[2].worker_id, "late");  // missed two heartbeats
}

v1::Job Job(const std::string& id, int world_size, int attempt = 0, int min_world_size = 0) {
  v1::Job job;
  job.set_id(id);
  job.set_world_size(world_size);
  job.set_attempt(attempt);
  job.mutable_spec()->mutable_train()->set_batch_size(8);
  job.mutable_spec()->mutable_train()->set_micro_batch_size(2);
  if (min_world_size > 0) {
    job.mutable_spec()->mutable_resources()->set_min_world_size(min_world_size);
    job.mutable_spec()->mutable_resources()->set_elastic_wait_seconds(10);
  }
  return job;
}

// The queue stops after the first job that fits nowhere; one larger than the cluster is passed over.
TEST(SchedulingRoundTest, PlacementQueueCutsAtTheFirstJobThatDoesNotFit) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  PlacementQueue queue(/*free_slots=*/3, /*total_slots=*/4, now);
  EXPECT_TRUE(queue.Add(Job("a", 2), now));
  EXPECT_TRUE(queue.Add(Job("huge", 8), now));  // passed over: never fits this cluster
  EXPECT_FALSE(queue.Add(Job("b", 2), now));    // 1 slot left: holds back the rest
  ASSERT_EQ(queue.jobs().size(), 3u);
  EXPECT_EQ(queue.jobs()[2].job_id, "b");
}

// A retry that has waited its elastic_wait_seconds may start on fewer ranks; a first attempt never.
TEST(SchedulingRoundTest, ElasticFallbacksOnlyForARetryThatHasWaited) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  PlacementQueue queue(2, 4, now);
  EXPECT_FALSE(queue.Add(Job("first", 4, /*attempt=*/0, /*min=*/1), now - absl::Seconds(60)));  // waits for 4
  ASSERT_EQ(queue.jobs().size(), 1u);
  EXPECT_TRUE(queue.jobs()[0].fallback_sizes.empty());
  PlacementQueue waited(2, 4, now);
  EXPECT_TRUE(waited.Add(Job("retry", 4, 1, 1), now - absl::Seconds(11)));
  EXPECT_EQ(waited.jobs()[0].fallback_sizes, (std::vector<int>{2, 1}));
  PlacementQueue early(2, 4, now);
  EXPECT_FALSE(early.Add(Job("retry", 4, 1, 1), now - absl::Seconds(9)));  // not yet: waits for 4
  EXPECT_TRUE(early.jobs()[0].fallback_sizes.empty());
}

TEST(SchedulingRoundTest, PickPortAvoidsTakenPorts) {
  std::mt19937 rng(7);
  const v1::RegisterWorkerRequest r = Registration(1, 30000, 30002);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(PickPort(r, {30000, 30002}, rng), 30001);
  const int any = PickPort(r, {30000, 30001, 30002}, rng);  // all taken: one of them
  EXPECT_GE(any, 30000);
  EXPECT_LE(any, 30002);
}

TEST(SchedulingRoundTest, AnElasticBaseKeepsTheGlobalBatch) {
  v1::Job job = Job("j", 4, 1);
  job.mutable_spec()->mutable_train()->set_micro_batch_size(2);
  Placement full{"j", 4, {}};
  std::string note = "stale";
  v1::Assignment base = AssignmentBase(job, full, "host-a", 29501, &note);
  EXPECT_EQ(base.world_size(), 4);
  EXPECT_EQ(base.master_addr(), "host-a");
  EXPECT_EQ(base.master_port(), 29501);
  EXPECT_EQ(base.attempt(), 1);
  EXPECT_TRUE(note.empty());
  EXPECT_EQ(base.spec().train().micro_batch_size(), 2);

  job.mutable_spec()->mutable_train()->set_batch_size(12);
  job.mutable_spec()->mutable_train()->set_micro_batch_size(4);
  Placement smaller{"j", 2, {}};
  base = AssignmentBase(job, smaller, "host-a", 29501, &note);
  EXPECT_EQ(base.world_size(), 2);
  EXPECT_EQ(base.spec().resources().world_size(), 2);
  EXPECT_EQ(base.spec().train().batch_size(), 12);
  EXPECT_EQ(base.spec().train().micro_batch_size(), 3);  // 6 examples per rank
  EXPECT_NE(note.find("elastic: 2 of 4 ranks"), std::string::npos) << note;
}

void Put(ArtifactStore& store, const std::string& key, const std::string& data) {
  auto w = store.OpenWriter(key);
  ASSERT_TRUE(w.ok()) << w.status();
  D2_ASSERT_OK((*w)->Append(data));
  ASSERT_TRUE((*w)->Commit().ok());
}

TEST(SchedulingRoundTest, InputsAreTheUploadsAndTheCheckpointWithItsFallback) {
  MemoryArtifactStore store;
  Put(store, "uploads/up1/config.json", "{}");
  Put(store, "uploads/up1/model.safetensors", "m");
  Put(store, "uploads/up2/train.jsonl", "t");
  Put(store, "uploads/up3/adapter_config.json", "{}");
  Put(store, "uploads/up3/adapter_model.safetensors", "a");
  for (int step : {2, 4}) {
    const std::string dir = "jobs/j/checkpoints/step-" + std::to_string(step) + "/";
    Put(store, dir + "parameters.safetensors", "p");
    Put(store, dir + "trainer_state.json", "{}");
  }
  v1::Job job = Job("j", 1);
  job.set_checkpoint_step(4);
  v1::Assignment a;
  a.mutable_spec()->set_model("upload:up1");
  a.mutable_spec()->mutable_init()->set_adapter("upload:up3");
  a.mutable_spec()->mutable_data()->set_train("upload:up2/train.jsonl");
  a.mutable_spec()->mutable_data()->set_validation("/shared/val.jsonl");
  std::string note;
  D2_ASSERT_OK(AddAssignmentInputs(job, store, a, &note));
  EXPECT_EQ(note, ", resuming from step 4");
  EXPECT_EQ(a.spec().model(), "inputs/up1");
  EXPECT_EQ(a.spec().data().train(), "inputs/up2/train.jsonl");
  EXPECT_EQ(a.spec().init().adapter(), "inputs/up3");
  EXPECT_EQ(a.spec().data().validation(), "/shared/val.jsonl");  // a shared path stays
  EXPECT_EQ(a.resume_from(), "resume/checkpoints/step-4");
  std::set<std::string> paths;
  for (const v1::InputFile& in : a.inputs()) {
    paths.insert(in.path());
    EXPECT_EQ(in.size(), absl::EndsWith(in.name(), ".json") ? 2 : 1) << in.name();  // "{}" or one letter
    EXPECT_EQ(in.sha256().size(), 64u);
  }
  EXPECT_EQ(paths, (std::set<std::string>{"inputs/up1/config.json", "inputs/up1/model.safetensors",
                                          "inputs/up2/train.jsonl", "inputs/up3/adapter_config.json",
                                          "inputs/up3/adapter_model.safetensors",
                                          "resume/checkpoints/step-4/parameters.safetensors",
                                          "resume/checkpoints/step-4/trainer_state.json",
                                          "resume/checkpoints/step-2/parameters.safetensors",
                                          "resume/checkpoints/step-2/trainer_state.json"}));

  v1::Assignment gone;
  gone.mutable_spec()->set_model("upload:up9");
  const absl::Status missing = AddAssignmentInputs(Job("k", 1), store, gone, &note);
  EXPECT_EQ(missing.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.message().find("spec.model: upload:up9 no longer exists"), std::string::npos) << missing;
}

// A checkpoint with a file the store finds changed since it was stored is
// passed over: the attempt resumes from the newest whole one (with the whole
// one before it as the trainer's fallback), and the note names the damage.
TEST(SchedulingRoundTest, ADamagedCheckpointIsPassedOver) {
  d2lora::testing::TempDir dir;
  auto local = LocalArtifactStore::Create({dir.path() + "/store"});
  ASSERT_TRUE(local.ok()) << local.status();
  ArtifactStore& store = **local;
  for (int step : {2, 4, 6}) {
    const std::string d = "jobs/j/checkpoints/step-" + std::to_string(step) + "/";
    Put(store, d + "parameters.safetensors", "p" + std::to_string(step));
    Put(store, d + "trainer_state.json", "{}");
  }
  const std::string newest = dir.path() + "/store/jobs/j/checkpoints/step-6/parameters.safetensors";
  {
    std::ofstream f(newest, std::ios::app);
    f << "bit rot";
  }
  v1::Job job = Job("j", 1);
  job.set_checkpoint_step(6);
  v1::Assignment a;
  std::string note;
  D2_ASSERT_OK(AddAssignmentInputs(job, store, a, &note));
  EXPECT_EQ(a.resume_from(), "resume/checkpoints/step-4");
  std::set<std::string> paths;
  for (const v1::InputFile& in : a.inputs()) paths.insert(in.path());
  EXPECT_EQ(paths, (std::set<std::string>{"resume/checkpoints/step-4/parameters.safetensors",
                                          "resume/checkpoints/step-4/trainer_state.json",
                                          "resume/checkpoints/step-2/parameters.safetensors",
                                          "resume/checkpoints/step-2/trainer_state.json"}));
  EXPECT_TRUE(absl::StartsWith(note, ", resuming from step 4 (passed over a damaged checkpoint: "
                                     "checkpoints/step-6/parameters.safetensors: changed on disk"))
      << note;

  // Every checkpoint damaged: the attempt starts over, and says why.
  for (int step : {2, 4}) {
    std::ofstream f(dir.path() + "/store/jobs/j/checkpoints/step-" + std::to_string(step) + "/trainer_state.json",
                    std::ios::app);
    f << " ";
  }
  v1::Assignment b;
  D2_ASSERT_OK(AddAssignmentInputs(job, store, b, &note));
  EXPECT_TRUE(b.resume_from().empty());
  EXPECT_EQ(b.inputs_size(), 0);
  EXPECT_TRUE(absl::StartsWith(note, ", starting over (passed over a damaged checkpoint: checkpoints/step-6/")) << note;
}

}  // namespace
}  // namespace d2lora::server
