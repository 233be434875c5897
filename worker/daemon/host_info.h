// What the worker learns about its machine: cores, memory, names, and where
// the trainer binary is.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace d2lora::worker {

// Memory this process may use, in bytes: the physical memory, capped by the
// cgroup v2 limit (memory.max) of a container. A worker advertises it, split
// over its slots, to the coordinator, which places a rank only where the
// job's memory plan fits (server/submit_memory.h).
int64_t TotalMemoryBytes();
// Each NVIDIA GPU's total memory in bytes, in index order, from
// `NVIDIA_SMI --query-gpu=memory.total --format=csv,noheader,nounits` (one
// MiB count per GPU and line). A CUDA worker advertises GPU i's memory for
// slot i. The error quotes the command's output or the line it could not read.
absl::StatusOr<std::vector<int64_t>> GpuMemoryBytes(const std::string& nvidia_smi);
// gethostname(), "localhost" if that fails.
std::string HostName();

// The host part of "HOST:PORT", "[V6]:PORT" or "dns:///HOST:PORT".
std::string EndpointHost(const std::string& endpoint);
// localhost, 127.0.0.0/8, ::1.
bool IsLoopbackHost(const std::string& host);

// The d2lora binary: `flag` when given (must be executable); else `d2lora` next
// to this executable, then ../client/d2lora from it (the build tree), then PATH.
absl::StatusOr<std::string> FindTrainer(const std::string& flag);

}  // namespace d2lora::worker
