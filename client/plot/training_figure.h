// What `d2lora plot` draws from a run: the curves of its metrics.jsonl
// (common/trainer/metrics_events.h, read with the contract's one reader) and
// the training figure made of them. Pure data; chart.h draws it. No LibTorch.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "client/plot/chart.h"

namespace d2lora::plot {

using Curve = std::vector<std::pair<double, double>>;  // (step, value), by step

struct RunCurves {
  std::string name;    // the run's name from its start event ("" when it has none)
  std::string method;  // d2lora | lora | dora | full
  Curve loss;          // training loss of each optimizer step
  Curve volatility;    // the volatility window's value at each step (from the 3rd loss on)
  Curve lr;
  Curve tokens_per_second;
  Curve val_accuracy;  // multiple-choice validation accuracy at each evaluation
  Curve val_loss;      // validation loss at each evaluation
  int64_t ignored_lines = 0;  // lines that are no event (a torn last line of a live run, say)
};

// Reads a metrics.jsonl. A step logged twice (a resumed run, a rollback)
// keeps its last value. Errors name the file: unreadable, or no step at all.
absl::StatusOr<RunCurves> ReadRunCurves(const std::string& metrics_path);

struct AccuracyBar {
  std::string label;
  double accuracy = 0;
  double standard_error = 0;
};

struct TrainingFigureOptions {
  std::string title;
  std::vector<std::string> labels;  // one per run; empty: each run's name and method
  std::vector<AccuracyBar> bars;    // a fourth chart when given (else the learning rate)
  double chance = -1;               // a dashed line on the accuracy charts; < 0: none
};

// Four charts, two by two: training loss, training volatility, validation
// (accuracy when any run has it, else loss) against the step, one series per
// run; then the accuracy bars, or the learning rate.
Figure TrainingFigure(const std::vector<RunCurves>& runs, const TrainingFigureOptions& options);

}  // namespace d2lora::plot
