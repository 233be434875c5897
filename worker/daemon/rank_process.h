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
#include "worker/daemon/rank_launcher.h"

namespace d2lora::worker {

struct RankProcessOptions : RankLaunch {
  bool die_with_parent = true;  // PR_SET_PDEATHSIG = SIGKILL
};

class RankProcess : public RunningRank {
 public:
  // Forks and execs. Fails (and leaves no process) when the log cannot be
  // opened or the program cannot be executed ("cannot run PATH: ...").
  static absl::StatusOr<std::unique_ptr<RankProcess>> Start(const RankProcessOptions& options);

  RankProcess(const RankProcess&) = delete;
  RankProcess& operator=(const RankProcess&) = delete;
  // Kills the group with SIGKILL and reaps the process when it still runs.
  ~RankProcess() override;

  pid_t pid() const { return pid_; }

  std::string Describe() const override;  // "rank process PID"
  // The exit status once the process has ended; never blocks. Thread-safe.
  std::optional<ExitStatus> Poll() override;
  // Waits up to `timeout` for the process to end.
  std::optional<ExitStatus> Wait(absl::Duration timeout = absl::InfiniteDuration()) override;
  // Sends `signal` to the process group; nothing once the process was reaped.
  void Signal(int signal) override;
  // SIGTERM to the group, up to `grace` to exit, then SIGKILL; returns the exit status.
  ExitStatus Stop(absl::Duration grace);

 private:
  explicit RankProcess(pid_t pid) : pid_(pid) {}

  const pid_t pid_;
  std::mutex mu_;
  std::optional<ExitStatus> exit_;  // guarded by mu_
};

}  // namespace d2lora::worker
