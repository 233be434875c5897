#include "worker/daemon/assignment_runner.h"

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/rpc/status_convert.h"
#include "common/trainer/error_file.h"
#include "common/trainer/output_names.h"
#include "worker/daemon/assignment_spec.h"
#include "worker/daemon/daemon_log.h"
#include "worker/daemon/log_tail.h"
#include "worker/daemon/rank_outcome.h"

namespace d2lora::worker {
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxPendingLogLines = 20000;  // while the coordinator is unreachable
constexpr int kMaxReportBatches = 5;           // per report interval
constexpr absl::Duration kPollInterval = absl::Milliseconds(100);
constexpr absl::Duration kCheckpointRetryWindow = absl::Minutes(5);
constexpr int kUploadAttempts = 3;
constexpr int kCallAttempts = 5;

bool NeverRetried(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string ResumeArgument(const std::string& dir, const std::string& resume_from) {
  const fs::path path = fs::path(resume_from);
  if (absl::StartsWith(path.filename().string(), trainer::kCheckpointPrefix) &&
      path.parent_path().filename() == trainer::kCheckpointsDir) {
    return absl::StrCat(dir, "/", path.parent_path().string());
  }
  return absl::StrCat(dir, "/", resume_from);
}

namespace {

// Registers a unary call with the runner's hook for its duration (Abandon cancels it).
class ScopedCall {
 public:
  ScopedCall(CallHook hook, grpc::ClientContext* context) : hook_(std::move(hook)) { hook_(context); }
  ~ScopedCall() { hook_(nullptr); }

 private:
  CallHook hook_;
};

}  // namespace

AssignmentRunner::AssignmentRunner(RunnerOptions options, v1::Assignment assignment)
    : options_(std::move(options)),
      assignment_(std::move(assignment)),
      dir_(Directory(options_.work_dir, assignment_)),
      label_(absl::StrCat("assignment ", assignment_.id(), " (job ", assignment_.job_id(), " attempt ",
                          assignment_.attempt(), " rank ", assignment_.rank(), ")")) {}

AssignmentRunner::~AssignmentRunner() {
  if (thread_.joinable()) {
    if (!done()) Abandon();
    thread_.join();
  }
}

std::string AssignmentRunner::Directory(const std::string& work_dir, const v1::Assignment& a) {
  // The job id as a single safe path component.
  std::string job = a.job_id();
  for (char& c : job) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') c = '_';
  }
  if (job.empty() || job == "." || job == "..") job = "_" + job;
  return absl::StrCat(work_dir, "/jobs/", job, "/attempt-", a.attempt(), "/rank-", a.rank());
}

std::string AssignmentRunner::out_dir() const { return absl::StrCat(dir_, "/", kAssignmentOutputDir); }

void AssignmentRunner::Start() { thread_ = std::thread([this] { Run(); }); }

void AssignmentRunner::Join() {
  if (thread_.joinable()) thread_.join();
}

void AssignmentRunner::Stop(const std::string& reason, absl::Time give_up) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stop_requested_) {
    stop_requested_ = true;
    stop_reason_ = reason;
  }
  give_up_ = std::min(give_up_, give_up);
  if (downloading_) {
    for (grpc::ClientContext* call : calls_) call->TryCancel();
  }
  cv_.notify_all();
}

void AssignmentRunner::Abandon() {
  std::lock_guard<std::mutex> lock(mu_);
  abandoned_ = true;
  if (checkpoints_) checkpoints_->Abandon();
  for (grpc::ClientContext* call : calls_) call->TryCancel();
  cv_.notify_all();
}

bool AssignmentRunner::abandoned() const {
  std::lock_guard<std::mutex> lock(mu_);
  return abandoned_;
}

bool AssignmentRunner::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_requested_ || abandoned_;
}

bool AssignmentRunner::stop_requested() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_requested_;
}

CallHook AssignmentRunner::Hook() {
  return [this](grpc::ClientContext* context) {
    // The hook is called with the context, then nullptr from the same thread.
    thread_local grpc::ClientContext* current = nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    if (context != nullptr) {
      current = context;
      calls_.insert(context);
      if (abandoned_ || (downloading_ && stop_requested_)) context->TryCancel();
    } else if (current != nullptr) {
      calls_.erase(current);
      current = nullptr;
    }
  };
}

bool AssignmentRunner::KeepTrying(absl::Time deadline) const {
  std::lock_guard<std::mutex> lock(mu_);
  return !abandoned_ && absl::Now() < std::min(deadline, give_up_);
}

