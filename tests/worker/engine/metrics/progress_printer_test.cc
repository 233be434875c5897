#include "worker/engine/metrics/progress_printer.h"
#include "tests/support/captured_file.h"
#include "tests/worker/engine/metrics/sample_events.h"

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace d2lora::engine {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using json = nlohmann::json;

TEST(FormatTest, Duration) {
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(45), "45s");
  EXPECT_EQ(FormatDuration(59.4), "59s");
  EXPECT_EQ(FormatDuration(59.6), "1m00s");
  EXPECT_EQ(FormatDuration(192), "3m12s");
  EXPECT_EQ(FormatDuration(3599), "59m59s");
  EXPECT_EQ(FormatDuration(3600 + 2 * 60 + 30), "1h02m");
  EXPECT_EQ(FormatDuration(100 * 3600), "100h00m");
  EXPECT_EQ(FormatDuration(-1), "?");
  EXPECT_EQ(FormatDuration(std::numeric_limits<double>::quiet_NaN()), "?");
  EXPECT_EQ(FormatDuration(std::numeric_limits<double>::infinity()), "?");
}

TEST(FormatTest, Bar) {
  EXPECT_EQ(FormatBar(0.3, 10), "[###.......]");
  EXPECT_EQ(FormatBar(0.0, 4), "[....]");
  EXPECT_EQ(FormatBar(1.0, 4), "[####]");
  EXPECT_EQ(FormatBar(0.99, 4), "[###.]");  // full only when done
  EXPECT_EQ(FormatBar(2.0, 3), "[###]");
  EXPECT_EQ(FormatBar(-1.0, 3), "[...]");
  EXPECT_EQ(FormatBar(std::numeric_limits<double>::quiet_NaN(), 3), "[...]");
  EXPECT_EQ(FormatBar(0.5, 0), "[]");
}

TEST(FormatTest, Count) {
  EXPECT_EQ(FormatCount(0), "0");
  EXPECT_EQ(FormatCount(999), "999");
  EXPECT_EQ(FormatCount(1234), "1,234");
  EXPECT_EQ(FormatCount(123456), "123,456");
  EXPECT_EQ(FormatCount(1234567), "1,234,567");
  EXPECT_EQ(FormatCount(-1234), "-1,234");
  EXPECT_EQ(FormatCount(std::numeric_limits<int64_t>::min()), "-9,223,372,036,854,775,808");
}

StepMetrics Step(int64_t step) {
  StepMetrics m;
  m.step = step;
  m.total_steps = 400;
  m.loss = 1.2341;
  m.lr = 1.9e-4;
  m.tokens_per_second = 1234.4;
  m.eta_seconds = 192;
  m.volatility.volatility = 0.0561;
  return m;
}

TEST(ProgressPrinterTest, StatusLine) {
  EXPECT_EQ(ProgressPrinter::StatusLine(Step(120), 120),
            "step 120/400 [#########.....................] 30% loss 1.234 vol 0.0561 lr 1.9e-04 "
            "1,234 tok/s ETA 3m12s");
  // Narrower: the bar shrinks, then goes, and the line never reaches the last column.
  for (int width : {100, 80, 70, 60, 40, 10}) {
    const std::string line = ProgressPrinter::StatusLine(Step(120), width);
    EXPECT_LE(static_cast<int>(line.size()), width - 1) << line;
    EXPECT_THAT(line, StartsWith(width >= 14 ? "step 120/400" : "step 120/")) << line;
  }
  EXPECT_EQ(ProgressPrinter::StatusLine(Step(120), 100).size(), 99u);  // the bar takes the room
  EXPECT_THAT(ProgressPrinter::StatusLine(Step(120), 80), HasSubstr("["));
  EXPECT_THAT(ProgressPrinter::StatusLine(Step(120), 60), Not(HasSubstr("[")));

  StepMetrics m = Step(5);
  m.volatility.volatility.reset();
  m.eta_seconds.reset();
  m.loss = std::numeric_limits<double>::quiet_NaN();
  m.skipped = true;
  const std::string line = ProgressPrinter::StatusLine(m, 200);
  EXPECT_THAT(line, HasSubstr("loss nan"));
  EXPECT_THAT(line, Not(HasSubstr("vol")));
  EXPECT_THAT(line, Not(HasSubstr("ETA")));
  EXPECT_THAT(line, EndsWith("skipped"));
}

using Captured = ::d2lora::testing::CapturedFile;

