#include "client/remote/job_format.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/remote/remote_util.h"

namespace d2lora::cli {
namespace {

std::string Attempts(const v1::Job& job) {
  if (job.attempt() <= 0) return "-";
  if (job.max_retries() < 0) return absl::StrCat(job.attempt());
  return absl::StrCat(job.attempt(), "/", job.max_retries() + 1);
}

std::string Steps(const v1::Job& job) {
  if (!job.has_metrics()) return "-";
  const v1::TrainingMetrics& m = job.metrics();
  if (m.total_steps() > 0) return absl::StrCat(m.step(), "/", m.total_steps());
  return absl::StrCat(m.step());
}

std::string When(const google::protobuf::Timestamp& ts, absl::Time now, absl::TimeZone tz) {
  const absl::Time t = ToAbslTime(ts);
  return absl::StrCat(absl::FormatTime("%Y-%m-%d %H:%M:%S %Z", t, tz), " (", FormatAge(t, now), " ago)");
}

void Field(std::string& out, const std::string& label, const std::string& value) {
  absl::StrAppend(&out, absl::StrFormat("%-11s ", label.empty() ? "" : label + ":"), value, "\n");
}

}  // namespace

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string FormatAge(absl::Time then, absl::Time now) {
  if (then == absl::InfinitePast()) return "-";
  const int64_t s = std::max<int64_t>(0, absl::ToInt64Seconds(now - then));
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrCat(s / 60, "m");
  if (s < 86400) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

std::string FormatNumber(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  return absl::StrFormat("%.4g", value);
}

absl::Time ToAbslTime(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return absl::InfinitePast();
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string FormatJobTable(std::vector<v1::Job> jobs, absl::Time now) {
  std::stable_sort(jobs.begin(), jobs.end(), [](const v1::Job& a, const v1::Job& b) {
    return ToAbslTime(a.create_time()) > ToAbslTime(b.create_time());
  });
  std::vector<std::vector<std::string>> rows = {{"ID", "NAME", "STATE", "ATTEMPT", "STEP/TOTAL", "LOSS", "AGE"}};
  for (const v1::Job& job : jobs) {
    rows.push_back({job.id(), job.name().empty() ? "-" : job.name(), JobStateName(job.state()), Attempts(job),
                    Steps(job),
                    job.has_metrics() && job.metrics().step() > 0 ? FormatNumber(job.metrics().loss()) : "-",
                    FormatAge(ToAbslTime(job.create_time()), now)});
  }
  return FormatTable(rows);
}

std::string FormatJobSummary(const v1::Job& job, absl::Time now, absl::TimeZone tz) {
  std::string out;
  Field(out, "job", job.name().empty() ? job.id() : absl::StrCat(job.id(), " (", job.name(), ")"));
  std::string state = JobStateName(job.state());
  if (job.cancel_requested() && !IsTerminal(job.state())) state += ", cancel requested";
  Field(out, "state", state);
  Field(out, "attempt",
        job.attempt() > 0 ? absl::StrCat(job.attempt(), " of at most ", job.max_retries() + 1)
                          : absl::StrCat("none yet (at most ", job.max_retries() + 1, ")"));
  std::string resources = absl::StrCat("world size ", job.world_size());
  if (job.current_world_size() > 0 && job.current_world_size() != job.world_size()) {
    absl::StrAppend(&resources, " (this attempt: ", job.current_world_size(), " of ", job.world_size(), " ranks, elastic)");
  }
  absl::StrAppend(&resources, ", priority ", job.priority());
  if (!job.spec().method().empty()) absl::StrAppend(&resources, ", method ", job.spec().method());
  if (job.memory_plan_bytes() > 0) {
    absl::StrAppend(&resources, ", memory plan ", FormatBytes(job.memory_plan_bytes()), " per rank");
  }
  Field(out, "resources", resources);
  if (!job.labels().empty()) {
    std::vector<std::pair<std::string, std::string>> labels(job.labels().begin(), job.labels().end());
    std::sort(labels.begin(), labels.end());
    Field(out, "labels", absl::StrJoin(labels, ", ", absl::PairFormatter("=")));
  }
  if (job.has_create_time()) Field(out, "created", When(job.create_time(), now, tz));
  if (job.has_schedule_time()) Field(out, "scheduled", When(job.schedule_time(), now, tz));
  if (job.has_start_time()) Field(out, "started", When(job.start_time(), now, tz));
  if (job.has_end_time()) Field(out, "ended", When(job.end_time(), now, tz));
  if (!job.workers().empty()) {
    std::vector<std::string> workers;
    for (int i = 0; i < job.workers_size(); ++i) workers.push_back(absl::StrCat("rank ", i, " ", job.workers(i)));
    Field(out, "workers", absl::StrJoin(workers, ", "));
  }
  if (job.has_metrics()) {
    const v1::TrainingMetrics& m = job.metrics();
    Field(out, "progress", FormatProgressLine(m));
    std::string more = absl::StrCat("epoch ", m.epoch(), ", lr ", absl::StrFormat("%.2e", m.lr()), ", grad norm ",
                                    FormatNumber(m.grad_norm()), ", elapsed ", FormatDuration(m.elapsed_seconds()));
    if (m.has_loss_ema()) absl::StrAppend(&more, ", loss EMA ", FormatNumber(m.loss_ema()));
    if (m.spikes_total() > 0) absl::StrAppend(&more, ", spikes ", m.spikes_total());
    if (m.skipped_steps() > 0) absl::StrAppend(&more, ", skipped steps ", m.skipped_steps());
    if (m.rollbacks_total() > 0) absl::StrAppend(&more, ", rollbacks ", m.rollbacks_total());
    if (m.has_tau_mean()) absl::StrAppend(&more, ", tau mean ", FormatNumber(m.tau_mean()));
    Field(out, "", more);
    if (m.has_eval_loss() || m.has_eval_accuracy() || m.has_eval_rouge_l()) {
      std::vector<std::string> parts;
      if (m.has_eval_loss()) parts.push_back(absl::StrCat("loss ", FormatNumber(m.eval_loss())));
      if (m.has_eval_accuracy()) parts.push_back(absl::StrCat("accuracy ", FormatNumber(m.eval_accuracy())));
      if (m.has_eval_rouge_l()) parts.push_back(absl::StrCat("rouge-L ", FormatNumber(m.eval_rouge_l())));
      Field(out, "eval", absl::StrJoin(parts, ", "));
    }
  }
  if (job.checkpoint_step() > 0) Field(out, "checkpoint", absl::StrCat("step ", job.checkpoint_step()));
  if (job.has_merge_check()) out += FormatMergeCheck(job.merge_check());
  if (job.has_error() && (!job.error().code().empty() || !job.error().message().empty())) {
    std::string error = FormatJobError(job.error());
    if (job.state() != v1::FAILED) error = "(an earlier attempt) " + error;
    out += error;
  }
  return out;
}

std::string FormatMergeCheck(const v1::MergeCheck& c) {
  std::string out;
  std::vector<std::string> parts = {c.passed() ? "passed" : "FAILED", c.merged_dtype()};
  if (c.has_max_logit_diff()) parts.push_back(absl::StrCat("max logit diff ", FormatNumber(c.max_logit_diff())));
  if (c.has_mean_kl()) parts.push_back(absl::StrCat("mean KL ", absl::StrFormat("%.2e", c.mean_kl())));
  if (c.has_accuracy_gap_pp()) {
    parts.push_back(absl::StrCat("accuracy gap ", FormatNumber(c.accuracy_gap_pp()), " pp"));
  }
  Field(out, "merge", absl::StrJoin(parts, ", "));
  std::vector<std::string> layers;
  if (c.has_max_row_norm_deviation()) {
    layers.push_back(absl::StrCat("row-norm deviation ", absl::StrFormat("%.2e", c.max_row_norm_deviation()), " (",
                                  c.max_row_norm_deviation_layer(), ")"));
  }
  layers.push_back(absl::StrCat("cast error ", absl::StrFormat("%.2e", c.max_cast_error()), " (",
                                c.max_cast_error_layer(), ")"));
  if (c.nonfinite() > 0) layers.push_back(absl::StrCat(c.nonfinite(), " non-finite weights"));
  Field(out, "", absl::StrJoin(layers, ", "));
  for (const std::string& b : c.breaches()) Field(out, "", absl::StrCat("over threshold: ", b));
  return out;
}

std::string FormatJobError(const v1::JobError& e) {
  if (e.code().empty() && e.message().empty() && e.log_tail().empty()) return "";
  std::string head = e.code().empty() ? e.message() : absl::StrCat(e.code(), ": ", e.message());
  std::vector<std::string> where;
  if (e.attempt() > 0) where.push_back(absl::StrCat("attempt ", e.attempt()));
  if (e.rank() >= 0 && e.attempt() > 0) where.push_back(absl::StrCat("rank ", e.rank()));
  if (!where.empty()) absl::StrAppend(&head, " (", absl::StrJoin(where, ", "), ")");
  std::string out = absl::StrCat("error:      ", head, "\n");
  if (!e.log_tail().empty()) {
    out += "log tail:\n";
    for (absl::string_view line : absl::StrSplit(e.log_tail(), '\n')) {
      absl::StrAppend(&out, "  ", line, "\n");
    }
    while (out.size() >= 4 && out.compare(out.size() - 4, 4, "\n  \n") == 0) out.resize(out.size() - 3);
  }
  return out;
}

std::string FormatProgressLine(const v1::TrainingMetrics& m) {
  std::string line = absl::StrCat("step ", m.step());
  if (m.total_steps() > 0) {
    const double fraction = std::clamp(static_cast<double>(m.step()) / static_cast<double>(m.total_steps()), 0.0, 1.0);
    absl::StrAppend(&line, "/", m.total_steps(), " (", static_cast<int>(std::floor(fraction * 100)), "%)");
  }
  absl::StrAppend(&line, " loss ", FormatNumber(m.loss()));
  if (m.has_volatility()) absl::StrAppend(&line, " vol ", absl::StrFormat("%.3g", m.volatility()));
  if (std::isfinite(m.tokens_per_second()) && m.tokens_per_second() > 0) {
    absl::StrAppend(&line, " ", FormatCount(std::llround(m.tokens_per_second())), " tok/s");
  }
  if (m.has_eta_seconds()) absl::StrAppend(&line, " ETA ", FormatDuration(m.eta_seconds()));
  if (m.skipped_steps() > 0) absl::StrAppend(&line, " skipped ", m.skipped_steps());
  if (m.rollbacks_total() > 0) absl::StrAppend(&line, " rollbacks ", m.rollbacks_total());
  return line;
}

std::string FormatEvalLine(const v1::EvalResult& e) {
  std::vector<std::string> parts;
  if (e.has_loss()) parts.push_back(absl::StrCat("loss ", FormatNumber(e.loss())));
  if (e.has_perplexity()) parts.push_back(absl::StrCat("ppl ", FormatNumber(e.perplexity())));
  if (e.has_accuracy()) {
    std::string acc = absl::StrCat("accuracy ", FormatNumber(e.accuracy()));
    if (!e.scoring().empty()) absl::StrAppend(&acc, " (", e.scoring(), ")");
    parts.push_back(acc);
  }
  if (e.has_rouge_l()) parts.push_back(absl::StrCat("rouge-L ", FormatNumber(e.rouge_l())));
  std::string line = absl::StrCat(e.final() ? "final eval" : "eval", " at step ", e.step(), ":");
  if (parts.empty()) return line + " (no figures)";
  return absl::StrCat(line, " ", absl::StrJoin(parts, ", "));
}

std::string FormatStateLine(const v1::StateChange& s) {
  std::string line = JobStateName(s.state());
  if (s.attempt() > 0) absl::StrAppend(&line, " (attempt ", s.attempt(), ")");
  if (!s.message().empty()) absl::StrAppend(&line, ": ", s.message());
  return line;
}

std::string FormatArtifactTable(const std::vector<v1::Artifact>& artifacts) {
  // A DAMAGED column only when a file is (the coordinator's copy changed since it was stored).
  const bool any_damaged =
      std::any_of(artifacts.begin(), artifacts.end(), [](const v1::Artifact& a) { return !a.damaged().empty(); });
  std::vector<std::vector<std::string>> rows = {{"NAME", "SIZE", "SHA256"}};
  if (any_damaged) rows[0].push_back("DAMAGED");
  for (const v1::Artifact& a : artifacts) {
    rows.push_back({a.name(), absl::StrCat(a.size()), a.sha256()});
    if (any_damaged) rows.back().push_back(a.damaged().empty() ? "-" : a.damaged());
  }
  return FormatTable(rows);
}

std::string FormatCheckpointTable(const v1::ListCheckpointsResponse& checkpoints) {
  std::vector<std::vector<std::string>> rows = {{"STEP", "STATE", "LOSS", "VOLATILITY", "EVAL", "SIZE", "ADAPTER"}};
  for (const v1::Checkpoint& c : checkpoints.checkpoints()) {
    const std::string state = !c.damaged().empty() ? "damaged" : c.complete() ? "complete" : "incomplete";
    const bool has_metrics = c.has_metrics();
    std::string eval = "-";
    if (c.has_eval()) {
      const v1::EvalResult& e = c.eval();
      std::vector<std::string> parts;
      if (e.has_loss()) parts.push_back("loss " + FormatNumber(e.loss()));
      if (e.has_accuracy()) parts.push_back("acc " + FormatNumber(e.accuracy()));
      if (e.has_rouge_l()) parts.push_back("rouge-l " + FormatNumber(e.rouge_l()));
      eval = absl::StrCat(absl::StrJoin(parts, " "), e.step() != c.step() ? absl::StrCat(" @", e.step()) : "");
    }
    rows.push_back({absl::StrCat(c.step()), state, has_metrics ? FormatNumber(c.metrics().loss()) : "-",
                    has_metrics && c.metrics().has_volatility() ? FormatNumber(c.metrics().volatility()) : "-", eval,
                    FormatBytes(c.bytes()), c.has_adapter() ? "yes" : "no"});
    if (!c.damaged().empty()) rows.back()[1] = "damaged: " + c.damaged();
  }
  std::string out = FormatTable(rows);
  if (checkpoints.final_adapter_step() > 0) {
    absl::StrAppend(&out, "final adapter: step ", checkpoints.final_adapter_step(), "\n");
  }
  return out;
}

}  // namespace d2lora::cli