void AssignmentRunner::NotFound(const absl::Status& status, const std::string& what) {
  Log(absl::StrCat(label_, ": ", what, ": ", status.message(),
                   " (NOT_FOUND: the coordinator no longer knows it; dropping it)"));
  Abandon();
  if (options_.on_not_found) options_.on_not_found();
}

absl::Status AssignmentRunner::Retry(const std::function<absl::Status()>& call, int attempts, absl::Time deadline) {
  Backoff backoff(absl::Milliseconds(500), absl::Seconds(10));
  int failures = 0;
  while (true) {
    absl::Status status = call();
    if (status.ok() || NeverRetried(status.code())) return status;
    if (!IsUnreachable(status) && ++failures >= attempts) return status;
    if (!KeepTrying(deadline)) return status;
    const absl::Time wake = std::min(absl::Now() + backoff.Next(), deadline);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, absl::ToChronoTime(std::min(wake, give_up_)), [this] { return abandoned_; });
  }
}

void AssignmentRunner::Run() {
  Log(absl::StrCat(label_, ": started in ", dir_));
  const AssignmentResult result = Execute();
  if (checkpoints_) checkpoints_->Close();
  if (options_.metrics != nullptr) options_.metrics->AssignmentEnded(result);
  if (options_.clean_up) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  const char* word = result == AssignmentResult::kSucceeded ? "succeeded"
                     : result == AssignmentResult::kFailed  ? "failed"
                                                            : "stopped";
  Log(absl::StrCat(label_, ": ", word, abandoned() ? " (dropped, not reported)" : ""));
  done_.store(true);
  if (options_.on_done) options_.on_done(result);
}

AssignmentResult AssignmentRunner::Execute() {
  auto fail = [&](const Failure& failure) {
    Log(absl::StrCat(label_, ": ", failure.code, ": ", failure.message));
    ReportFailure(failure, 0, "");
    return failure.code == "ABORTED" ? AssignmentResult::kStopped : AssignmentResult::kFailed;
  };

  // A directory left by an earlier run of this rank keeps its inputs only.
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return fail({"INTERNAL", absl::StrCat("cannot create ", dir_, ": ", ec.message())});
  fs::remove_all(out_dir(), ec);
  fs::remove(log_path(), ec);
  fs::remove(error_path(), ec);
  fs::remove_all(dir_ + "/.upload", ec);

  if (std::optional<Failure> failure = DownloadInputs()) return fail(*failure);
  if (abandoned()) return AssignmentResult::kStopped;
  std::string spec_path;
  if (std::optional<Failure> failure = PrepareSpec(spec_path)) return fail(*failure);

  {
    std::unique_lock<std::mutex> lock(mu_);
    if (abandoned_) return AssignmentResult::kStopped;
    if (stop_requested_) {
      const std::string reason = stop_reason_;
      lock.unlock();
      return fail({"ABORTED", absl::StrCat("stopped before the rank started: ", reason)});
    }
  }

  RankLaunch launch;
  launch.argv = {options_.trainer,
                 "train",
                 "--config",
                 spec_path,
                 "--quiet",
                 "--rank",
                 absl::StrCat(assignment_.rank()),
                 "--world-size",
                 absl::StrCat(std::max(1, assignment_.world_size())),
                 "--master-addr",
                 assignment_.master_addr().empty() ? "127.0.0.1" : assignment_.master_addr(),
                 "--master-port",
                 absl::StrCat(assignment_.master_port()),
                 "--local-rank",
                 absl::StrCat(assignment_.local_rank())};
  if (!assignment_.resume_from().empty()) {
    launch.argv.push_back("--resume");
    launch.argv.push_back(ResumeArgument(dir_, assignment_.resume_from()));
  }
  launch.log_path = log_path();
  launch.env.push_back(absl::StrCat(trainer::kErrorFileEnv, "=", error_path()));
  // The coordinator places the ranks and rank 0 serves their store: a worker
  // that itself runs under torchrun must not pass its agent's settings on.
  launch.env.push_back("TORCHELASTIC_USE_AGENT_STORE=");
  launch.env.push_back(absl::StrCat(trainer::kTorchelasticErrorFileEnv, "="));
  launch.working_dir = dir_;
  absl::StatusOr<std::unique_ptr<RunningRank>> process = options_.launcher->Launch(launch);
  if (!process.ok()) {
    return fail({"INTERNAL", absl::StrCat("cannot start the rank: ", process.status().message())});
  }
  Log(absl::StrCat(label_, ": ", (*process)->Describe(), " running: ", absl::StrJoin(launch.argv, " ")));

  metrics_tail_ = std::make_unique<MetricsTail>(absl::StrCat(out_dir(), "/", trainer::kMetricsFile));
  log_tail_ = std::make_unique<LineTail>(log_path(), kMaxLogLineBytes);
  if (assignment_.rank() == 0) {
    CheckpointUploader::Options uploads;
    uploads.out_dir = out_dir();
    uploads.snapshot_dir = dir_ + "/.upload";
    uploads.label = label_;
    uploads.retry_window = kCheckpointRetryWindow;
    uploads.upload = [this](const std::string& path, const std::string& name, absl::Time deadline) {
      return Retry([&] { return UploadArtifact(options_.client, target(), path, name, Hook()); }, kUploadAttempts,
                   deadline);
    };
    uploads.on_not_found = [this](const absl::Status& status, const std::string& what) { NotFound(status, what); };
    auto uploader = std::make_unique<CheckpointUploader>(std::move(uploads));
    std::lock_guard<std::mutex> lock(mu_);  // Abandon() reads it from other threads
    checkpoints_ = std::move(uploader);
    if (abandoned_) checkpoints_->Abandon();
  }

  std::optional<ExitStatus> exit = Monitor(**process);
  if (!exit.has_value()) return AssignmentResult::kStopped;  // abandoned
  Log(absl::StrCat(label_, ": ", exit->Describe()));
  return Finish(*exit);
}

