// The rank as a child process (rank_process.h): the worker daemon's launcher.
#pragma once

#include <memory>

#include "worker/daemon/rank_launcher.h"

namespace d2lora::worker {

class ProcessRankLauncher : public RankLauncher {
 public:
  absl::StatusOr<std::unique_ptr<RunningRank>> Launch(const RankLaunch& launch) override;
};

}  // namespace d2lora::worker
