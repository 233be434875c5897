// ProcessGroup over c10d's ProcessGroupNCCL (CUDA tensors on device
// local_rank), with the same TCPStore rendezvous as Gloo. Built only where
// LibTorch has CUDA and NCCL (D2LORA_WITH_NCCL); elsewhere the factory returns
// UnimplementedError.
//
// Each collective blocks the calling thread until the GPU has finished it (or
// options.timeout passes: DeadlineExceeded, and the group is broken), so a
// dead or stuck peer surfaces as a Status rather than a hang.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "worker/engine/distributed/distributed_options.h"
#include "worker/engine/distributed/process_group.h"

namespace d2lora::engine {

absl::StatusOr<std::unique_ptr<ProcessGroup>> CreateNcclProcessGroup(const DistributedOptions& options);

}  // namespace d2lora::engine