std::optional<AssignmentRunner::Failure> AssignmentRunner::DownloadInputs() {
  for (const v1::InputFile& input : assignment_.inputs()) {
    if (!IsSafeRelativePath(input.path())) {
      return Failure{"INVALID_ARGUMENT",
                     absl::StrCat("input ", input.name(), ": path \"", input.path(), "\" leaves the assignment's directory"),
                     false};
    }
  }
  if (!assignment_.resume_from().empty() && !IsSafeRelativePath(assignment_.resume_from())) {
    return Failure{"INVALID_ARGUMENT",
                   absl::StrCat("resume_from \"", assignment_.resume_from(), "\" leaves the assignment's directory"), false};
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    downloading_ = true;
  }
  std::optional<Failure> failure;
  for (const v1::InputFile& input : assignment_.inputs()) {
    const std::string path = absl::StrCat(dir_, "/", input.path());
    absl::Status status = Retry(
        [&] { return DownloadInput(options_.client, target(), input, path, Hook()); }, kUploadAttempts);
    if (status.ok()) continue;
    if (abandoned()) break;
    if (status.code() == absl::StatusCode::kDataLoss &&
        absl::StartsWith(input.path(), absl::StrCat("resume/", trainer::kCheckpointsDir, "/"))) {  // AddCheckpoint
      // A checkpoint file whose bytes no longer match what was stored: left
      // out, the trainer verifies the checkpoints it is given and resumes from
      // the newest whole one (the coordinator sends the one before too).
      Log(absl::StrCat(label_, ": input ", input.name(), " is damaged in the store (", status.message(),
                       "); left out: the trainer resumes from the newest checkpoint that verifies"));
      continue;
    }
    if (stop_requested()) {
      std::lock_guard<std::mutex> lock(mu_);
      failure = Failure{"ABORTED", absl::StrCat("stopped while downloading the inputs: ", stop_reason_)};
    } else if (status.code() == absl::StatusCode::kNotFound) {
      // The input, the assignment or the worker: FailAssignment tells which.
      failure = Failure{"FAILED_PRECONDITION", absl::StrCat("input ", input.name(), ": ", status.message()), false};
    } else {
      failure = Failure{rpc::StatusCodeName(status.code()),
                        absl::StrCat("cannot download input ", input.name(), ": ", status.message())};
    }
    break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  downloading_ = false;
  return failure;
}

std::optional<AssignmentRunner::Failure> AssignmentRunner::PrepareSpec(std::string& spec_path) {
  AssignmentSpecOptions options;
  options.dir = dir_;
  options.world_size = std::max(1, assignment_.world_size());
  options.slot_cores = options_.slot_cores;
  absl::StatusOr<std::string> path = PrepareAssignmentSpec(assignment_.spec(), options);
  if (!path.ok()) {
    const absl::StatusCode code = path.status().code();
    const bool caller_error =
        code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kFailedPrecondition;
    return Failure{rpc::StatusCodeName(code), std::string(path.status().message()), !caller_error};
  }
  spec_path = *path;
  return std::nullopt;
}

std::optional<ExitStatus> AssignmentRunner::Monitor(RunningRank& process) {
  bool term_sent = false, kill_sent = false;
  absl::Time kill_at = absl::InfiniteFuture();
  absl::Time next_report = absl::Now();  // the first report says started
  while (true) {
    std::optional<ExitStatus> exit = process.Poll();
    bool stop = false, abandon = false;
    std::string reason;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop = stop_requested_;
      abandon = abandoned_;
      reason = stop_reason_;
    }
    if (abandon) {
      process.Signal(SIGKILL);
      process.Wait();
      return std::nullopt;
    }
    if (exit.has_value()) break;
    const absl::Time now = absl::Now();
    if (stop && !term_sent) {
      Log(absl::StrCat(label_, ": stopping (", reason, "): SIGTERM, SIGKILL after ",
                       absl::FormatDuration(options_.stop_grace)));
      process.Signal(SIGTERM);
      term_sent = true;
      kill_at = now + options_.stop_grace;
    }
    if (term_sent && !kill_sent && now >= kill_at) {
      Log(absl::StrCat(label_, ": still running after the grace: SIGKILL"));
      process.Signal(SIGKILL);
      kill_sent = true;
    }
    if (now >= next_report) {
      Report(false);
      next_report = absl::Now() + options_.report_interval;
    }
    std::unique_lock<std::mutex> lock(mu_);
    const absl::Time wake = std::min(absl::Now() + kPollInterval, next_report);
    cv_.wait_until(lock, absl::ToChronoTime(wake),
                   [&] { return abandoned_ || (stop_requested_ && !term_sent); });
  }
  // Whatever the rank wrote last.
  Report(true);
  return process.Poll();
}

