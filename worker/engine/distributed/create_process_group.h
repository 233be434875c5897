// Picks the ProcessGroup for a job: world size 1 needs no network (threads
// backend); otherwise Gloo for CPU training and NCCL for CUDA training.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "worker/engine/distributed/distributed_options.h"
#include "worker/engine/distributed/process_group.h"

namespace d2lora::engine {

enum class ProcessGroupDevice { kCpu, kCuda };

absl::StatusOr<std::unique_ptr<ProcessGroup>> CreateProcessGroup(const DistributedOptions& options,
                                                                 ProcessGroupDevice device);

}  // namespace d2lora::engine
