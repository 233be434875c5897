// metrics.jsonl in a run's output directory: one JSON object per line per
// event (metrics_json.h, plus "event" and "time"); OnEnd writes
// {"event": "end", "time": ..., "summary": <summary.json>}.
//
// Each line goes to the file with one write() on an O_APPEND descriptor, so a
// killed process leaves only complete lines; the file is fsynced at each
// checkpoint and at the end. A resumed run appends: its "start" line has
// start_step > 0, and the steps after the checkpoint appear again — readers
// take the last line for a step. When appending, an incomplete last line (a
// crash mid-write, e.g. power loss) is cut off first.
//
// Callbacks cannot fail; the first write error is kept in status() (and
// nothing more is written after it).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/metrics/callbacks.h"

namespace d2lora::engine {

class JsonlMetricsWriter : public TrainingCallback {
 public:
  // Opens `path`, truncating it unless `append`. `clock` gives "time" (unix
  // seconds); unset, the system clock. The error names the path.
  static absl::StatusOr<std::unique_ptr<JsonlMetricsWriter>> Create(
      const std::string& path, bool append, std::function<double()> clock = nullptr);
  ~JsonlMetricsWriter() override;
  JsonlMetricsWriter(const JsonlMetricsWriter&) = delete;
  JsonlMetricsWriter& operator=(const JsonlMetricsWriter&) = delete;

  void OnStart(const RunInfo& info) override;
  void OnStep(const StepMetrics& metrics) override;
  void OnEval(const EvalMetrics& metrics) override;
  void OnCheckpoint(const CheckpointInfo& info) override;
  void OnRollback(const RollbackInfo& info) override;
  void OnEnd(const nlohmann::json& summary) override;

  // OK, or the first error writing or syncing the file.
  const absl::Status& status() const { return status_; }
  const std::string& path() const { return path_; }

 private:
  JsonlMetricsWriter(std::string path, int fd, std::function<double()> clock)
      : path_(std::move(path)), fd_(fd), clock_(std::move(clock)) {}
  // One line: the event in the contract's form (trainer::EventLine).
  void Write(trainer::MetricsEvent event);
  void Sync();

  std::string path_;
  int fd_;
  std::function<double()> clock_;
  absl::Status status_;
};

}  // namespace d2lora::engine
