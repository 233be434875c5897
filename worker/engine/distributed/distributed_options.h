// Who this process is in a multi-process job and where the group meets.
// Resolved from command-line flags first, then torchrun's environment
// variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), then
// defaults; D2LORA_DIST_TIMEOUT_S (seconds) overrides the collective timeout.
// Under torchrun, TORCHELASTIC_USE_AGENT_STORE=True and
// TORCHELASTIC_RESTART_COUNT say where the agent's store is (use_agent_store).
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
  // torchrun's elastic agent already serves the rendezvous store at
  // master_addr:master_port (TORCHELASTIC_USE_AGENT_STORE == "True"): every
  // rank, rank 0 included, connects as a client, and the keys live under
  // "/worker/attempt_<restart_count>" (TORCHELASTIC_RESTART_COUNT), as
  // torch/distributed/rendezvous.py's _create_c10d_store does. Otherwise rank 0
  // serves the store itself.
  bool use_agent_store = false;
  int64_t restart_count = 0;
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
