#include "common/cgroup_limits.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace d2lora {
namespace {

std::optional<std::string> ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

bool IsDirectory(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

// v2: "QUOTA PERIOD" | "max PERIOD".
std::optional<double> ReadCpuMax(const std::string& dir) {
  auto line = ReadFirstLine(dir + "/cpu.max");
  if (!line) return std::nullopt;
  std::vector<std::string> parts = absl::StrSplit(*line, ' ', absl::SkipEmpty());
  double quota = 0, period = 0;
  if (parts.size() != 2 || parts[0] == "max" || !absl::SimpleAtod(parts[0], &quota) ||
      !absl::SimpleAtod(parts[1], &period) || quota <= 0 || period <= 0) {
    return std::nullopt;
  }
  return quota / period;
}

// v1: cpu.cfs_quota_us (-1 = none) / cpu.cfs_period_us.
std::optional<double> ReadCfsQuota(const std::string& dir) {
  auto quota_line = ReadFirstLine(dir + "/cpu.cfs_quota_us");
  auto period_line = ReadFirstLine(dir + "/cpu.cfs_period_us");
  double quota = 0, period = 0;
  if (!quota_line || !period_line || !absl::SimpleAtod(*quota_line, &quota) ||
      !absl::SimpleAtod(*period_line, &period) || quota <= 0 || period <= 0) {
    return std::nullopt;
  }
  return quota / period;
}

// The smallest limit from `base + path` up to `base`; only `base` itself when
// `base + path` does not exist.
template <typename T>
std::optional<T> SmallestUpTheTree(const std::string& base, std::string path,
                                   std::optional<T> (*read)(const std::string&)) {
  std::optional<T> best;
  auto consider = [&](const std::string& dir) {
    auto v = read(dir);
    if (v && (!best || *v < *best)) best = v;
  };
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (!path.empty() && IsDirectory(base + path)) {
    for (std::string p = path; !p.empty(); p = p.substr(0, p.rfind('/'))) consider(base + p);
  }
  consider(base);
  return best;
}

// A positive byte count below `none_from` on the file's first line ("max" and
// larger values: no limit).
std::optional<int64_t> ReadBytes(const std::string& file, int64_t none_from) {
  auto line = ReadFirstLine(file);
  int64_t bytes = 0;
  if (!line || !absl::SimpleAtoi(*line, &bytes) || bytes <= 0 || bytes >= none_from) return std::nullopt;
  return bytes;
}

std::optional<int64_t> ReadMemoryMax(const std::string& dir) {
  return ReadBytes(dir + "/memory.max", INT64_MAX);
}

// v1 writes "no limit" as a page-rounded 2^63 - 1.
std::optional<int64_t> ReadMemoryLimitInBytes(const std::string& dir) {
  return ReadBytes(dir + "/memory.limit_in_bytes", int64_t{1} << 62);
}

// The smallest limit of the cgroup that /proc/self/cgroup names: v2's file, or
// v1's under the mount of `controller` (Debian mounts cpu as cpu,cpuacct).
template <typename T>
std::optional<T> CgroupLimit(const std::string& cgroup_root, const std::string& proc_self_cgroup,
                             std::optional<T> (*read_v2)(const std::string&),
                             absl::string_view controller, const std::vector<std::string>& v1_mounts,
                             std::optional<T> (*read_v1)(const std::string&)) {
  std::istringstream lines(proc_self_cgroup);
  std::string line;
  while (std::getline(lines, line)) {
    // "ID:CONTROLLERS:PATH"; v2 is "0::PATH".
    std::vector<std::string> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    if (f[0] == "0" && f[1].empty()) {
      if (auto v = SmallestUpTheTree(cgroup_root, f[2], read_v2)) return v;
      continue;
    }
    for (absl::string_view c : absl::StrSplit(f[1], ',')) {
      if (c != controller) continue;
      for (const std::string& mount : v1_mounts) {
        if (!IsDirectory(cgroup_root + mount)) continue;
        if (auto v = SmallestUpTheTree(cgroup_root + mount, f[2], read_v1)) return v;
      }
    }
  }
  return std::nullopt;
}

std::string ProcSelfCgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::optional<double> CgroupCpuLimit(const std::string& cgroup_root, const std::string& proc_self_cgroup) {
  return CgroupLimit<double>(cgroup_root, proc_self_cgroup, ReadCpuMax, "cpu", {"/cpu,cpuacct", "/cpu"},
                             ReadCfsQuota);
}

std::optional<int64_t> CgroupMemoryLimit(const std::string& cgroup_root, const std::string& proc_self_cgroup) {
  return CgroupLimit<int64_t>(cgroup_root, proc_self_cgroup, ReadMemoryMax, "memory", {"/memory"},
                              ReadMemoryLimitInBytes);
}

std::optional<int64_t> MemoryLimitBytes() { return CgroupMemoryLimit("/sys/fs/cgroup", ProcSelfCgroup()); }

int AvailableCpuCores() {
  int cores = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cores = CPU_COUNT(&set);
  if (cores <= 0) cores = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  if (auto limit = CgroupCpuLimit("/sys/fs/cgroup", ProcSelfCgroup())) {
    cores = std::min(cores, static_cast<int>(std::ceil(*limit - 1e-9)));
  }
  return std::max(1, cores);
}

}  // namespace d2lora
