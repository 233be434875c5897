// d2lora train --config FILE [--set key.path=value ...] [--resume DIR]
//              [--rank N --world-size N --master-addr HOST --master-port PORT --local-rank N]
//
// Runs one job spec on this machine, like torchrun + a recipe. With world size
// > 1, start one process per rank (or run it under torchrun, whose RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT and LOCAL_RANK it reads); flags win
// over the environment. SIGINT/SIGTERM stop the run after the current step
// with a checkpoint (`--resume` continues it); a second signal kills it.
#include <CLI/CLI.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cli_util.h"
#include "common/status_macros.h"
#include "worker/engine/distributed/create_process_group.h"
#include "worker/engine/distributed/distributed_options.h"
#include "worker/engine/metrics/progress_printer.h"
#include "worker/engine/runtime.h"
#include "worker/engine/spec/job_spec.h"
#include "worker/engine/tasks/train_job.h"

namespace d2lora::cli {
namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

void InstallStopHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sa.sa_flags = SA_RESETHAND;  // the second signal takes the default action
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

struct TrainFlags {
  std::string config;
  std::vector<std::string> overrides;
  std::string resume;
  // -1 / "" / 0: not given (the environment or the defaults decide).
  int64_t rank = -1, world_size = -1, local_rank = -1;
  std::string master_addr;
  int master_port = 0;
  bool quiet = false;
};

// Cores for this rank: the spec's resources.threads, else this process's cores
// divided among the ranks that share the host (LOCAL_WORLD_SIZE, or every rank
// when the master address is this host).
int ThreadsFor(const engine::JobSpec& spec, const engine::DistributedOptions& dist) {
  if (spec.resources.threads > 0) return static_cast<int>(spec.resources.threads);
  int64_t local = 1;
  if (const char* env = std::getenv("LOCAL_WORLD_SIZE"); env && absl::SimpleAtoi(env, &local) && local >= 1) {
  } else if (dist.master_addr == "127.0.0.1" || dist.master_addr == "localhost" || dist.master_addr == "::1") {
    local = dist.world_size;
  }
  return std::max(1, static_cast<int>(engine::AvailableCores() / std::max<int64_t>(1, local)));
}

absl::StatusOr<int> RunTrain(const TrainFlags& f) {
  D2_ASSIGN_OR_RETURN(engine::JobSpec spec, engine::LoadJobSpec(f.config, f.overrides));
  spec = engine::ResolveSpecPaths(spec, engine::SpecDirectory(f.config));
  engine::DistributedFlags flags;
  if (f.rank >= 0) flags.rank = f.rank;
  if (f.world_size >= 0) flags.world_size = f.world_size;
  if (f.local_rank >= 0) flags.local_rank = f.local_rank;
  if (!f.master_addr.empty()) flags.master_addr = f.master_addr;
  if (f.master_port != 0) flags.master_port = f.master_port;
  if (!flags.world_size && !std::getenv("WORLD_SIZE")) flags.world_size = spec.resources.world_size;
  D2_ASSIGN_OR_RETURN(engine::DistributedOptions dist, engine::ResolveDistributedOptions(flags));
  if (dist.world_size != spec.resources.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("world size ", dist.world_size, " (from --world-size or WORLD_SIZE) ",
                                                   "differs from the spec's resources.world_size = ",
                                                   spec.resources.world_size));
  }
  SetUpRuntime(ThreadsFor(spec, dist));
  D2_ASSIGN_OR_RETURN(std::unique_ptr<engine::ProcessGroup> group,
                      engine::CreateProcessGroup(dist, spec.resources.device == engine::DeviceKind::kCuda
                                                           ? engine::ProcessGroupDevice::kCuda
                                                           : engine::ProcessGroupDevice::kCpu));
  engine::ProgressPrinter progress(engine::ProgressPrinter::Options{});
  engine::TrainJobOptions options;
  options.spec = spec;
  options.resume = f.resume;
  options.local_rank = dist.local_rank;
  options.stop = &g_stop;
  if (dist.rank == 0 && !f.quiet) options.callbacks.push_back(&progress);
  InstallStopHandlers();
  D2_ASSIGN_OR_RETURN(nlohmann::json summary, engine::RunTrainJob(options, *group));
  if (summary["status"] == "stopped") {
    std::cerr << "d2lora train: stopped at step " << summary["steps"] << "; continue with --resume "
              << spec.output.dir << std::endl;
    return kExitJobFailed;
  }
  return kExitOk;
}

}  // namespace

void AddTrainCommand(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<TrainFlags>();
  CLI::App* cmd = app.add_subcommand("train", "Run a fine-tuning job spec locally (one process per rank)");
  cmd->add_option("--config", f->config, "Job spec (YAML or JSON)")->required();
  cmd->add_option("--set", f->overrides, "Override a spec key: key.path=value (repeatable)");
  cmd->add_option("--resume", f->resume, "Continue from a checkpoint, or from an output directory's newest one");
  cmd->add_option("--rank", f->rank, "This process's rank (default: $RANK, else 0)");
  cmd->add_option("--world-size", f->world_size,
                  "Number of ranks (default: $WORLD_SIZE, else resources.world_size)");
  cmd->add_option("--master-addr", f->master_addr, "Rendezvous host (default: $MASTER_ADDR, else 127.0.0.1)");
  cmd->add_option("--master-port", f->master_port, "Rendezvous port (default: $MASTER_PORT, else 29500)");
  cmd->add_option("--local-rank", f->local_rank, "Rank on this host: the CUDA device (default: $LOCAL_RANK)");
  cmd->add_flag("--quiet", f->quiet, "No progress output (metrics.jsonl is still written)");
  cmd->callback([f, exit_code]() {
    auto result = RunTrain(*f);
    *exit_code = result.ok() ? *result : Fail("train", result.status());
  });
}

}  // namespace d2lora::cli
