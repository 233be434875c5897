// How the worker runs one rank of an assignment. The assignment runner sees
// only this interface; two backends implement it:
//
//   rank_launcher_process.h    the trainer (`d2lora train ...`) as a child process
//   rank_launcher_simulated.h  a rank on a thread that writes what a trainer
//                              writes (log, metrics.jsonl, outputs, error.json)
//                              without training: tests, and the coordinator
//                              benchmarks' fleets of real daemons
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace d2lora::worker {

struct ExitStatus {
  int exit_code = 0;  // when signal == 0
  int signal = 0;     // the signal that killed the rank; 0 = it exited
  bool success() const { return signal == 0 && exit_code == 0; }
  // exit_code, or 128 + signal (the shell's convention).
  int code() const { return signal != 0 ? 128 + signal : exit_code; }
  // "rank process exited with code 3" / "rank process killed by signal 9 (Killed)".
  std::string Describe() const;
};

// What to run: the trainer's command line and environment, where its output goes.
struct RankLaunch {
  std::vector<std::string> argv;  // argv[0]: the program's path (no PATH search)
  std::string log_path;           // stdout and stderr are appended here (created if missing)
  std::string working_dir;        // "" = the worker's
  std::vector<std::string> env;   // "NAME=VALUE", added to (or replacing in) the worker's environment
};

// A rank that was started. Thread-safe.
class RunningRank {
 public:
  virtual ~RunningRank() = default;  // a rank still running is killed

  // "rank process 1234", "simulated rank 0": for the worker's log.
  virtual std::string Describe() const = 0;
  // The exit status once the rank has ended; never blocks.
  virtual std::optional<ExitStatus> Poll() = 0;
  // Waits up to `timeout` for the rank to end.
  virtual std::optional<ExitStatus> Wait(absl::Duration timeout = absl::InfiniteDuration()) = 0;
  // SIGTERM: stop after the current step (the trainer checkpoints and exits);
  // SIGKILL: at once. Nothing once the rank has ended.
  virtual void Signal(int signal) = 0;
};

class RankLauncher {
 public:
  virtual ~RankLauncher() = default;
  // Starts the rank, from the thread that waits for it. Fails, leaving nothing
  // running, when the rank cannot start ("cannot run PATH: ...").
  virtual absl::StatusOr<std::unique_ptr<RunningRank>> Launch(const RankLaunch& launch) = 0;
};

}  // namespace d2lora::worker
