#include "client/plot/training_figure.h"

#include <cmath>
#include <string>
#include <variant>

#include "common/trainer/metrics_events.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace d2lora::plot {
namespace {

using ::d2lora::testing::TempDir;

std::string Line(decltype(trainer::MetricsEvent::body) body) {
  trainer::MetricsEvent e;
  e.time = 1.0;
  e.body = std::move(body);
  return trainer::EventLine(e) + "\n";
}

trainer::StepMetrics Step(int64_t step, double loss, std::optional<double> volatility = std::nullopt) {
  trainer::StepMetrics m;
  m.step = step;
  m.loss = loss;
  m.lr = 0.001 * static_cast<double>(step);
  m.volatility.volatility = volatility;
  return m;
}

TEST(RunCurvesTest, ReadsTheCurvesOfAMetricsFile) {
  TempDir tmp;
  trainer::RunInfo start;
  start.name = "tune";
  start.method = "d2lora";
  trainer::EvalMetrics eval;
  eval.step = 4;
  eval.accuracy = 0.5;
  eval.loss = 1.25;
  trainer::EvalMetrics lm_eval;  // loss only
  lm_eval.step = 2;
  lm_eval.loss = 2.5;
  std::string text = Line(start) + Line(Step(1, 4.0)) + Line(Step(2, 3.0)) + Line(lm_eval) +
                     Line(Step(3, 2.0, 0.7)) + Line(Step(4, 9.0, 3.0)) +
                     Line(Step(4, 1.5, 0.6)) +  // step 4 again, after a rollback: the last one counts
                     Line(eval) + "{\"torn\": \n";
  ::d2lora::testing::WriteFile(tmp.file("metrics.jsonl"), text);
  absl::StatusOr<RunCurves> run = ReadRunCurves(tmp.file("metrics.jsonl"));
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->name, "tune");
  EXPECT_EQ(run->method, "d2lora");
  EXPECT_EQ(run->loss, (Curve{{1, 4.0}, {2, 3.0}, {3, 2.0}, {4, 1.5}}));
  ASSERT_EQ(run->volatility.size(), 4u);
  EXPECT_TRUE(std::isnan(run->volatility[0].second));
  EXPECT_EQ(run->volatility[3], (std::pair<double, double>{4, 0.6}));
  EXPECT_EQ(run->lr[2].second, 0.003);
  EXPECT_EQ(run->val_accuracy, (Curve{{4, 0.5}}));
  EXPECT_EQ(run->val_loss, (Curve{{2, 2.5}, {4, 1.25}}));
  EXPECT_EQ(run->ignored_lines, 1);
}

TEST(RunCurvesTest, ErrorsNameTheFile) {
  TempDir tmp;
  absl::StatusOr<RunCurves> missing = ReadRunCurves(tmp.file("nowhere.jsonl"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(tmp.file("nowhere.jsonl")), std::string::npos);
  ::d2lora::testing::WriteFile(tmp.file("nostep.jsonl"), Line(trainer::RunInfo{}) + "not json\n");
  absl::StatusOr<RunCurves> no_step = ReadRunCurves(tmp.file("nostep.jsonl"));
  ASSERT_FALSE(no_step.ok());
  EXPECT_EQ(no_step.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_step.status().message().find("nostep.jsonl: no training step"), std::string::npos)
      << no_step.status();
}

const LineChart& LineAt(const Figure& f, size_t i) { return std::get<LineChart>(f.charts.at(i)); }

TEST(TrainingFigureTest, FourChartsOneSeriesPerRun) {
  RunCurves pre;
  pre.name = "base";
  pre.method = "full";
  pre.loss = {{1, 8}, {2, 7}};
  pre.val_loss = {{2, 7.5}};
  RunCurves tune;
  tune.name = "tune";
  tune.method = "d2lora";
  tune.loss = {{1, 3}, {2, 1}};
  tune.val_accuracy = {{1, 0.3}, {2, 0.6}};

  TrainingFigureOptions options;
  options.chance = 0.25;
  Figure f = TrainingFigure({pre, tune}, options);
  ASSERT_EQ(f.charts.size(), 4u);
  EXPECT_EQ(LineAt(f, 0).title, "Training loss");
  ASSERT_EQ(LineAt(f, 0).series.size(), 2u);
  EXPECT_EQ(LineAt(f, 0).series[0].name, "base (full)");
  EXPECT_EQ(LineAt(f, 0).series[1].points, tune.loss);
  EXPECT_EQ(LineAt(f, 1).title, "Training volatility");
  EXPECT_EQ(LineAt(f, 2).title, "Validation accuracy");  // a run has accuracy
  EXPECT_EQ(LineAt(f, 2).series[1].points, tune.val_accuracy);
  EXPECT_TRUE(LineAt(f, 2).percent);
  EXPECT_EQ(LineAt(f, 2).reference, 0.25);
  EXPECT_EQ(LineAt(f, 3).title, "Learning rate");  // no bars

  options.labels = {"pretraining", "fine-tune"};
  options.bars = {{"base", 0.25, 0.02}, {"merged", 0.7, 0.02}};
  f = TrainingFigure({pre, tune}, options);
  EXPECT_EQ(LineAt(f, 0).series[1].name, "fine-tune");
  const auto& bars = std::get<BarChart>(f.charts.at(3));
  ASSERT_EQ(bars.bars.size(), 2u);
  EXPECT_EQ(bars.bars[1].label, "merged");
  EXPECT_EQ(bars.bars[1].value, 0.7);
  EXPECT_EQ(bars.reference, 0.25);

  f = TrainingFigure({pre}, TrainingFigureOptions{});
  EXPECT_EQ(LineAt(f, 2).title, "Validation loss");  // no run has accuracy
  EXPECT_EQ(LineAt(f, 2).series[0].points, pre.val_loss);
}

}  // namespace
}  // namespace d2lora::plot
