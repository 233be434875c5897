// The training guard inside the trainer: a poisoned global batch (a huge loss
// once the model has learned the task) is rolled back exactly once, on every
// rank alike, skipped, and the run ends with a finite, lower loss.
#include <torch/torch.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "common/trainer/error_file.h"
#include "tests/support/test_support.h"
#include "tests/worker/engine/train/trainer_test_util.h"
#include "worker/engine/distributed/process_group_threads.h"
#include "worker/engine/train/training_checkpoint.h"

namespace d2lora::engine {
namespace {

using d2lora::testing::TempDir;
using ::testing::HasSubstr;

constexpr int64_t kSteps = 48;
constexpr int64_t kCheckpointEvery = 8;

// Counting backwards: what a model that learned to count upwards predicts worst.
Example Backwards(int64_t len, int64_t first) {
  Example e;
  int64_t tok = first;
  for (int64_t t = 0; t < len; ++t) {
    e.ids.push_back(tok);
    e.loss_mask.push_back(t == 0 ? 0 : 1);
    tok = 3 + (tok - 3 + kVocab - 3 - 1) % (kVocab - 3);
  }
  return e;
}

// The counting task with every example of global batches `bad` (one epoch of
// `steps` batches of spec.train.batch_size, in the loader's order) counting backwards.
std::shared_ptr<const std::vector<Example>> PoisonedData(const JobSpec& spec, const std::vector<int64_t>& bad) {
  auto clean = std::make_shared<const std::vector<Example>>(CountingExamples(kSteps * 8, 12, 5));
  BatchingOptions batching;
  batching.batch_size = spec.train.batch_size;
  batching.micro_batch_size = spec.train.micro_batch_size;
  batching.world_size = 1;
  batching.seed = spec.train.seed;
  auto loader = DataLoader::Create(clean, batching, 0, 0);
  EXPECT_TRUE(loader.ok()) << loader.status();
  std::vector<Example> out = *clean;
  for (int64_t b : bad) {
    for (int64_t i : loader->GlobalBatch(DataCursor{0, b})) out[i] = Backwards(static_cast<int64_t>(out[i].ids.size()), out[i].ids[0]);  // same length: the same batches
  }
  return std::make_shared<const std::vector<Example>>(std::move(out));
}

JobSpec GuardedSpec() {
  JobSpec spec = TinySpec(TrainingMethod::kD2Lora);
  spec.train.max_steps = kSteps;
  spec.train.schedule = LrSchedule::kConstant;
  spec.train.warmup_steps = 0;
  spec.train.checkpoint_every = kCheckpointEvery;
  spec.guard.spike_factor = 2.0;
  spec.guard.max_rollbacks = 2;
  spec.guard.lr_backoff = 0.5;
  spec.guard.skip_batches = 1;
  return spec;
}

struct Record : TrainingCallback {
  std::vector<StepMetrics> steps;
  std::vector<RollbackInfo> rollbacks;
  void OnStep(const StepMetrics& m) override { steps.push_back(m); }
  void OnRollback(const RollbackInfo& r) override { rollbacks.push_back(r); }
};

constexpr int64_t kBad = 37;  // global batch 37 = step 38; the last in-memory checkpoint is step 32

TEST(TrainerGuardTest, WithoutTheGuardThePoisonedBatchIsASpike) {
  JobSpec spec = GuardedSpec();
  spec.guard = GuardSpec{};
  Record record;
  auto group = CreateSingleProcessGroup();
  Session s = MakeSession(spec, group.get(), "", {}, {&record}, nullptr, nullptr, PoisonedData(spec, {kBad}));
  auto result = s.trainer->Run();
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(record.steps.size(), static_cast<size_t>(kSteps));
  const StepMetrics& bad = record.steps[kBad];
  ASSERT_TRUE(record.steps[kBad - 1].volatility.loss_ema.has_value());
  // What the guarded runs below must catch: over 2x the EMA before it.
  EXPECT_GT(bad.loss, 2.0 * *record.steps[kBad - 1].volatility.loss_ema) << "loss " << bad.loss;
  EXPECT_EQ(result->rollbacks, 0);
}

TEST(TrainerGuardTest, APoisonedBatchIsRolledBackOnceSkippedAndTheRunFinishes) {
  TempDir tmp;
  JobSpec spec = GuardedSpec();
  Record record;
  auto group = CreateSingleProcessGroup();
  Session s = MakeSession(spec, group.get(), tmp.file("ck"), {}, {&record}, nullptr, nullptr,
                          PoisonedData(spec, {kBad}));
  auto result = s.trainer->Run();
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(record.rollbacks.size(), 1u);
  const RollbackInfo& r = record.rollbacks[0];
  EXPECT_EQ(r.step, kBad + 1);
  EXPECT_EQ(r.restored_step, 32);
  EXPECT_THAT(r.reason, HasSubstr("loss spike at step 38"));
  EXPECT_EQ(r.rollbacks, 1);
  EXPECT_EQ(r.lr_scale, 0.5);
  EXPECT_EQ(r.first_skipped_batch, kBad);
  EXPECT_EQ(r.last_skipped_batch, kBad + 1);
  EXPECT_EQ(result->rollbacks, 1);
  EXPECT_EQ(result->steps, kSteps);
  // Steps 33..37 ran twice (before and after the rollback), at the backed-off rate the second time.
  ASSERT_EQ(record.steps.size(), static_cast<size_t>(kSteps + 5));
  EXPECT_EQ(record.steps[37].step, 33);
  EXPECT_DOUBLE_EQ(record.steps[37].lr, 0.5 * spec.train.lr);
  EXPECT_EQ(record.steps[37].rollbacks, 1);
  const double first = record.steps.front().loss, last = record.steps.back().loss;
  EXPECT_TRUE(std::isfinite(last));
  EXPECT_LT(last, 0.5 * first) << first << " -> " << last;
  for (const StepMetrics& m : record.steps) EXPECT_LT(m.loss, 2.0 * first) << "step " << m.step;

  // The guard's state is in the checkpoints: a resumed run keeps its rate and skips.
  auto state = ReadTrainingCheckpoint(CheckpointPath(tmp.file("ck"), kSteps));
  ASSERT_TRUE(state.ok()) << state.status();
  auto guard = GuardStateFromJson(state->guard, "trainer_state.json");
  ASSERT_TRUE(guard.ok()) << guard.status();
  EXPECT_EQ(guard->rollbacks, 1);
  EXPECT_EQ(guard->lr_scale, 0.5);
  EXPECT_EQ(guard->skipped, (std::set<int64_t>{kBad, kBad + 1}));
  Record resumed_record;
  Session resumed = MakeSession(spec, group.get(), tmp.file("ck"), {}, {&resumed_record}, nullptr, nullptr,
                                PoisonedData(spec, {kBad}));
  D2_ASSERT_OK(resumed.trainer->Resume(CheckpointPath(tmp.file("ck"), 40)));
  auto again = resumed.trainer->Run();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->rollbacks, 1);
  EXPECT_DOUBLE_EQ(resumed_record.steps.front().lr, 0.5 * spec.train.lr);
  EXPECT_EQ(MaxParamDiff(*s.trainer, *resumed.trainer), 0.0);
}

TEST(TrainerGuardTest, TwoRanksRollBackTogetherAndAgree) {
  JobSpec spec = GuardedSpec();
  JobSpec two = spec;
  two.resources.world_size = 2;
  auto data = PoisonedData(spec, {kBad});
  auto threads = ThreadGroup::Create(2);
  std::vector<std::unique_ptr<ProcessGroup>> members;
  for (int r = 0; r < 2; ++r) members.push_back(threads->Member(r));
  Session ranks[2];
  absl::StatusOr<TrainResult> results[2] = {absl::InternalError("not run"), absl::InternalError("not run")};
  CausalLM models[2] = {TinyModel(two), TinyModel(two)};
  Record record;  // rank 0's callbacks
  std::vector<std::thread> workers;
  for (int r = 0; r < 2; ++r) {
    workers.emplace_back([&, r] {
      std::vector<TrainingCallback*> callbacks;
      if (r == 0) callbacks.push_back(&record);
      ranks[r] = MakeSession(two, members[r].get(), "", {}, callbacks, nullptr, models[r], data);
      if (ranks[r].trainer) results[r] = ranks[r].trainer->Run();
    });
  }
  for (auto& w : workers) w.join();
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r].status();
    EXPECT_EQ(results[r]->rollbacks, 1) << "rank " << r;
    EXPECT_EQ(results[r]->steps, kSteps);
  }
  ASSERT_EQ(record.rollbacks.size(), 1u);
  EXPECT_EQ(record.rollbacks[0].step, kBad + 1);
  EXPECT_EQ(MaxParamDiff(*ranks[0].trainer, *ranks[1].trainer), 0.0);  // the ranks agree exactly
}

