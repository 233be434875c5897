// The coordinator's series (server/coordinator_metrics.h), as the Coordinator
// records them and /metrics shows them.
#include "server/coordinator_metrics.h"

#include <prometheus/text_serializer.h>

#include <map>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/artifact_store_memory.h"
#include "server/coordinator.h"
#include "server/job_store_sqlite.h"
#include "tests/support/test_support.h"

namespace d2lora::server {
namespace {

std::string Text(prometheus::Registry& registry) {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry.Collect());
}

void ExpectLine(const std::string& text, const std::string& line) {
  EXPECT_TRUE(absl::StrContains(text, "\n" + line + "\n")) << "no line \"" << line << "\" in\n" << text;
}

TEST(CoordinatorMetricsTest, RecordsWhatItIsTold) {
  prometheus::Registry registry;
  CoordinatorMetrics metrics(registry);
  metrics.SetState({{v1::QUEUED, 2}, {v1::RUNNING, 1}}, 2, 3, 8, 1);
  metrics.JobFinished(v1::FAILED);
  metrics.JobFinished(v1::FAILED);
  metrics.AttemptFailed();
  metrics.WorkerLost();
  metrics.WorkerLeft();
  metrics.WorkerLeft();
  metrics.StoreTotals(5, 40);
  metrics.StoreTotals(7, 52);  // totals: the counters go up by the difference
  metrics.JobPlaced(absl::Milliseconds(30));
  const std::string text = Text(registry);
  ExpectLine(text, "d2lora_jobs{state=\"queued\"} 2");
  ExpectLine(text, "d2lora_jobs{state=\"running\"} 1");
  ExpectLine(text, "d2lora_jobs{state=\"succeeded\"} 0");  // a state not given has none
  ExpectLine(text, "d2lora_queue_depth 2");
  ExpectLine(text, "d2lora_workers_alive 3");
  ExpectLine(text, "d2lora_worker_slots{state=\"total\"} 8");
  ExpectLine(text, "d2lora_worker_slots{state=\"busy\"} 1");
  ExpectLine(text, "d2lora_jobs_finished_total{state=\"failed\"} 2");
  ExpectLine(text, "d2lora_jobs_finished_total{state=\"succeeded\"} 0");
  ExpectLine(text, "d2lora_attempts_failed_total 1");
  ExpectLine(text, "d2lora_workers_lost_total 1");
  ExpectLine(text, "d2lora_workers_left_total 2");
  ExpectLine(text, "d2lora_store_transactions_total 7");
  ExpectLine(text, "d2lora_store_changes_total 52");
  ExpectLine(text, "d2lora_scheduling_latency_seconds_count 1");
  ExpectLine(text, "d2lora_scheduling_latency_seconds_bucket{le=\"0.05\"} 1");
  ExpectLine(text, "d2lora_scheduling_latency_seconds_bucket{le=\"0.01\"} 0");
}

TEST(CoordinatorMetricsTest, TheCoordinatorRecordsItsChanges) {
  d2lora::testing::TempDir dir;
  auto store = SqliteJobStore::Create(dir.file("jobs.db"));
  ASSERT_TRUE(store.ok()) << store.status();
  MemoryArtifactStore artifacts;
  prometheus::Registry registry;
  CoordinatorMetrics metrics(registry);
  CoordinatorOptions options;
  options.scheduler_thread = false;
  auto coordinator = Coordinator::Create(options, store->get(), &artifacts, &metrics);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  v1::SubmitJobRequest r;
  r.mutable_spec()->set_name("j");
  r.mutable_spec()->set_model("/models/m");
  r.mutable_spec()->mutable_data()->set_train("/data/t.jsonl");
  r.mutable_spec()->mutable_train()->set_batch_size(4);
  r.mutable_spec()->mutable_train()->set_micro_batch_size(1);
  r.set_world_size(1);
  auto job = (*coordinator)->Submit(r);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE((*coordinator)->Cancel(job->id(), "test").ok());
  (*coordinator)->ScheduleNow();  // the gauges follow the state at each scheduling round
  const std::string text = Text(registry);
  ExpectLine(text, "d2lora_jobs{state=\"cancelled\"} 1");
  ExpectLine(text, "d2lora_queue_depth 0");
  ExpectLine(text, "d2lora_jobs_finished_total{state=\"cancelled\"} 1");
  EXPECT_FALSE(absl::StrContains(text, "d2lora_store_transactions_total 0\n")) << text;
}

}  // namespace
}  // namespace d2lora::server
