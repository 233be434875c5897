// The worker's Prometheus series, in a registry the caller owns (main.cc
// exposes it):
//
//   d2lora_worker_slots_capacity            slots this worker offers
//   d2lora_worker_slots_busy                slots running an assignment
//   d2lora_worker_assignments_total{result} ended assignments: succeeded | failed | stopped
//   d2lora_worker_heartbeat_failures_total  heartbeats that got no answer
//   d2lora_worker_up                        1 while registered with the coordinator
//
// The training series (d2lora_train_*{job_id}) are the coordinator's alone:
// rank 0's figures reach it in the heartbeats (server/training_series.h).
#pragma once

#include <string>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace d2lora::worker {

enum class AssignmentResult { kSucceeded, kFailed, kStopped };

class WorkerMetrics {
 public:
  WorkerMetrics(prometheus::Registry& registry, int slots);

  void SetSlotsBusy(int busy) { slots_busy_->Set(busy); }
  void SetUp(bool up) { up_->Set(up ? 1 : 0); }
  void HeartbeatFailed() { heartbeat_failures_->Increment(); }
  void AssignmentEnded(AssignmentResult result);

 private:
  prometheus::Gauge* slots_;
  prometheus::Gauge* slots_busy_;
  prometheus::Gauge* up_;
  prometheus::Counter* heartbeat_failures_;
  prometheus::Counter* succeeded_;
  prometheus::Counter* failed_;
  prometheus::Counter* stopped_;
};

}  // namespace d2lora::worker
