// d2lora train --config FILE [--set key.path=value ...] [--resume DIR]
//              [--rank N --world-size N --master-addr HOST --master-port PORT --local-rank N]
//
// Runs one job spec on this machine, like torchrun + a recipe. With world size
// > 1, start one process per rank (or run it under torchrun, whose RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT and LOCAL_RANK it reads); flags win
// over the environment. SIGINT/SIGTERM stop the run after the current step
// with a checkpoint (`--resume` continues it); a second signal kills it.
// The rank itself is worker/engine/tasks/train_rank.h; this file parses flags.
// With $D2LORA_ERROR_FILE set, a failed or stopped run writes its error there
// (common/trainer/error_file.h).
#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>
#include <memory>

#include "client/cli_util.h"
#include "worker/engine/tasks/train_rank.h"

namespace d2lora::cli {
namespace {

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

int RunTrain(const TrainFlags& f) {
  engine::TrainRankOptions options;
  options.config = f.config;
  options.overrides = f.overrides;
  options.resume = f.resume;
  if (f.rank >= 0) options.flags.rank = f.rank;
  if (f.world_size >= 0) options.flags.world_size = f.world_size;
  if (f.local_rank >= 0) options.flags.local_rank = f.local_rank;
  if (!f.master_addr.empty()) options.flags.master_addr = f.master_addr;
  if (f.master_port != 0) options.flags.master_port = f.master_port;
  options.progress = !f.quiet;
  absl::StatusOr<engine::TrainRankResult> result = engine::RunTrainRank(options);
  if (!result.ok()) return Fail("train", result.status());
  if (result->stopped) {
    std::cerr << "d2lora train: stopped at step " << result->steps << "; continue with --resume "
              << result->output_dir << std::endl;
    // The shell's convention for a process ended by a signal: 130 (SIGINT),
    // 143 (SIGTERM, also a rank stopped because a peer was).
    return 128 + (result->stop_signal != 0 ? result->stop_signal : SIGTERM);
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
  cmd->callback([f, exit_code]() { *exit_code = RunTrain(*f); });
}

}  // namespace d2lora::cli
