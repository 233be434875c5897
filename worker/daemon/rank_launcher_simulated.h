// A simulated rank: the trainer's side of the trainer-process contract
// (common/trainer/) without the training, on a thread. It reads the command
// line the assignment runner gives the trainer (--config SPEC --rank R), loads
// the spec, then for `run_time` takes a step every `step_time`: a line in the
// rank's log and, on rank 0, a step event in OUT/metrics.jsonl (OUT =
// output.dir). At the end rank 0 writes spec.yaml and summary.json to OUT and
// the rank exits 0; with `fail_with` it writes that error to
// $D2LORA_ERROR_FILE and exits 1 instead. SIGTERM stops it after the current
// step (error.json ABORTED/STOPPED, exit 1, as the trainer); SIGKILL ends it
// at once. A spec that does not load: error.json with the parser's error, exit 2.
//
// A real fake, as the threads process group is: the worker daemon's tests and
// the coordinator benchmarks (bench/sim_cluster.h) run the real daemon with it.
#pragma once

#include <atomic>
#include <memory>
#include <optional>

#include "common/trainer/error_file.h"
#include "worker/daemon/rank_launcher.h"

namespace d2lora::worker {

struct SimulatedRankOptions {
  absl::Duration run_time = absl::Milliseconds(200);  // from the launch to the exit
  absl::Duration step_time = absl::Milliseconds(50);
  std::optional<trainer::TrainerError> fail_with;     // the rank fails at the end with this
};

class SimulatedRankLauncher : public RankLauncher {
 public:
  explicit SimulatedRankLauncher(SimulatedRankOptions options = {}) : options_(std::move(options)) {}

  absl::StatusOr<std::unique_ptr<RunningRank>> Launch(const RankLaunch& launch) override;

  int64_t launched() const { return launched_.load(); }

 private:
  const SimulatedRankOptions options_;
  std::atomic<int64_t> launched_{0};
};

}  // namespace d2lora::worker
