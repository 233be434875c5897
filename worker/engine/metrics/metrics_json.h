// The JSON form of what a training run reports: one flat object per event with
// snake_case keys named after the struct fields (nested stats are flattened:
// tau_mean/tau_min/tau_max, volatility/loss_cv/spikes_in_window/...). Unset
// optionals are omitted; non-finite doubles are written as null. The sinks
// (metrics_jsonl.h, progress_printer.h) add "event" and "time" with Event().
#pragma once

#include <nlohmann/json.hpp>

#include "absl/strings/string_view.h"
#include "worker/engine/metrics/callbacks.h"
#include "worker/engine/metrics/volatility.h"

namespace d2lora::engine {

nlohmann::json ToJson(const RunInfo& info);
nlohmann::json ToJson(const StepMetrics& metrics);
nlohmann::json ToJson(const EvalMetrics& metrics);
nlohmann::json ToJson(const CheckpointInfo& info);
nlohmann::json ToJson(const RollbackInfo& info);
// Whole-run volatility, for summary.json: steps, volatility, mean_abs_change,
// loss_first, loss_last, spikes.
nlohmann::json ToJson(const RunVolatility& run);

// `fields` with "event" (start | step | eval | checkpoint | rollback | end) and "time"
// (unix seconds) added; a non-object `fields` goes under "value".
nlohmann::json Event(absl::string_view event, double time, nlohmann::json fields);

// Seconds since the Unix epoch, from the system clock.
double UnixNow();

}  // namespace d2lora::engine
