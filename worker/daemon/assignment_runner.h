// One assignment (one rank of one attempt of a job) from lease to report, on a
// thread of its own, in WORK_DIR/jobs/JOB_ID/attempt-K/rank-R/:
//
//   1. download the inputs (size and sha256 checked);
//   2. write spec.yaml (assignment_spec.h) and check what it reads;
//   3. run `TRAINER train --config spec.yaml --quiet --rank ... [--resume ...]`
//      through the launcher (rank_launcher.h: a child process, or simulated)
//      with its output in rank.log and report started;
//   4. every report interval send the new lines of rank.log and, on rank 0,
//      the metrics.jsonl events (metrics_tail.h); upload each new checkpoint
//      folder (trainer_state.json last) from a second thread;
//   5. on exit 0 upload the outputs (rank 0) and the log, then
//      CompleteAssignment; otherwise upload the log and FailAssignment with
//      what the rank's error.json says (rank_outcome.h).
//
// Stop() (a STOP command, a report answered stop, the worker shutting down)
// sends SIGTERM to the rank's process group, SIGKILL after the grace, and
// reports the assignment failed with code ABORTED, retryable. Abandon() (the
// coordinator no longer knows the worker or the assignment) kills the rank at
// once and reports nothing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "d2lora/v1/worker_service.pb.h"
#include "worker/daemon/artifact_transfer.h"
#include "worker/daemon/checkpoint_uploader.h"
#include "worker/daemon/coordinator_client.h"
#include "worker/daemon/metrics_tail.h"
#include "worker/daemon/rank_launcher.h"
#include "worker/daemon/worker_metrics.h"

namespace d2lora::worker {

inline constexpr char kRankLogFile[] = "rank.log";
// Where the rank writes its error before a non-zero exit ($D2LORA_ERROR_FILE).
inline constexpr char kRankErrorFile[] = "error.json";
inline constexpr int kMaxLogLinesPerReport = 200;
inline constexpr int kLogTailLines = 40;

struct RunnerOptions {
  CoordinatorClient client;
  std::string worker_id;
  std::string work_dir;  // absolute
  std::string trainer;   // the d2lora binary (argv[0] of the launch)
  RankLauncher* launcher = nullptr;  // never null; outlives the runner
  int64_t slot_cores = 1;
  absl::Duration stop_grace = absl::Seconds(30);
  absl::Duration report_interval = absl::Seconds(1);
  bool clean_up = false;               // remove the rank's directory once reported
  WorkerMetrics* metrics = nullptr;    // may be null
  std::function<void()> on_not_found;  // a call was answered NOT_FOUND
  std::function<void(AssignmentResult)> on_done;  // the runner has finished (from its thread)
};

// The trainer's --resume for an assignment in `dir` resuming from
// `resume_from`: for "resume/checkpoints/step-N" the folder holding it, so that
// the trainer falls back to an older checkpoint sent along (the coordinator
// sends the previous one too) when the newest fails its checksums.
std::string ResumeArgument(const std::string& dir, const std::string& resume_from);

class AssignmentRunner {
 public:
  AssignmentRunner(RunnerOptions options, v1::Assignment assignment);
  AssignmentRunner(const AssignmentRunner&) = delete;
  AssignmentRunner& operator=(const AssignmentRunner&) = delete;
  // Abandons the assignment if it still runs and waits for the thread.
  ~AssignmentRunner();

  // WORK_DIR/jobs/JOB_ID/attempt-K/rank-R
  static std::string Directory(const std::string& work_dir, const v1::Assignment& assignment);

  void Start();
  // Graceful stop, reported as ABORTED; retries of the final calls end at
  // `give_up` (the worker shutting down). Idempotent; the first reason stays.
  void Stop(const std::string& reason, absl::Time give_up = absl::InfiniteFuture());
  // Kill now, report nothing, cancel the calls in flight.
  void Abandon();
  // Start() was called and the thread has finished (everything reported).
  bool done() const { return done_.load(); }
  // Stop() or Abandon() was called.
  bool stopping() const;
  void Join();

  const v1::Assignment& assignment() const { return assignment_; }
  const std::string& id() const { return assignment_.id(); }
  const std::string& dir() const { return dir_; }

 private:
  struct Failure {
    std::string code;  // a google.rpc code name
    std::string message;
    bool retryable = true;
  };

  void Run();
  AssignmentResult Execute();
  std::optional<Failure> DownloadInputs();
  std::optional<Failure> PrepareSpec(std::string& spec_path);
  std::optional<ExitStatus> Monitor(RunningRank& process);
  void Report(bool final);
  AssignmentResult Finish(const ExitStatus& exit);
  std::optional<Failure> UploadOutputs();
  void UploadLog();
  void ReportFailure(const Failure& failure, int exit_code, const std::string& log_tail,
                     const std::string& summary_json = "");
  void ReportCompletion(const std::string& summary_json);


  // Runs `call` until it succeeds or fails for good: unreachable is retried
  // with backoff until the runner gives up (abandoned, `deadline`, the stop's
  // give-up time); other errors up to `attempts` calls in all; NOT_FOUND,
  // CANCELLED and the caller's mistakes never.
  absl::Status Retry(const std::function<absl::Status()>& call, int attempts,
                     absl::Time deadline = absl::InfiniteFuture());
  bool KeepTrying(absl::Time deadline) const;
  void NotFound(const absl::Status& status, const std::string& what);
  CallHook Hook();
  bool abandoned() const;
  bool stop_requested() const;
  std::string log_path() const { return dir_ + "/" + kRankLogFile; }
  std::string error_path() const { return dir_ + "/" + kRankErrorFile; }
  std::string out_dir() const;
  TransferTarget target() const { return {options_.worker_id, assignment_.id()}; }

  const RunnerOptions options_;
  const v1::Assignment assignment_;
  const std::string dir_;
  const std::string label_;  // "assignment ID (job J attempt K rank R)" for the log

  std::thread thread_;
  std::atomic<bool> done_{false};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_requested_ = false;
  std::string stop_reason_;
  absl::Time give_up_ = absl::InfiniteFuture();
  bool abandoned_ = false;
  bool downloading_ = false;  // Stop() cancels the download in flight
  std::set<grpc::ClientContext*> calls_;  // in flight, for Abandon()

  // Progress not yet delivered (the main thread's).
  std::unique_ptr<MetricsTail> metrics_tail_;
  std::unique_ptr<LineTail> log_tail_;
  std::deque<std::string> pending_logs_;
  int64_t dropped_logs_ = 0;
  std::optional<v1::TrainingMetrics> pending_metrics_;
  std::vector<v1::EvalResult> pending_evals_;
  std::vector<v1::Rollback> pending_rollbacks_;
  bool started_reported_ = false;
  bool report_failing_ = false;
  absl::Time last_report_ = absl::InfinitePast();  // answered

  // Rank 0's checkpoint uploads; set under mu_ by the runner's thread.
  std::unique_ptr<CheckpointUploader> checkpoints_;
};

}  // namespace d2lora::worker