void AssignmentRunner::Report(bool final) {
  // Collect.
  const size_t room = kMaxPendingLogLines > pending_logs_.size() ? kMaxPendingLogLines - pending_logs_.size() : 0;
  for (std::string& line :
       log_tail_->Read(final ? SIZE_MAX : std::max<size_t>(room, kMaxLogLinesPerReport), /*to_end=*/final)) {
    pending_logs_.push_back(CleanLogLine(line));
  }
  while (pending_logs_.size() > kMaxPendingLogLines) {
    pending_logs_.pop_front();
    ++dropped_logs_;
  }
  if (assignment_.rank() == 0) {
    MetricsUpdate update = metrics_tail_->Read();
    if (update.has_metrics) pending_metrics_ = update.metrics;
    for (v1::EvalResult& eval : update.evals) pending_evals_.push_back(std::move(eval));
    for (v1::Rollback& rollback : update.rollbacks) pending_rollbacks_.push_back(std::move(rollback));
    for (const CheckpointEvent& checkpoint : update.checkpoints) checkpoints_->Queue(checkpoint);
  }

  // Send, up to a few batches of log lines (all of them at the end).
  for (int batch = 0; final || batch < kMaxReportBatches; ++batch) {
    if (abandoned()) return;
    // Nothing new: a report now and then all the same, for its answer (stop).
    const bool idle = pending_logs_.empty() && !pending_metrics_ && pending_evals_.empty() &&
                      pending_rollbacks_.empty() && dropped_logs_ == 0;
    if (started_reported_ && idle && (final || absl::Now() - last_report_ < 5 * options_.report_interval)) return;
    v1::ReportProgressRequest request;
    request.set_worker_id(options_.worker_id);
    request.set_assignment_id(assignment_.id());
    request.set_started(!started_reported_);
    if (pending_metrics_) *request.mutable_metrics() = *pending_metrics_;
    for (const v1::EvalResult& eval : pending_evals_) *request.add_evals() = eval;
    for (const v1::Rollback& rollback : pending_rollbacks_) *request.add_rollbacks() = rollback;
    if (dropped_logs_ > 0) {
      v1::LogLine* line = request.add_logs();
      line->set_rank(assignment_.rank());
      line->set_attempt(assignment_.attempt());
      line->set_text(absl::StrCat("[d2lora-worker: ", dropped_logs_, " lines dropped while the coordinator was unreachable]"));
    }
    const size_t lines = std::min<size_t>(pending_logs_.size(), kMaxLogLinesPerReport);
    for (size_t i = 0; i < lines; ++i) {
      v1::LogLine* line = request.add_logs();
      line->set_rank(assignment_.rank());
      line->set_attempt(assignment_.attempt());
      line->set_text(pending_logs_[i]);
    }
    grpc::ClientContext context;
    options_.client.Prepare(context, absl::Seconds(15));
    v1::ReportProgressResponse response;
    absl::Status status;
    {
      ScopedCall call(Hook(), &context);
      status = rpc::FromGrpcStatus(options_.client.stub->ReportProgress(&context, request, &response));
    }
    if (abandoned()) return;
    if (status.code() == absl::StatusCode::kNotFound) {
      NotFound(status, "ReportProgress");
      return;
    }
    if (!status.ok()) {
      if (!report_failing_) Log(absl::StrCat(label_, ": ReportProgress: ", status.message(), " (will retry)"));
      report_failing_ = true;
      return;
    }
    if (report_failing_) Log(absl::StrCat(label_, ": ReportProgress works again"));
    report_failing_ = false;
    started_reported_ = true;
    last_report_ = absl::Now();
    pending_logs_.erase(pending_logs_.begin(), pending_logs_.begin() + static_cast<std::ptrdiff_t>(lines));
    dropped_logs_ = 0;
    pending_metrics_.reset();
    pending_evals_.clear();
    pending_rollbacks_.clear();
    if (response.stop()) Stop("the coordinator answered a progress report with stop");
    if (pending_logs_.empty()) return;
  }
}

