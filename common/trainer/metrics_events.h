// The trainer-process contract, part 3: what a training run reports, and the
// one JSON form of it that metrics.jsonl holds (output_names.h). The engine
// writes it (worker/engine/metrics/metrics_jsonl.h), the worker daemon reads
// it as it grows (worker/daemon/metrics_tail.h); both go through this codec.
//
// One flat object per event with snake_case keys named after the struct
// fields, plus "event" (start | step | eval | checkpoint | rollback | end) and
// "time" (unix seconds). Nested stats are flattened (tau_mean/tau_min/tau_max,
// volatility/loss_cv/spikes_in_window/...). Unset optionals are omitted;
// non-finite doubles are written as null, and read back as NaN (a plain
// field) or unset (an optional one). The reader is lenient: an absent field
// reads as its default, so that a line from an older trainer still counts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include <nlohmann/json.hpp>

#include "absl/strings/string_view.h"

namespace d2lora::trainer {

// Training volatility over a sliding window of steps (engine/metrics/volatility.h).
struct VolatilityStats {
  // Sample standard deviation of the step-to-step loss changes in the window;
  // unset until the window holds at least two changes (three losses).
  std::optional<double> volatility;
  // Sample standard deviation / mean of the losses in the window; unset until
  // it holds two losses (or when the mean is 0).
  std::optional<double> loss_cv;
  int64_t spikes_in_window = 0;  // steps in the window whose loss > 1.5 x EMA
  int64_t spikes_total = 0;      // over the whole run
  int64_t window_steps = 0;      // losses currently in the window
  std::optional<double> loss_ema;  // EMA of the losses (decay 0.9), the spike test's baseline
};

// D2-LoRA's tau over all adapted layers (effective values, after softplus).
struct TauStats {
  double mean = 0;
  double min = 0;
  double max = 0;
};

struct RunInfo {
  std::string name;
  std::string method;  // "d2lora" | "lora" | "dora" | "full"
  int64_t total_steps = 0;
  int64_t start_step = 0;  // > 0 when resumed from a checkpoint
  int64_t steps_per_epoch = 0;
  int64_t world_size = 1;
  int64_t trainable_parameters = 0;
  int64_t total_parameters = 0;
  std::string output_dir;
};

struct StepMetrics {
  int64_t step = 0;  // optimizer steps done, 1-based
  int64_t total_steps = 0;
  int64_t epoch = 0;  // 0-based epoch the step's batch came from
  double loss = 0;    // token-mean loss of the global batch
  double lr = 0;
  double grad_norm = 0;  // global L2 norm before clipping
  int64_t tokens = 0;    // real tokens in the global batch
  double tokens_per_second = 0;
  double step_seconds = 0;
  // Parts of step_seconds on this rank (rank 0 reports its own): forward and
  // backward of its micro-batches, and the one gradient all-reduce, which
  // includes waiting for the slowest rank (0 with one rank).
  double compute_seconds = 0;
  double allreduce_seconds = 0;
  double elapsed_seconds = 0;  // since the start of this process's run
  std::optional<double> eta_seconds;
  std::optional<TauStats> tau;  // D2-LoRA only
  VolatilityStats volatility;
  bool skipped = false;  // non-finite loss or gradients: no update was applied
  int64_t rollbacks = 0;  // the training guard's rollbacks so far ("rollbacks_total")
};

// The training guard rolled the run back (engine/train/guard.h).
struct RollbackInfo {
  int64_t step = 0;           // the step whose loss triggered it (1-based); its update was not applied
  int64_t restored_step = 0;  // the in-memory checkpoint the run went back to
  std::string reason;         // "loss spike at step 12: loss 9.1 > guard.spike_factor 3 x EMA 1.2" | "non-finite ..."
  int64_t rollbacks = 0;      // this one included
  int64_t max_rollbacks = 0;
  double lr_scale = 1;        // the learning rate's multiplier from now on
  int64_t first_skipped_batch = 0;  // global batches [first, last] are skipped from now on
  int64_t last_skipped_batch = 0;
};

struct EvalMetrics {
  int64_t step = 0;
  bool final = false;  // the evaluation at the end of the run
  std::optional<double> loss;        // validation token-mean loss
  std::optional<double> perplexity;
  std::optional<double> accuracy;    // multiple choice
  std::string scoring;               // multiple choice: "sum" | "mean" | "byte" | "letter"
  std::optional<double> rouge_l;     // instruction data: F1 of greedy generations
  int64_t examples = 0;
  double seconds = 0;
};

struct CheckpointInfo {
  int64_t step = 0;
  std::string path;
};

// The last event: what summary.json holds.
struct EndInfo {
  nlohmann::json summary;
};

// One line of metrics.jsonl.
struct MetricsEvent {
  double time = 0;  // unix seconds
  std::variant<RunInfo, StepMetrics, EvalMetrics, CheckpointInfo, RollbackInfo, EndInfo> body;
};

// The writer's half: each struct's fields as a JSON object.
nlohmann::json ToJson(const RunInfo& info);
nlohmann::json ToJson(const StepMetrics& metrics);
nlohmann::json ToJson(const EvalMetrics& metrics);
nlohmann::json ToJson(const CheckpointInfo& info);
nlohmann::json ToJson(const RollbackInfo& info);

// "start" | "step" | "eval" | "checkpoint" | "rollback" | "end".
const char* EventName(const MetricsEvent& event);
// What a checkpoint's trainer_state.json records of the run at its step,
// under "metrics": the step's training figures and the newest evaluation at
// or before the step (ListCheckpoints shows them). Written by the engine,
// read by the coordinator; both halves use the codec above.
struct CheckpointMetrics {
  std::optional<StepMetrics> train;
  std::optional<EvalMetrics> eval;
};
nlohmann::json ToJson(const CheckpointMetrics& metrics);
// Lenient like the line reader: a missing or malformed part is unset.
CheckpointMetrics CheckpointMetricsFromJson(const nlohmann::json& metrics);

// The whole line, without its '\n'; invalid UTF-8 is replaced, never thrown on.
std::string EventLine(const MetricsEvent& event);

// The reader's half: one line; nullopt for a line that is not a JSON object
// or names no event this codec knows.
std::optional<MetricsEvent> ParseEventLine(absl::string_view line);

}  // namespace d2lora::trainer
