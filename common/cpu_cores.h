// How many cores this process may use: its CPU affinity mask, capped by the
// CPU bandwidth limit of its cgroup (a container's `--cpus`, a Kubernetes CPU
// limit), which the affinity mask does not show. Shared by the engine (intra-op
// threads) and the worker daemon (cores per slot).
#pragma once

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

}  // namespace d2lora