TEST(TrainerGuardTest, MoreSpikesThanMaxRollbacksFailTheRunNamingTheGuard) {
  JobSpec spec = GuardedSpec();
  spec.guard.max_rollbacks = 1;
  spec.guard.skip_batches = 0;
  Record record;
  auto group = CreateSingleProcessGroup();
  Session s = MakeSession(spec, group.get(), "", {}, {&record}, nullptr, nullptr, PoisonedData(spec, {kBad, 43}));
  auto result = s.trainer->Run();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(trainer::ReasonOf(result.status()), trainer::FailureReason::kDiverged);
  EXPECT_EQ(trainer::StepOf(result.status()), 43);
  // Batch 37 was skipped after the first rollback, so batch 43 is step 43's.
  EXPECT_THAT(result.status().message(), HasSubstr("training diverged: loss spike at step 43"));
  EXPECT_THAT(result.status().message(), HasSubstr("1 rollback(s) already (guard.max_rollbacks = 1)"));
  EXPECT_EQ(record.rollbacks.size(), 1u);
}

TEST(TrainerGuardTest, NonFiniteStepsPastTheLimitRollBackInsteadOfFailing) {
  JobSpec spec = GuardedSpec();
  spec.train.max_nonfinite_steps = 0;
  spec.guard.spike_factor = 1000;  // only non-finite steps trigger here
  CausalLM* model = nullptr;
  struct Poison : TrainingCallback {
    CausalLM** model;
    bool done = false;
    void OnStep(const StepMetrics& m) override {
      if (m.step != 20 || done) return;
      done = true;
      torch::NoGradGuard ng;
      for (auto& item : (**model)->named_parameters()) {
        if (item.key().find("lora_A") != std::string::npos) item.value().fill_(NAN);
      }
    }
  } poison;
  poison.model = &model;
  Record record;
  auto group = CreateSingleProcessGroup();
  Session s = MakeSession(spec, group.get(), "", {}, {&poison, &record});
  model = &s.model;
  auto result = s.trainer->Run();
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(record.rollbacks.size(), 1u);
  EXPECT_EQ(record.rollbacks[0].step, 21);
  EXPECT_EQ(record.rollbacks[0].restored_step, 16);
  EXPECT_THAT(record.rollbacks[0].reason, HasSubstr("non-finite loss at step 21"));
  EXPECT_TRUE(std::isfinite(record.steps.back().loss));
  EXPECT_EQ(result->steps, kSteps);
}

}  // namespace
}  // namespace d2lora::engine
