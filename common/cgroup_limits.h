// What this process's cgroup allows it, which the affinity mask and the
// machine's totals do not show (a container's `--cpus` and `--memory`, a
// Kubernetes pod's limits). Shared by the engine (intra-op threads, the memory
// plan) and the worker daemon (cores and memory per slot).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace d2lora {

// min(affinity cores, ceil(cgroup CPU limit)), at least 1.
int AvailableCpuCores();

// The CPU limit, in cores, of the cgroup that `proc_self_cgroup` (the text of
// /proc/self/cgroup) names, read under `cgroup_root` (normally /sys/fs/cgroup):
// cgroup v2 cpu.max ("QUOTA PERIOD" or "max PERIOD"), or v1
// cpu.cfs_quota_us / cpu.cfs_period_us, the smallest along the path up to the
// root (a limit on a parent holds for its children). When the named path does
// not exist (a container sees its own cgroup at the root), the root's own
// files are read. nullopt = no limit found.
std::optional<double> CgroupCpuLimit(const std::string& cgroup_root, const std::string& proc_self_cgroup);

// The memory limit, in bytes, read the same way: cgroup v2 memory.max ("max":
// none), or v1 memory.limit_in_bytes (values of 2^62 and more: none), the
// smallest along the path up to the root. nullopt = no limit found.
std::optional<int64_t> CgroupMemoryLimit(const std::string& cgroup_root, const std::string& proc_self_cgroup);

// CgroupMemoryLimit of this process (/proc/self/cgroup under /sys/fs/cgroup).
std::optional<int64_t> MemoryLimitBytes();

}  // namespace d2lora
