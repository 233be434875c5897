// The trainer's figures (common/trainer/metrics_events.h) in their wire form:
// the worker daemon reports them (metrics_tail.h), the coordinator lists the
// ones checkpoints recorded (ListCheckpoints). An optional figure goes on the
// wire only when it is a finite number.
#pragma once

#include "common/trainer/metrics_events.h"
#include "d2lora/v1/job.pb.h"

namespace d2lora::rpc {

// The step's own figures; skipped_steps, tokens_total and the eval_* fields
// are the caller's (they span steps).
v1::TrainingMetrics TrainingMetricsToProto(const trainer::StepMetrics& step);
v1::EvalResult EvalResultToProto(const trainer::EvalMetrics& eval);

}  // namespace d2lora::rpc
