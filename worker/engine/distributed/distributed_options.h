// Who this process is in a multi-process job and where the group meets.
// Resolved from command-line flags first, then torchrun's environment
// variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), then
// defaults; D2LORA_DIST_TIMEOUT_S (seconds) overrides the collective timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace d2lora::engine {

struct DistributedOptions {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;  // which GPU on this host (CUDA only)
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // Rendezvous and every collective fail after this long without peers.
  std::chrono::milliseconds timeout{300000};
};

// Values given on the command line; unset ones fall back to the environment.
struct DistributedFlags {
  std::optional<int64_t> rank, world_size, local_rank;
  std::optional<std::string> master_addr;
  std::optional<int> master_port;
};

using GetenvFn = std::function<std::optional<std::string>(const std::string&)>;

// std::getenv, with unset and empty both reading as nullopt.
std::optional<std::string> GetenvOrNullopt(const std::string& name);

// Flags win over the environment. local_rank defaults to rank. Errors name the
// flag or variable and the bad value.
absl::StatusOr<DistributedOptions> ResolveDistributedOptions(const DistributedFlags& flags,
                                                             const GetenvFn& getenv_fn = GetenvOrNullopt);

// world_size >= 1, rank and local_rank in [0, world_size), port in [1, 65535],
// non-empty address, positive timeout.
absl::Status ValidateDistributedOptions(const DistributedOptions& options);

}  // namespace d2lora::engine
