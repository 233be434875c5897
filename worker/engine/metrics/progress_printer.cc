#include "worker/engine/metrics/progress_printer.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/engine/metrics/metrics_json.h"

namespace d2lora::engine {
namespace {

using json = nlohmann::json;

constexpr const char* kClearLine = "\r\x1b[K";
constexpr int kMaxBar = 30;
constexpr int kMinBar = 5;

// Non-finite values as "nan"/"inf"/"-inf".
std::string NonFinite(double v) { return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"); }

std::string G4(double v) { return std::isfinite(v) ? absl::StrFormat("%.4g", v) : NonFinite(v); }

std::string Percent(double fraction) {
  return absl::StrCat(static_cast<int>(std::floor(std::clamp(fraction, 0.0, 1.0) * 100)), "%");
}

// One scalar of the summary as text, or "" for something not worth a line.
std::string Scalar(const json& v) {
  if (v.is_number_integer()) return v.dump();
  if (v.is_number()) return G4(v.get<double>());
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    return s.size() <= 60 ? s : "";
  }
  return "";
}

// "key value" items of the summary's scalars, nested objects one level deep
// as "outer.inner".
std::vector<std::string> SummaryItems(const json& summary) {
  std::vector<std::string> items;
  if (!summary.is_object()) return items;
  for (const auto& [key, value] : summary.items()) {
    if (value.is_object()) {
      for (const auto& [inner, v] : value.items()) {
        std::string s = Scalar(v);
        if (!s.empty()) items.push_back(absl::StrCat(key, ".", inner, " ", s));
      }
      continue;
    }
    std::string s = Scalar(value);
    if (!s.empty()) items.push_back(absl::StrCat(key, " ", s));
  }
  return items;
}

}  // namespace

std::string FormatBar(double fraction, int width) {
  width = std::max(width, 0);
  if (std::isnan(fraction)) fraction = 0;
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int filled = std::min(width, static_cast<int>(std::floor(fraction * width)));
  return absl::StrCat("[", std::string(filled, '#'), std::string(width - filled, '.'), "]");
}

std::string ProgressPrinter::StatusLine(const StepMetrics& m, int width) {
  const double fraction =
      m.total_steps > 0 ? static_cast<double>(m.step) / static_cast<double>(m.total_steps) : 0;
  const std::string head =
      m.total_steps > 0 ? absl::StrCat("step ", m.step, "/", m.total_steps) : absl::StrCat("step ", m.step);
  std::string tail = absl::StrCat(" ", Percent(fraction), " loss ", G4(m.loss));
  if (m.volatility.volatility.has_value()) {
    const double v = *m.volatility.volatility;
    absl::StrAppend(&tail, " vol ", std::isfinite(v) ? absl::StrFormat("%.3g", v) : NonFinite(v));
  }
  absl::StrAppend(&tail, " lr ", std::isfinite(m.lr) ? absl::StrFormat("%.1e", m.lr) : NonFinite(m.lr));
  if (std::isfinite(m.tokens_per_second) && m.tokens_per_second >= 0) {
    absl::StrAppend(&tail, " ", FormatCount(std::llround(m.tokens_per_second)), " tok/s");
  }
  if (m.eta_seconds.has_value()) absl::StrAppend(&tail, " ETA ", FormatDuration(*m.eta_seconds));
  if (m.skipped) absl::StrAppend(&tail, " skipped");

  // The last column stays empty: some terminals wrap when it is written.
  const int room = width - 1 - static_cast<int>(head.size() + tail.size()) - 3;  // " [" "]"
  std::string line = head;
  if (room >= kMinBar) absl::StrAppend(&line, " ", FormatBar(fraction, std::min(room, kMaxBar)));
  line += tail;
  if (width > 1 && static_cast<int>(line.size()) > width - 1) line.resize(width - 1);
  return line;
}

ProgressPrinter::ProgressPrinter() : ProgressPrinter(Options{}) {}

ProgressPrinter::ProgressPrinter(Options options)
    : out_(options.out != nullptr ? options.out : stderr),
      tty_(options.tty.has_value() ? *options.tty : ::isatty(::fileno(out_)) == 1),
      every_(std::max<int64_t>(options.every, 1)),
      width_(options.width),
      clock_(options.clock ? std::move(options.clock) : std::function<double()>(UnixNow)) {}

void ProgressPrinter::PrintJson(trainer::MetricsEvent event) {
  const std::string line = trainer::EventLine(event);
  std::fputs(line.c_str(), out_);
  std::fputc('\n', out_);
  std::fflush(out_);
}

void ProgressPrinter::PrintAbove(const std::string& text) {
  if (!bar_.empty()) std::fputs(kClearLine, out_);
  std::fputs(text.c_str(), out_);
  if (!bar_.empty()) std::fputs(bar_.c_str(), out_);
  std::fflush(out_);
}

void ProgressPrinter::OnStart(const RunInfo& info) {
  if (!tty_) return PrintJson({clock_(), info});
  std::string text = absl::StrCat("run ", info.name.empty() ? "(unnamed)" : info.name, " (", info.method,
                                  "): ", FormatCount(info.total_steps), " steps");
  if (info.steps_per_epoch > 0) absl::StrAppend(&text, ", ", FormatCount(info.steps_per_epoch), "/epoch");
  if (info.start_step > 0) absl::StrAppend(&text, ", resuming at step ", info.start_step);
  if (info.world_size > 1) absl::StrAppend(&text, ", ", info.world_size, " ranks");
  if (info.total_parameters > 0) {
    absl::StrAppend(&text, ", ", FormatCount(info.trainable_parameters), " of ",
                    FormatCount(info.total_parameters), " parameters trainable (",
                    absl::StrFormat("%.2f", 100.0 * static_cast<double>(info.trainable_parameters) /
                                                static_cast<double>(info.total_parameters)),
                    "%)");
  }
  text += "\n";
  if (!info.output_dir.empty()) absl::StrAppend(&text, "output: ", info.output_dir, "\n");
  PrintAbove(text);
}

void ProgressPrinter::OnStep(const StepMetrics& m) {
  if (!tty_) {
    if (m.step % every_ == 0 || m.step == m.total_steps || m.skipped) PrintJson({clock_(), m});
    return;
  }
  bar_ = StatusLine(m, width_);
  std::fputs(kClearLine, out_);
  std::fputs(bar_.c_str(), out_);
  std::fflush(out_);
}

void ProgressPrinter::OnEval(const EvalMetrics& m) {
  if (!tty_) return PrintJson({clock_(), m});
  std::vector<std::string> parts;
  if (m.loss) parts.push_back(absl::StrCat("loss ", G4(*m.loss)));
  if (m.perplexity) parts.push_back(absl::StrCat("ppl ", G4(*m.perplexity)));
  if (m.accuracy) {
    std::string acc = absl::StrCat("accuracy ", G4(*m.accuracy));
    if (!m.scoring.empty()) absl::StrAppend(&acc, " (", m.scoring, ")");
    parts.push_back(acc);
  }
  if (m.rouge_l) parts.push_back(absl::StrCat("rouge-L ", G4(*m.rouge_l)));
  std::string text = absl::StrCat(m.final ? "final eval" : "eval", " at step ", m.step, ":");
  for (size_t i = 0; i < parts.size(); ++i) absl::StrAppend(&text, i == 0 ? " " : ", ", parts[i]);
  absl::StrAppend(&text, " (", FormatCount(m.examples), " examples in ", FormatDuration(m.seconds), ")\n");
  PrintAbove(text);
}

void ProgressPrinter::OnCheckpoint(const CheckpointInfo& info) {
  if (!tty_) return PrintJson({clock_(), info});
  PrintAbove(absl::StrCat("checkpoint at step ", info.step, ": ", info.path, "\n"));
}

void ProgressPrinter::OnRollback(const RollbackInfo& r) {
  if (!tty_) return PrintJson({clock_(), r});
  std::string skipped = r.first_skipped_batch == r.last_skipped_batch
                            ? absl::StrCat("batch ", r.first_skipped_batch)
                            : absl::StrCat("batches ", r.first_skipped_batch, "-", r.last_skipped_batch);
  PrintAbove(absl::StrCat("rollback ", r.rollbacks, "/", r.max_rollbacks, ": ", r.reason, "; back to step ",
                          r.restored_step, ", lr x", G4(r.lr_scale), ", ", skipped, " skipped\n"));
}

void ProgressPrinter::OnEnd(const json& summary) {
  if (!tty_) return PrintJson({clock_(), trainer::EndInfo{summary}});
  if (!bar_.empty()) std::fputc('\n', out_);
  bar_.clear();
  std::string text = "done";
  std::string line;
  for (const std::string& item : SummaryItems(summary)) {
    if (!line.empty() && static_cast<int>(line.size() + 2 + item.size()) > width_ - 1) {
      absl::StrAppend(&text, "\n  ", line);
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : ", ", item);
  }
  if (!line.empty()) absl::StrAppend(&text, "\n  ", line);
  text += "\n";
  std::fputs(text.c_str(), out_);
  std::fflush(out_);
}

}  // namespace d2lora::engine
