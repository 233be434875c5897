#include "worker/engine/tasks/train_rank.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/trainer/error_file.h"
#include "worker/engine/distributed/create_process_group.h"
#include "worker/engine/metrics/progress_printer.h"
#include "worker/engine/runtime.h"
#include "worker/engine/spec_types.h"
#include "worker/engine/tasks/train_job.h"

namespace d2lora::engine {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_stop_signal{0};  // the first stop signal this process got

void OnStopSignal(int signal) {
  int none = 0;
  g_stop_signal.compare_exchange_strong(none, signal);
  g_stop.store(true);
}

void InstallStopHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sa.sa_flags = SA_RESETHAND;  // the second signal takes the default action
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

absl::StatusOr<TrainRankResult> Run(const TrainRankOptions& options) {
  D2_ASSIGN_OR_RETURN(ValidJobSpec loaded, LoadJobSpec(options.config, options.overrides));
  const ValidJobSpec valid = ResolveSpecPaths(loaded, SpecDirectory(options.config));
  const JobSpec& spec = valid;
  DistributedFlags flags = options.flags;
  if (!flags.world_size && !GetenvOrNullopt("WORLD_SIZE")) flags.world_size = spec.resources.world_size;
  D2_ASSIGN_OR_RETURN(DistributedOptions dist, ResolveDistributedOptions(flags));
  if (dist.world_size != spec.resources.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("world size ", dist.world_size, " (from --world-size or WORLD_SIZE) ",
                                                   "differs from the spec's resources.world_size = ",
                                                   spec.resources.world_size));
  }
  SetUpRuntime(RankThreads(spec.resources.threads, dist, AvailableCores()));
  D2_ASSIGN_OR_RETURN(std::unique_ptr<ProcessGroup> group,
                      CreateProcessGroup(dist, spec.resources.device == DeviceKind::kCuda ? ProcessGroupDevice::kCuda
                                                                                           : ProcessGroupDevice::kCpu));
  ProgressPrinter progress(ProgressPrinter::Options{});
  TrainJobOptions job;
  job.resume = options.resume;
  job.local_rank = dist.local_rank;
  job.stop = &g_stop;
  if (dist.rank == 0 && options.progress) job.callbacks.push_back(&progress);
  InstallStopHandlers();
  D2_ASSIGN_OR_RETURN(nlohmann::json summary, RunTrainJob(valid, job, *group));
  TrainRankResult result;
  result.stopped = summary.value("status", "") == "stopped";
  result.stop_signal = g_stop_signal.load();
  result.steps = summary.value("steps", int64_t{0});
  result.output_dir = spec.output.dir;
  return result;
}

void WriteError(const trainer::TrainerError& error) {
  if (absl::Status written = trainer::WriteErrorFileFromEnvironment(error); !written.ok()) {
    std::fprintf(stderr, "d2lora: warning: no error file: %s\n", std::string(written.message()).c_str());
  }
}

}  // namespace

int RankThreads(int64_t spec_threads, const DistributedOptions& dist, int available_cores) {
  if (spec_threads > 0) return static_cast<int>(spec_threads);
  int64_t local = 1;
  std::optional<std::string> env = GetenvOrNullopt("LOCAL_WORLD_SIZE");
  if (env && absl::SimpleAtoi(*env, &local) && local >= 1) {
  } else if (dist.master_addr == "127.0.0.1" || dist.master_addr == "localhost" || dist.master_addr == "::1") {
    local = dist.world_size;
  } else {
    local = 1;
  }
  return std::max(1, static_cast<int>(available_cores / std::max<int64_t>(1, local)));
}

absl::StatusOr<TrainRankResult> RunTrainRank(const TrainRankOptions& options) {
  absl::StatusOr<TrainRankResult> result = Run(options);
  if (!result.ok()) {
    WriteError(trainer::ErrorFromStatus(result.status()));
  } else if (result->stopped) {
    trainer::TrainerError error;
    error.code = absl::StatusCode::kAborted;
    error.message = absl::StrCat("stopped at step ", result->steps, "; continue with --resume ", result->output_dir);
    error.reason = trainer::FailureReason::kStopped;
    error.retryable = trainer::IsRetryable(error.code, error.reason);
    error.step = result->steps;
    WriteError(error);
  }
  return result;
}

}  // namespace d2lora::engine