AssignmentResult AssignmentRunner::Finish(const ExitStatus& exit) {
  // The checkpoints first: a failed attempt's successor resumes from the last
  // one. The newest queued checkpoint is uploaded on success too, so that a
  // finished job always holds its final state, whatever the timing.
  if (checkpoints_) checkpoints_->Close();
  if (abandoned()) return AssignmentResult::kStopped;

  bool stopped = false;
  std::string stop_reason;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped = stop_requested_;
    stop_reason = stop_reason_;
  }
  // Exit 0 is a finished run even when a stop was asked for meanwhile (a
  // stopped trainer exits 4).
  if (exit.success()) {
    std::string summary;
    if (assignment_.rank() == 0) {
      absl::StatusOr<std::string> text = ReadFileToString(absl::StrCat(out_dir(), "/", trainer::kSummaryFile));
      if (!text.ok()) {
        UploadLog();
        ReportFailure({"INTERNAL", absl::StrCat("the rank exited 0 without a summary: ", text.status().message())},
                      exit.code(), absl::StrJoin(LastLines(log_path(), kLogTailLines), "\n"));
        return AssignmentResult::kFailed;
      }
      summary = CleanLogLine(*text, text->size() + 16);  // valid UTF-8 for the wire
      if (std::optional<Failure> failure = UploadOutputs()) {
        if (abandoned()) return AssignmentResult::kStopped;
        UploadLog();
        ReportFailure(*failure, exit.code(), absl::StrJoin(LastLines(log_path(), kLogTailLines), "\n"));
        return AssignmentResult::kFailed;
      }
    }
    UploadLog();
    ReportCompletion(summary);
    return AssignmentResult::kSucceeded;
  }

  Failure failure;
  std::string summary;  // rank 0's summary.json, where a failed run wrote one
  if (stopped) {
    failure.code = "ABORTED";
    failure.message = absl::StrCat("stopped (", stop_reason, "): ", exit.Describe());
  } else {
    const RankOutcome outcome =
        ClassifyRankExit(exit, trainer::ReadErrorFile(error_path()), LastErrorLine(log_path()));
    failure = Failure{outcome.code, outcome.message, outcome.retryable};
    if (outcome.merge_check_failed && assignment_.rank() == 0) {
      // The adapter, merge_report.json and summary.json are the job's artifacts.
      if (std::optional<Failure> upload = UploadOutputs()) Log(absl::StrCat(label_, ": ", upload->message));
      absl::StatusOr<std::string> text = ReadFileToString(absl::StrCat(out_dir(), "/", trainer::kSummaryFile));
      if (text.ok()) summary = CleanLogLine(*text, text->size() + 16);
    }
  }
  UploadLog();
  ReportFailure(failure, exit.code(), absl::StrJoin(LastLines(log_path(), kLogTailLines), "\n"), summary);
  return stopped ? AssignmentResult::kStopped : AssignmentResult::kFailed;
}

