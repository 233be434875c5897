// How `watch` shows a job's events to a person. State changes, evaluations and
// checkpoints get a line each ("12:03:04 RUNNING (attempt 1)"); progress is one
// live line: on a terminal redrawn in place with '\r' (lines of their own are
// printed above it), elsewhere a plain line at most every `min_interval`
// seconds of event time (and always the last step). Log lines are not shown.
#pragma once

#include <cstdio>
#include <string>

#include "absl/time/time.h"
#include "d2lora/v1/job.pb.h"

namespace d2lora::cli {

class EventPrinter {
 public:
  struct Options {
    FILE* out = stdout;
    bool tty = false;
    int width = 80;  // terminal columns (tty only)
    absl::Duration min_interval = absl::Seconds(5);
    absl::TimeZone tz = absl::LocalTimeZone();
  };

  explicit EventPrinter(Options options);
  ~EventPrinter();

  void Print(const v1::JobEvent& event);
  // A line of its own (without '\n'), above the live line.
  void PrintLine(const std::string& text);
  // Ends the live line, so that what follows starts on a fresh line.
  void End();

  // stdout's terminal width, or 80.
  static int TerminalWidth();

 private:
  void Progress(const v1::JobEvent& event);

  Options options_;
  std::string live_;  // the live line on screen (tty)
  absl::Time last_progress_ = absl::InfinitePast();
  int64_t last_step_ = -1;
};

}  // namespace d2lora::cli
