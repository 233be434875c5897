// The JSON form of what a training run reports is the trainer-process
// contract's codec (common/trainer/metrics_events.h); here only the whole-run
// volatility that summary.json holds, and the clock the sinks stamp events with.
#pragma once

#include <nlohmann/json.hpp>

#include "common/trainer/metrics_events.h"
#include "worker/engine/metrics/callbacks.h"
#include "worker/engine/metrics/volatility.h"

namespace d2lora::engine {

using trainer::ToJson;

// Whole-run volatility, for summary.json: steps, volatility, mean_abs_change,
// loss_first, loss_last, spikes.
nlohmann::json ToJson(const RunVolatility& run);

// Seconds since the Unix epoch, from the system clock.
double UnixNow();

}  // namespace d2lora::engine
