#include "worker/daemon/host_info.h"

#include <limits.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/cgroup_limits.h"

namespace d2lora::worker {
namespace fs = std::filesystem;

namespace {

bool IsExecutableFile(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec) && access(path.c_str(), X_OK) == 0;
}

}  // namespace

int64_t TotalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  int64_t total = static_cast<int64_t>(pages) * page_size;
  if (std::optional<int64_t> limit = MemoryLimitBytes(); limit && *limit < total) total = *limit;
  return total;
}

absl::StatusOr<std::vector<int64_t>> GpuMemoryBytes(const std::string& nvidia_smi) {
  std::string quoted = "'";
  for (char c : nvidia_smi) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  const std::string command = absl::StrCat(quoted, " --query-gpu=memory.total --format=csv,noheader,nounits 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::UnavailableError(absl::StrCat(nvidia_smi, ": cannot run it"));
  std::string output;
  char buffer[4096];
  size_t n;
  // Read to the end (a child blocked on a full pipe would never exit), keep 64 KiB.
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    if (output.size() < (1 << 16)) output.append(buffer, n);
  }
  const int status = pclose(pipe);
  const std::string shown(absl::StripAsciiWhitespace(output.substr(0, 300)));
  if (status != 0) {
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return absl::UnavailableError(absl::StrCat(nvidia_smi, code == 127 ? " was not found" : " failed",
                                               " (exit ", code, ")", shown.empty() ? "" : ": ", shown));
  }
  std::vector<int64_t> gpus;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipWhitespace())) {
    ++line_number;
    int64_t mib = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &mib) || mib <= 0 || mib > (int64_t{1} << 40)) {
      return absl::InvalidArgumentError(absl::StrCat(nvidia_smi, " line ", line_number, ": \"",
                                                     absl::StripAsciiWhitespace(line), "\" is not a MiB count"));
    }
    gpus.push_back(mib << 20);
  }
  if (gpus.empty()) return absl::UnavailableError(absl::StrCat(nvidia_smi, " listed no GPU"));
  return gpus;
}

std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

std::string EndpointHost(const std::string& endpoint) {
  absl::string_view rest = endpoint;
  if (const size_t scheme = rest.find("://"); scheme != absl::string_view::npos) {
    rest.remove_prefix(scheme + 3);
    if (const size_t slash = rest.find('/'); slash != absl::string_view::npos) rest.remove_prefix(slash + 1);
  } else if (absl::StartsWith(rest, "ipv4:") || absl::StartsWith(rest, "ipv6:") || absl::StartsWith(rest, "dns:")) {
    rest.remove_prefix(rest.find(':') + 1);
  }
  if (absl::StartsWith(rest, "[")) {
    const size_t close = rest.find(']');
    return std::string(rest.substr(1, close == absl::string_view::npos ? absl::string_view::npos : close - 1));
  }
  const size_t colon = rest.rfind(':');
  // More than one colon and no brackets: a bare IPv6 address.
  if (colon != absl::string_view::npos && rest.find(':') == colon) return std::string(rest.substr(0, colon));
  return std::string(rest);
}

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.") || host == "ip6-localhost";
}

absl::StatusOr<std::string> FindTrainer(const std::string& flag) {
  if (!flag.empty()) {
    if (!IsExecutableFile(flag)) return absl::InvalidArgumentError(absl::StrCat("--trainer ", flag, ": not an executable file"));
    return fs::absolute(flag).lexically_normal().string();
  }
  std::vector<std::string> candidates;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back((self.parent_path() / "d2lora").string());
    candidates.push_back((self.parent_path() / ".." / "client" / "d2lora").lexically_normal().string());
  }
  if (const char* path = std::getenv("PATH")) {
    for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      candidates.push_back(absl::StrCat(dir, "/d2lora"));
    }
  }
  for (const std::string& candidate : candidates) {
    if (IsExecutableFile(candidate)) return fs::absolute(candidate).lexically_normal().string();
  }
  return absl::NotFoundError(
      "cannot find the d2lora binary (next to d2lora-worker, in ../client/, or on PATH); pass --trainer PATH");
}

}  // namespace d2lora::worker
