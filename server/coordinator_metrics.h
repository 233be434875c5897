// The coordinator's Prometheus series, in a registry the caller owns
// (coordinator_server.cc exposes it). The Coordinator records through this
// class and knows no Prometheus type (as worker/daemon/worker_metrics.h):
//
//   d2lora_jobs{state}                     jobs by state
//   d2lora_queue_depth                     jobs waiting for slots (QUEUED)
//   d2lora_workers_alive                   registered workers heartbeating
//   d2lora_worker_slots{state}             slots of live workers: total | busy
//   d2lora_scheduling_latency_seconds      from entering the queue to being placed
//   d2lora_jobs_finished_total{state}      jobs that ended: succeeded | failed | cancelled
//   d2lora_attempts_failed_total           failed attempts, retried or not
//   d2lora_workers_lost_total              workers declared lost
//   d2lora_workers_left_total              workers that left on shutdown (LeaveWorker)
//   d2lora_store_transactions_total        job store transactions (one fsync each)
//   d2lora_store_changes_total             acknowledged changes written
//   d2lora_store_write_failures_total      store transactions that failed (the calls in them failed)
//
// plus TrainingSeries (d2lora_train_*{job_id}) for the jobs not yet ended.
#pragma once

#include <cstdint>
#include <map>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/time/time.h"
#include "d2lora/v1/job.pb.h"
#include "server/training_series.h"

namespace d2lora::server {

class CoordinatorMetrics {
 public:
  explicit CoordinatorMetrics(prometheus::Registry& registry);
  CoordinatorMetrics(const CoordinatorMetrics&) = delete;
  CoordinatorMetrics& operator=(const CoordinatorMetrics&) = delete;

  // The state after a change: jobs by state (a state not in `jobs` has none),
  // queued jobs, live workers and their slots.
  void SetState(const std::map<v1::JobState, int>& jobs, int64_t queued, int64_t workers, int64_t slots_total,
                int64_t slots_busy);
  void JobPlaced(absl::Duration waited);
  void JobFinished(v1::JobState final_state);
  void AttemptFailed();
  void WorkerLost();
  void WorkerLeft();
  void StoreWriteFailed();
  // The job store's totals so far (group commit): the counters go up by the difference.
  void StoreTotals(int64_t transactions, int64_t changes);
  TrainingSeries& training() { return training_; }

 private:
  prometheus::Family<prometheus::Gauge>* jobs_by_state_;
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* workers_alive_;
  prometheus::Gauge* slots_total_;
  prometheus::Gauge* slots_busy_;
  prometheus::Histogram* scheduling_latency_;
  prometheus::Family<prometheus::Counter>* jobs_finished_;
  prometheus::Counter* attempts_failed_;
  prometheus::Counter* workers_lost_;
  prometheus::Counter* workers_left_;
  prometheus::Counter* store_transactions_;
  prometheus::Counter* store_changes_;
  prometheus::Counter* store_write_failures_;
  int64_t transactions_reported_ = 0;
  int64_t changes_reported_ = 0;
  TrainingSeries training_;
};

}  // namespace d2lora::server
