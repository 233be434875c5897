#include "client/remote/event_printer.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/remote/job_format.h"

namespace d2lora::cli {
namespace {

constexpr char kClearLine[] = "\r\x1b[K";

}  // namespace

EventPrinter::EventPrinter(Options options) : options_(options) {}

EventPrinter::~EventPrinter() { End(); }

int EventPrinter::TerminalWidth() {
  struct winsize ws {};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10) return ws.ws_col;
  return 80;
}

void EventPrinter::PrintLine(const std::string& text) {
  if (!live_.empty()) std::fputs(kClearLine, options_.out);
  std::fputs(text.c_str(), options_.out);
  std::fputc('\n', options_.out);
  if (!live_.empty()) std::fputs(live_.c_str(), options_.out);
  std::fflush(options_.out);
}

void EventPrinter::End() {
  if (!live_.empty()) {
    std::fputc('\n', options_.out);
    std::fflush(options_.out);
  }
  live_.clear();
}

void EventPrinter::Print(const v1::JobEvent& event) {
  const absl::Time t = event.has_time() ? ToAbslTime(event.time()) : absl::Now();
  const std::string stamp = absl::FormatTime("%H:%M:%S ", t, options_.tz);
  switch (event.kind_case()) {
    case v1::JobEvent::kState:
      PrintLine(stamp + FormatStateLine(event.state()));
      break;
    case v1::JobEvent::kProgress:
      Progress(event);
      break;
    case v1::JobEvent::kCheckpoint:
      PrintLine(absl::StrCat(stamp, "checkpoint at step ", event.checkpoint().step(), ": ", event.checkpoint().name()));
      break;
    case v1::JobEvent::kEval:
      PrintLine(stamp + FormatEvalLine(event.eval()));
      break;
    case v1::JobEvent::kRollback: {
      const v1::Rollback& r = event.rollback();
      PrintLine(absl::StrCat(stamp, "rollback ", r.rollbacks(), "/", r.max_rollbacks(), ": ", r.reason(),
                             "; back to step ", r.restored_step(), ", lr x", r.lr_scale()));
      break;
    }
    case v1::JobEvent::kLog:
    case v1::JobEvent::KIND_NOT_SET:
      break;
  }
}

void EventPrinter::Progress(const v1::JobEvent& event) {
  const v1::TrainingMetrics& m = event.progress();
  std::string line = FormatProgressLine(m);
  if (options_.tty) {
    if (options_.width > 1 && static_cast<int>(line.size()) > options_.width - 1) line.resize(options_.width - 1);
    live_ = line;
    std::fputs(kClearLine, options_.out);
    std::fputs(live_.c_str(), options_.out);
    std::fflush(options_.out);
    return;
  }
  const absl::Time t = event.has_time() ? ToAbslTime(event.time()) : absl::Now();
  const bool last = m.total_steps() > 0 && m.step() >= m.total_steps() && m.step() != last_step_;
  if (!last && last_progress_ != absl::InfinitePast() && t - last_progress_ < options_.min_interval) return;
  last_progress_ = t;
  last_step_ = m.step();
  line = absl::FormatTime("%H:%M:%S ", t, options_.tz) + line;
  std::fputs(line.c_str(), options_.out);
  std::fputc('\n', options_.out);
  std::fflush(options_.out);
}

}  // namespace d2lora::cli
