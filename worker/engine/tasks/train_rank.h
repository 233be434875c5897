// One rank of a training job as a process: what `d2lora train` runs, alone,
// under torchrun, or as a worker daemon's rank process. Loads the spec, sets
// LibTorch's threads, joins the process group, installs the stop signals and
// runs the job (train_job.h).
//
// The trainer-process contract (common/trainer/): a run that fails, or stops
// on a signal, writes error.json to $D2LORA_ERROR_FILE before it returns
// (error_file.h), so that whoever launched the process learns the code, the
// reason, whether a retry can help and the step, without reading stderr.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/distributed/distributed_options.h"

namespace d2lora::engine {

struct TrainRankOptions {
  std::string config;                  // the job spec (YAML or JSON)
  std::vector<std::string> overrides;  // "key.path=value"
  std::string resume;                  // "" = a fresh run; else a checkpoint or an output directory
  // Unset fields fall back to torchrun's environment (distributed_options.h);
  // with neither, the world size is the spec's resources.world_size.
  DistributedFlags flags;
  bool progress = true;  // rank 0 prints progress to stderr
};

struct TrainRankResult {
  bool stopped = false;  // SIGINT/SIGTERM: stopped after a checkpoint; resume from output_dir
  int stop_signal = 0;   // the signal this process got (0: a peer rank's stop)
  int64_t steps = 0;
  std::string output_dir;
};

// SIGINT/SIGTERM stop the run after the current step with a checkpoint; a
// second signal takes the default action (the handlers are installed once the
// group is formed).
absl::StatusOr<TrainRankResult> RunTrainRank(const TrainRankOptions& options);

// Cores for one rank: the spec's resources.threads when > 0, else the cores
// this process may use divided among the ranks that share the host
// (LOCAL_WORLD_SIZE, or every rank when the master address is this host).
int RankThreads(int64_t spec_threads, const DistributedOptions& dist, int available_cores);

}  // namespace d2lora::engine
