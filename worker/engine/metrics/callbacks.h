// What a training run reports, and the one interface it reports through.
// Implementations: metrics_jsonl.h (metrics.jsonl in the output directory),
// progress_printer.h (the terminal), and at the edge the worker's Prometheus
// exporter. The trainer calls every callback on rank 0 only, from its own
// thread, in the order OnStart, (OnStep | OnEval | OnCheckpoint | OnRollback)*,
// OnEnd. After OnRollback, steps from restored_step + 1 are reported again.
#pragma once

#include <nlohmann/json.hpp>

#include "common/trainer/metrics_events.h"

namespace d2lora::engine {

// The event structs are the trainer-process contract's (common/trainer/metrics_events.h).
using trainer::CheckpointInfo;
using trainer::EvalMetrics;
using trainer::RollbackInfo;
using trainer::RunInfo;
using trainer::StepMetrics;
using trainer::TauStats;
using trainer::VolatilityStats;

class TrainingCallback {
 public:
  virtual ~TrainingCallback() = default;
  virtual void OnStart(const RunInfo& /*info*/) {}
  virtual void OnStep(const StepMetrics& /*metrics*/) {}
  virtual void OnEval(const EvalMetrics& /*metrics*/) {}
  virtual void OnCheckpoint(const CheckpointInfo& /*info*/) {}
  virtual void OnRollback(const RollbackInfo& /*info*/) {}
  // `summary` is what summary.json holds.
  virtual void OnEnd(const nlohmann::json& /*summary*/) {}
};

}  // namespace d2lora::engine
