#include "worker/daemon/rank_launcher_process.h"

#include "worker/daemon/rank_process.h"

namespace d2lora::worker {

absl::StatusOr<std::unique_ptr<RunningRank>> ProcessRankLauncher::Launch(const RankLaunch& launch) {
  RankProcessOptions options;
  static_cast<RankLaunch&>(options) = launch;
  absl::StatusOr<std::unique_ptr<RankProcess>> process = RankProcess::Start(options);
  if (!process.ok()) return process.status();
  return std::unique_ptr<RunningRank>(std::move(*process));
}

}  // namespace d2lora::worker
