// Training progress for people and for log collectors.
//
// On a terminal: one live line, redrawn in place with '\r' and
// clear-to-end-of-line after every step,
//   step 120/400 [#####.....] 30% loss 1.234 vol 0.056 lr 1.9e-04 1,234 tok/s ETA 3m12s
// cut to the terminal width so that it never wraps. The run's start, each
// evaluation and each checkpoint print a line of their own above it (the bar
// is cleared, the line printed, the bar redrawn); OnEnd ends the bar's line
// and prints a short summary.
//
// Elsewhere (a pipe, a log file): one JSON line per event, the same objects as
// metrics.jsonl (metrics_json.h with "event" and "time"), steps only every
// `every` steps (and the last step, and any skipped step).
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/text_format.h"
#include "worker/engine/metrics/callbacks.h"


namespace d2lora::engine {

using ::d2lora::FormatCount;     // common/text_format.h
using ::d2lora::FormatDuration;
// "[#####.....]": `width` cells between brackets, floor(fraction * width) of
// them '#'; fraction clamped to [0, 1] (NaN as 0).
std::string FormatBar(double fraction, int width);

class ProgressPrinter : public TrainingCallback {
 public:
  struct Options {
    FILE* out = stderr;
    std::optional<bool> tty;  // unset: isatty(fileno(out))
    int64_t every = 1;        // not a TTY: print every Nth step
    int width = 80;           // TTY: columns of the live line
    std::function<double()> clock;  // "time" in JSON lines; unset: the system clock
  };

  ProgressPrinter();
  explicit ProgressPrinter(Options options);

  void OnStart(const RunInfo& info) override;
  void OnStep(const StepMetrics& metrics) override;
  void OnEval(const EvalMetrics& metrics) override;
  void OnCheckpoint(const CheckpointInfo& info) override;
  void OnRollback(const RollbackInfo& info) override;
  void OnEnd(const nlohmann::json& summary) override;

  bool tty() const { return tty_; }
  // The live line for `m` at `width` columns (TTY mode's text, without '\r').
  static std::string StatusLine(const StepMetrics& m, int width);

 private:
  void PrintJson(trainer::MetricsEvent event);
  // TTY: prints `text` (one or more whole lines) above the live line.
  void PrintAbove(const std::string& text);

  FILE* out_;
  bool tty_;
  int64_t every_;
  int width_;
  std::function<double()> clock_;
  std::string bar_;  // the live line on screen; empty when none
};

}  // namespace d2lora::engine
