#include "client/plot/training_figure.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <variant>

#include "absl/strings/str_cat.h"
#include "common/trainer/metrics_events.h"

namespace d2lora::plot {
namespace {

// (step -> value) maps, so that a step logged again replaces the earlier value.
using ByStep = std::map<int64_t, double>;

Curve ToCurve(const ByStep& m) {
  Curve c;
  c.reserve(m.size());
  for (const auto& [step, value] : m) c.emplace_back(static_cast<double>(step), value);
  return c;
}

double OrNan(const std::optional<double>& v) { return v ? *v : std::nan(""); }

std::string RunLabel(const RunCurves& run, const TrainingFigureOptions& options, size_t i) {
  if (i < options.labels.size() && !options.labels[i].empty()) return options.labels[i];
  std::string label = run.name.empty() ? absl::StrCat("run ", i + 1) : run.name;
  if (!run.method.empty()) absl::StrAppend(&label, " (", run.method, ")");
  return label;
}

LineChart Lines(std::string title, std::string y_label, const std::vector<RunCurves>& runs,
                const TrainingFigureOptions& options, Curve RunCurves::*curve, bool markers = false) {
  LineChart chart;
  chart.title = std::move(title);
  chart.x_label = "step";
  chart.y_label = std::move(y_label);
  for (size_t i = 0; i < runs.size(); ++i) {
    chart.series.push_back({RunLabel(runs[i], options, i), runs[i].*curve, markers});
  }
  return chart;
}

}  // namespace

absl::StatusOr<RunCurves> ReadRunCurves(const std::string& metrics_path) {
  std::ifstream in(metrics_path);
  if (!in) return absl::NotFoundError(absl::StrCat(metrics_path, ": cannot read (", std::strerror(errno), ")"));
  RunCurves run;
  ByStep loss, volatility, lr, tps, accuracy, val_loss;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::optional<trainer::MetricsEvent> event = trainer::ParseEventLine(line);
    if (!event) {
      ++run.ignored_lines;
      continue;
    }
    if (const auto* start = std::get_if<trainer::RunInfo>(&event->body)) {
      run.name = start->name;
      run.method = start->method;
    } else if (const auto* step = std::get_if<trainer::StepMetrics>(&event->body)) {
      loss[step->step] = step->loss;
      volatility[step->step] = OrNan(step->volatility.volatility);
      lr[step->step] = step->lr;
      tps[step->step] = step->tokens_per_second;
    } else if (const auto* eval = std::get_if<trainer::EvalMetrics>(&event->body)) {
      if (eval->accuracy) accuracy[eval->step] = *eval->accuracy;
      if (eval->loss) val_loss[eval->step] = *eval->loss;
    }
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(metrics_path, ": read error"));
  if (loss.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(metrics_path, ": no training step in it (",
                                                   run.ignored_lines, " lines that are no metrics event)"));
  }
  run.loss = ToCurve(loss);
  run.volatility = ToCurve(volatility);
  run.lr = ToCurve(lr);
  run.tokens_per_second = ToCurve(tps);
  run.val_accuracy = ToCurve(accuracy);
  run.val_loss = ToCurve(val_loss);
  return run;
}

Figure TrainingFigure(const std::vector<RunCurves>& runs, const TrainingFigureOptions& options) {
  Figure figure;
  figure.title = options.title;
  figure.charts.push_back(Lines("Training loss", "loss (token mean)", runs, options, &RunCurves::loss));
  figure.charts.push_back(
      Lines("Training volatility", "std of step-to-step loss change", runs, options, &RunCurves::volatility));
  const bool any_accuracy =
      std::any_of(runs.begin(), runs.end(), [](const RunCurves& r) { return !r.val_accuracy.empty(); });
  if (any_accuracy) {
    LineChart chart = Lines("Validation accuracy", "accuracy", runs, options, &RunCurves::val_accuracy, true);
    chart.percent = true;
    chart.empty_text = "no evaluation during training";
    chart.reference = options.chance;
    if (options.chance >= 0) chart.reference_label = "chance";
    figure.charts.push_back(std::move(chart));
  } else {
    LineChart chart = Lines("Validation loss", "loss (token mean)", runs, options, &RunCurves::val_loss, true);
    chart.empty_text = "no evaluation during training (eval.every: 0)";
    figure.charts.push_back(std::move(chart));
  }
  if (!options.bars.empty()) {
    BarChart bars;
    bars.title = "Accuracy on the validation split (± 1 standard error)";
    bars.y_label = "accuracy";
    bars.percent = true;
    bars.reference = options.chance;
    if (options.chance >= 0) bars.reference_label = "chance";
    for (const AccuracyBar& b : options.bars) bars.bars.push_back({b.label, b.accuracy, b.standard_error});
    figure.charts.push_back(std::move(bars));
  } else {
    figure.charts.push_back(Lines("Learning rate", "learning rate", runs, options, &RunCurves::lr));
  }
  return figure;
}

}  // namespace d2lora::plot
