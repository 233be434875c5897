// Rank 0's metrics.jsonl (common/trainer/metrics_events.h) read as it
// grows, into what ReportProgress carries: the latest "step" as
// TrainingMetrics (with the skipped steps counted and the latest evaluation's
// figures copied in), each "eval" as an EvalResult, and the "checkpoint"
// events whose folders are to be uploaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "d2lora/v1/job.pb.h"
#include "worker/daemon/log_tail.h"

namespace d2lora::worker {

struct CheckpointEvent {
  int64_t step = 0;
  std::string path;  // as the trainer wrote it
};

struct MetricsUpdate {
  // Set when a step or an evaluation arrived since the last Read (and a step
  // has been seen): the latest figures.
  bool has_metrics = false;
  v1::TrainingMetrics metrics;
  std::vector<v1::EvalResult> evals;
  std::vector<v1::Rollback> rollbacks;
  std::vector<CheckpointEvent> checkpoints;
  bool ended = false;  // the "end" event arrived
};

class MetricsTail {
 public:
  explicit MetricsTail(std::string path);

  // The complete lines written since the last call; lines that are not JSON
  // objects are skipped.
  MetricsUpdate Read();
  // One line, as Read applies it (for tests and for replaying a file).
  void Apply(absl::string_view line, MetricsUpdate& update);

  bool has_latest() const { return has_latest_; }
  const v1::TrainingMetrics& latest() const { return latest_; }

 private:
  LineTail lines_;
  v1::TrainingMetrics latest_;
  bool has_latest_ = false;
  int64_t skipped_ = 0;
  int64_t tokens_ = 0;  // summed over the step records: the attempt's tokens so far
};

}  // namespace d2lora::worker
