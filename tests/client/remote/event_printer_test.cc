#include "client/remote/event_printer.h"
#include "tests/support/captured_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

namespace d2lora::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using Capture = ::d2lora::testing::CapturedFile;

v1::JobEvent Progress(int64_t seq, int64_t step, int64_t seconds) {
  v1::JobEvent e;
  e.set_seq(seq);
  e.mutable_time()->set_seconds(1'800'000'000 + seconds);
  e.mutable_progress()->set_step(step);
  e.mutable_progress()->set_total_steps(10);
  e.mutable_progress()->set_loss(1.0);
  return e;
}

TEST(EventPrinterTest, TerminalRedrawsOneLiveLine) {
  Capture capture;
  {
    EventPrinter::Options options;
    options.out = capture.file();
    options.tty = true;
    options.width = 30;
    options.tz = absl::UTCTimeZone();
    EventPrinter printer(options);
    printer.Print(Progress(1, 1, 0));
    v1::JobEvent ckpt;
    ckpt.mutable_time()->set_seconds(1'800'000'001);
    ckpt.mutable_checkpoint()->set_step(1);
    ckpt.mutable_checkpoint()->set_name("checkpoints/step-1");
    printer.Print(ckpt);
    printer.Print(Progress(3, 2, 2));
    printer.End();
  }
  const std::string text = capture.text();
  // The live line is cut to width - 1 and redrawn after '\r' + clear-line.
  EXPECT_THAT(text, HasSubstr("\r\x1b[Kstep 1/10 (10%) loss 1"));
  EXPECT_THAT(text, HasSubstr("\r\x1b[K08:00:01 checkpoint at step 1: checkpoints/step-1\nstep 1/10"));
  EXPECT_THAT(text, HasSubstr("\r\x1b[Kstep 2/10 (20%) loss 1\n"));
  EXPECT_EQ(text.back(), '\n');
}

TEST(EventPrinterTest, PipeGetsPlainLinesAtMostEveryInterval) {
  Capture capture;
  {
    EventPrinter::Options options;
    options.out = capture.file();
    options.tty = false;
    options.min_interval = absl::Seconds(5);
    options.tz = absl::UTCTimeZone();
    EventPrinter printer(options);
    for (int step = 1; step <= 10; ++step) printer.Print(Progress(step, step, step));
    v1::JobEvent log;
    log.mutable_log()->set_text("not shown");
    printer.Print(log);
  }
  const std::string text = capture.text();
  EXPECT_EQ(text,
            "08:00:01 step 1/10 (10%) loss 1\n"
            "08:00:06 step 6/10 (60%) loss 1\n"
            "08:00:10 step 10/10 (100%) loss 1\n");
  EXPECT_THAT(text, Not(HasSubstr("\r")));
  EXPECT_THAT(text, Not(HasSubstr("not shown")));
}

TEST(EventPrinterTest, StateAndEvalLines) {
  Capture capture;
  {
    EventPrinter::Options options;
    options.out = capture.file();
    options.tz = absl::UTCTimeZone();
    EventPrinter printer(options);
    v1::JobEvent state;
    state.mutable_time()->set_seconds(1'800'000'000);
    state.mutable_state()->set_state(v1::RUNNING);
    state.mutable_state()->set_attempt(1);
    printer.Print(state);
    v1::JobEvent eval;
    eval.mutable_time()->set_seconds(1'800'000'000);
    eval.mutable_eval()->set_step(10);
    eval.mutable_eval()->set_final(true);
    eval.mutable_eval()->set_accuracy(0.5);
    printer.Print(eval);
  }
  EXPECT_EQ(capture.text(), "08:00:00 RUNNING (attempt 1)\n08:00:00 final eval at step 10: accuracy 0.5\n");
}

}  // namespace
}  // namespace d2lora::cli
