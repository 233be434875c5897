// One rank of an assignment as a child process: `d2lora train ...` in a
// process group of its own, stdout and stderr appended to the rank's log, no
// other descriptor inherited, and (Linux) killed with SIGKILL when the thread
// that started it dies, so a crashed worker leaves no orphaned trainers.
// Start it from the thread that waits for it (the death signal follows the
// starting thread, not the process).
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace d2lora::worker {

struct ExitStatus {
  int exit_code = 0;  // when signal == 0
  int signal = 0;     // the signal that killed the process; 0 = it exited
  bool success() const { return signal == 0 && exit_code == 0; }
  // exit_code, or 128 + signal (the shell's convention).
  int code() const { return signal != 0 ? 128 + signal : exit_code; }
  // "rank process exited with code 3" / "rank process killed by signal 9 (Killed)".
  std::string Describe() const;
};

struct RankProcessOptions {
  std::vector<std::string> argv;  // argv[0]: the program's path (no PATH search)
  std::string log_path;           // stdout and stderr are appended here (created if missing)
  std::string working_dir;        // "" = the worker's
  std::vector<std::string> env;   // "NAME=VALUE", added to (or replacing in) the worker's environment
  bool die_with_parent = true;    // PR_SET_PDEATHSIG = SIGKILL
};

class RankProcess {
 public:
  // Forks and execs. Fails (and leaves no process) when the log cannot be
  // opened or the program cannot be executed ("cannot run PATH: ...").
  static absl::StatusOr<std::unique_ptr<RankProcess>> Start(const RankProcessOptions& options);

  RankProcess(const RankProcess&) = delete;
  RankProcess& operator=(const RankProcess&) = delete;
  // Kills the group with SIGKILL and reaps the process when it still runs.
  ~RankProcess();

  pid_t pid() const { return pid_; }

  // The exit status once the process has ended; never blocks. Thread-safe.
  std::optional<ExitStatus> Poll();
  // Waits up to `timeout` for the process to end.
  std::optional<ExitStatus> Wait(absl::Duration timeout = absl::InfiniteDuration());
  // Sends `signal` to the process group; nothing once the process was reaped.
  void Signal(int signal);
  // SIGTERM to the group, up to `grace` to exit, then SIGKILL; returns the exit status.
  ExitStatus Stop(absl::Duration grace);

 private:
  explicit RankProcess(pid_t pid) : pid_(pid) {}

  const pid_t pid_;
  std::mutex mu_;
  std::optional<ExitStatus> exit_;  // guarded by mu_
};

}  // namespace d2lora::worker
