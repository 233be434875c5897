#include "worker/daemon/worker_metrics.h"

namespace d2lora::worker {

WorkerMetrics::WorkerMetrics(prometheus::Registry& registry, int slots) {
  slots_ = &prometheus::BuildGauge()
                .Name("d2lora_worker_slots_capacity")
                .Help("Slots this worker offers")
                .Register(registry)
                .Add({});
  slots_busy_ = &prometheus::BuildGauge()
                     .Name("d2lora_worker_slots_busy")
                     .Help("Slots running an assignment")
                     .Register(registry)
                     .Add({});
  up_ = &prometheus::BuildGauge()
             .Name("d2lora_worker_up")
             .Help("1 while the worker is registered with the coordinator")
             .Register(registry)
             .Add({});
  heartbeat_failures_ = &prometheus::BuildCounter()
                             .Name("d2lora_worker_heartbeat_failures_total")
                             .Help("Heartbeats the coordinator did not answer")
                             .Register(registry)
                             .Add({});
  auto& assignments = prometheus::BuildCounter()
                          .Name("d2lora_worker_assignments_total")
                          .Help("Assignments ended, by result")
                          .Register(registry);
  succeeded_ = &assignments.Add({{"result", "succeeded"}});
  failed_ = &assignments.Add({{"result", "failed"}});
  stopped_ = &assignments.Add({{"result", "stopped"}});
  slots_->Set(slots);
}

void WorkerMetrics::AssignmentEnded(AssignmentResult result) {
  switch (result) {
    case AssignmentResult::kSucceeded: succeeded_->Increment(); break;
    case AssignmentResult::kFailed: failed_->Increment(); break;
    case AssignmentResult::kStopped: stopped_->Increment(); break;
  }
}

}  // namespace d2lora::worker
