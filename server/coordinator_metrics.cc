#include "server/coordinator_metrics.h"

namespace d2lora::server {
namespace {

const char* StateLabel(v1::JobState s) {
  switch (s) {
    case v1::QUEUED: return "queued";
    case v1::SCHEDULED: return "scheduled";
    case v1::RUNNING: return "running";
    case v1::SUCCEEDED: return "succeeded";
    case v1::FAILED: return "failed";
    case v1::CANCELLED: return "cancelled";
    case v1::PAUSING: return "pausing";
    case v1::PAUSED: return "paused";
    default: return "unspecified";
  }
}

constexpr v1::JobState kStates[] = {v1::QUEUED,    v1::SCHEDULED, v1::RUNNING, v1::SUCCEEDED,
                                    v1::FAILED,    v1::CANCELLED, v1::PAUSING, v1::PAUSED};

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(prometheus::Registry& registry) : training_(registry) {
  jobs_by_state_ = &prometheus::BuildGauge().Name("d2lora_jobs").Help("Jobs by state").Register(registry);
  for (v1::JobState s : kStates) jobs_by_state_->Add({{"state", StateLabel(s)}});
  queue_depth_ = &prometheus::BuildGauge().Name("d2lora_queue_depth").Help("Jobs waiting for slots (QUEUED)")
                      .Register(registry).Add({});
  workers_alive_ = &prometheus::BuildGauge().Name("d2lora_workers_alive").Help("Registered workers heartbeating")
                        .Register(registry).Add({});
  auto& slots = prometheus::BuildGauge().Name("d2lora_worker_slots").Help("Slots of live workers by state")
                    .Register(registry);
  slots_total_ = &slots.Add({{"state", "total"}});
  slots_busy_ = &slots.Add({{"state", "busy"}});
  scheduling_latency_ =
      &prometheus::BuildHistogram().Name("d2lora_scheduling_latency_seconds")
           .Help("From a job entering the queue to its attempt being placed on slots")
           .Register(registry)
           .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                                                            900, 3600});
  jobs_finished_ = &prometheus::BuildCounter().Name("d2lora_jobs_finished_total")
                        .Help("Jobs that ended, by final state").Register(registry);
  for (v1::JobState s : {v1::SUCCEEDED, v1::FAILED, v1::CANCELLED}) jobs_finished_->Add({{"state", StateLabel(s)}});
  attempts_failed_ = &prometheus::BuildCounter().Name("d2lora_attempts_failed_total")
                          .Help("Job attempts that failed (retried or not)").Register(registry).Add({});
  workers_lost_ = &prometheus::BuildCounter().Name("d2lora_workers_lost_total")
                       .Help("Workers declared lost after missing heartbeats").Register(registry).Add({});
  workers_left_ = &prometheus::BuildCounter().Name("d2lora_workers_left_total")
                       .Help("Workers that left on shutdown (not lost)").Register(registry).Add({});
  store_transactions_ = &prometheus::BuildCounter().Name("d2lora_store_transactions_total")
                             .Help("Job store transactions (each one fsync; group commit)").Register(registry).Add({});
  store_changes_ = &prometheus::BuildCounter().Name("d2lora_store_changes_total")
                        .Help("Acknowledged changes written to the job store").Register(registry).Add({});
  store_write_failures_ = &prometheus::BuildCounter().Name("d2lora_store_write_failures_total")
                               .Help("Job store transactions that failed; the calls in them failed")
                               .Register(registry).Add({});
}

void CoordinatorMetrics::SetState(const std::map<v1::JobState, int>& jobs, int64_t queued, int64_t workers,
                                  int64_t slots_total, int64_t slots_busy) {
  for (v1::JobState s : kStates) {
    auto it = jobs.find(s);
    jobs_by_state_->Add({{"state", StateLabel(s)}}).Set(it == jobs.end() ? 0 : it->second);
  }
  queue_depth_->Set(static_cast<double>(queued));
  workers_alive_->Set(static_cast<double>(workers));
  slots_total_->Set(static_cast<double>(slots_total));
  slots_busy_->Set(static_cast<double>(slots_busy));
}

void CoordinatorMetrics::JobPlaced(absl::Duration waited) { scheduling_latency_->Observe(absl::ToDoubleSeconds(waited)); }

void CoordinatorMetrics::JobFinished(v1::JobState final_state) {
  jobs_finished_->Add({{"state", StateLabel(final_state)}}).Increment();
}

void CoordinatorMetrics::AttemptFailed() { attempts_failed_->Increment(); }

void CoordinatorMetrics::WorkerLost() { workers_lost_->Increment(); }

void CoordinatorMetrics::WorkerLeft() { workers_left_->Increment(); }
void CoordinatorMetrics::StoreWriteFailed() { store_write_failures_->Increment(); }

void CoordinatorMetrics::StoreTotals(int64_t transactions, int64_t changes) {
  store_transactions_->Increment(static_cast<double>(transactions - transactions_reported_));
  store_changes_->Increment(static_cast<double>(changes - changes_reported_));
  transactions_reported_ = transactions;
  changes_reported_ = changes;
}

}  // namespace d2lora::server