std::optional<AssignmentRunner::Failure> AssignmentRunner::UploadOutputs() {
  std::vector<std::pair<std::string, std::string>> uploads;  // path, name
  std::error_code ec;
  for (const char* folder : trainer::kOutputFolders) {
    const std::string dir = absl::StrCat(out_dir(), "/", folder);
    if (!fs::is_directory(dir, ec)) continue;
    absl::StatusOr<std::vector<std::string>> files = FilesToUpload(dir);
    if (!files.ok()) return Failure{"INTERNAL", std::string(files.status().message())};
    for (const std::string& file : *files) {
      uploads.emplace_back(absl::StrCat(dir, "/", file), absl::StrCat(folder, "/", file));
    }
  }
  for (const char* file : trainer::kOutputFiles) {
    const std::string path = absl::StrCat(out_dir(), "/", file);
    if (trainer::OptionalOutputFile(file) && !fs::exists(path, ec)) continue;
    uploads.emplace_back(path, file);
  }
  for (const auto& [path, name] : uploads) {
    absl::Status status =
        Retry([&] { return UploadArtifact(options_.client, target(), path, name, Hook()); }, kUploadAttempts);
    if (status.code() == absl::StatusCode::kNotFound) {
      NotFound(status, absl::StrCat("upload of ", name));
      return Failure{"NOT_FOUND", std::string(status.message())};
    }
    if (!status.ok()) return Failure{rpc::StatusCodeName(status.code()), std::string(status.message())};
  }
  Log(absl::StrCat(label_, ": uploaded ", uploads.size(), " output files"));
  return std::nullopt;
}

void AssignmentRunner::UploadLog() {
  if (abandoned()) return;
  std::error_code ec;
  if (!fs::exists(log_path(), ec)) return;
  const std::string name = absl::StrCat("logs/attempt-", assignment_.attempt(), "-rank-", assignment_.rank(), ".log");
  absl::Status status =
      Retry([&] { return UploadArtifact(options_.client, target(), log_path(), name, Hook()); }, kUploadAttempts);
  if (status.code() == absl::StatusCode::kNotFound) {
    NotFound(status, absl::StrCat("upload of ", name));
  } else if (!status.ok()) {
    Log(absl::StrCat(label_, ": ", name, " not uploaded: ", status.message()));
  }
}

void AssignmentRunner::ReportFailure(const Failure& failure, int exit_code, const std::string& log_tail,
                                     const std::string& summary_json) {
  if (abandoned()) return;
  v1::FailAssignmentRequest request;
  request.set_worker_id(options_.worker_id);
  request.set_assignment_id(assignment_.id());
  v1::JobError* error = request.mutable_error();
  error->set_code(failure.code);
  error->set_message(CleanLogLine(failure.message, 64 * 1024));
  error->set_log_tail(log_tail);
  error->set_attempt(assignment_.attempt());
  error->set_rank(assignment_.rank());
  request.set_retryable(failure.retryable);
  request.set_exit_code(exit_code);
  request.set_summary_json(summary_json);
  const absl::Status status = Retry(
      [&] {
        grpc::ClientContext context;
        options_.client.Prepare(context);
        v1::FailAssignmentResponse response;
        ScopedCall call(Hook(), &context);
        return rpc::FromGrpcStatus(options_.client.stub->FailAssignment(&context, request, &response));
      },
      kCallAttempts);
  if (status.code() == absl::StatusCode::kNotFound) {
    NotFound(status, "FailAssignment");
  } else if (!status.ok()) {
    Log(absl::StrCat(label_, ": FailAssignment: ", status.message(), " (giving up)"));
  } else {
    Log(absl::StrCat(label_, ": reported failed: ", failure.code, ": ", failure.message,
                     failure.retryable ? "" : " (not retryable)"));
  }
}

void AssignmentRunner::ReportCompletion(const std::string& summary_json) {
  if (abandoned()) return;
  v1::CompleteAssignmentRequest request;
  request.set_worker_id(options_.worker_id);
  request.set_assignment_id(assignment_.id());
  request.set_summary_json(summary_json);
  const absl::Status status = Retry(
      [&] {
        grpc::ClientContext context;
        options_.client.Prepare(context);
        v1::CompleteAssignmentResponse response;
        ScopedCall call(Hook(), &context);
        return rpc::FromGrpcStatus(options_.client.stub->CompleteAssignment(&context, request, &response));
      },
      kCallAttempts);
  if (status.code() == absl::StatusCode::kNotFound) {
    NotFound(status, "CompleteAssignment");
  } else if (!status.ok()) {
    Log(absl::StrCat(label_, ": CompleteAssignment: ", status.message(), " (giving up)"));
  }
}

}  // namespace d2lora::worker