TEST(ProgressPrinterTest, TtyRedrawsOneLineAndPrintsEventsAboveIt) {
  Captured cap;
  ProgressPrinter::Options o;
  o.out = cap.file();
  o.tty = true;
  o.width = 100;
  ProgressPrinter p(o);
  EXPECT_TRUE(p.tty());
  RunInfo info;
  info.name = "demo";
  info.method = "d2lora";
  info.total_steps = 400;
  info.trainable_parameters = 1234;
  info.total_parameters = 123400;
  p.OnStart(info);
  p.OnStep(Step(1));
  p.OnStep(Step(2));
  EvalMetrics e;
  e.step = 2;
  e.loss = 1.5;
  e.accuracy = 0.5;
  e.scoring = "mean";
  e.examples = 1000;
  e.seconds = 75;
  p.OnEval(e);
  p.OnCheckpoint(CheckpointInfo{2, "/out/checkpoint-2"});
  p.OnStep(Step(3));
  p.OnEnd(json{{"final_loss", 1.25}, {"eval", {{"accuracy", 0.5}}}, {"steps", 3}});

  const std::string bar1 = ProgressPrinter::StatusLine(Step(1), 100);
  const std::string bar2 = ProgressPrinter::StatusLine(Step(2), 100);
  const std::string bar3 = ProgressPrinter::StatusLine(Step(3), 100);
  const std::string clear = "\r\x1b[K";
  const std::string expected =
      "run demo (d2lora): 400 steps, 1,234 of 123,400 parameters trainable (1.00%)\n" +  //
      clear + bar1 + clear + bar2 +                                                      //
      clear + "eval at step 2: loss 1.5, accuracy 0.5 (mean) (1,000 examples in 1m15s)\n" + bar2 +
      clear + "checkpoint at step 2: /out/checkpoint-2\n" + bar2 +  //
      clear + bar3 + "\n" +                                         //
      "done\n  eval.accuracy 0.5, final_loss 1.25, steps 3\n";
  EXPECT_EQ(cap.text(), expected);
}

TEST(ProgressPrinterTest, NotATtyPrintsJsonLinesEveryNSteps) {
  Captured cap;
  ProgressPrinter::Options o;
  o.out = cap.file();
  o.tty = false;
  o.every = 2;
  o.clock = [] { return 42.5; };
  ProgressPrinter p(o);
  RunInfo info;
  info.total_steps = 5;
  p.OnStart(info);
  for (int64_t s = 1; s <= 5; ++s) {
    StepMetrics m = Step(s);
    m.total_steps = 5;
    m.skipped = s == 1;
    p.OnStep(m);
  }
  p.OnCheckpoint(CheckpointInfo{5, "/ckpt"});
  EvalMetrics e;
  e.step = 5;
  e.final = true;
  p.OnEval(e);
  p.OnEnd(json{{"steps", 5}});

  std::istringstream in(cap.text());
  std::string line;
  std::vector<std::string> events;
  std::vector<int64_t> steps;
  while (std::getline(in, line)) {
    EXPECT_THAT(line, Not(HasSubstr("\r")));
    const json j = json::parse(line);
    EXPECT_EQ(j.at("time"), 42.5);
    events.push_back(j.at("event"));
    if (j.at("event") == "step") steps.push_back(j.at("step"));
    if (j.at("event") == "end") {
      EXPECT_EQ(j.at("summary").at("steps"), 5);
    }
  }
  EXPECT_EQ(events, (std::vector<std::string>{"start", "step", "step", "step", "step", "checkpoint", "eval",
                                              "end"}));
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 4, 5}));  // skipped 1, every 2nd, the last
}

TEST(ProgressPrinterTest, PrintsARollbackOnTheTerminalAndAsJson) {
  const RollbackInfo r = SampleRollback();
  Captured tty;
  ProgressPrinter::Options o;
  o.out = tty.file();
  o.tty = true;
  o.width = 100;
  ProgressPrinter p(o);
  p.OnRollback(r);
  EXPECT_EQ(tty.text(), "rollback 1/3: loss spike at step 38: loss 5.6 > guard.spike_factor 2 x EMA 1.42; "
                        "back to step 32, lr x0.5, batches 37-38 skipped\n");  // nothing drawn yet: no clear
  Captured lines;
  o.out = lines.file();
  o.tty = false;
  ProgressPrinter q(o);
  q.OnRollback(r);
  const json j = json::parse(lines.text());
  EXPECT_EQ(j.at("event"), "rollback");
  EXPECT_EQ(j.at("restored_step"), 32);
  EXPECT_EQ(j.at("lr_scale"), 0.5);
}

TEST(ProgressPrinterTest, TtyDefaultsToIsatty) {
  FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  ProgressPrinter::Options o;
  o.out = f;
  EXPECT_FALSE(ProgressPrinter(o).tty());
  std::fclose(f);
}

}  // namespace
}  // namespace d2lora::engine
