#include "worker/daemon/daemon_log.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/log_line.h"

namespace d2lora::worker {
namespace {

std::mutex& LogMutex() {
  static std::mutex mu;
  return mu;
}
FILE* g_log_file = nullptr;  // guarded by LogMutex(); nullptr = stderr

}  // namespace

void Log(absl::string_view message) {
  const std::string line = LogLine("d2lora-worker", message, absl::Now());
  std::lock_guard<std::mutex> lock(LogMutex());
  FILE* out = g_log_file != nullptr ? g_log_file : stderr;
  std::fwrite(line.data(), 1, line.size(), out);
  std::fflush(out);
}

absl::Status SetLogFile(const std::string& path) {
  FILE* file = nullptr;
  if (!path.empty()) {
    file = std::fopen(path.c_str(), "a");
    if (file == nullptr) return absl::PermissionDeniedError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  std::lock_guard<std::mutex> lock(LogMutex());
  if (g_log_file != nullptr) std::fclose(g_log_file);
  g_log_file = file;
  return absl::OkStatus();
}

}  // namespace d2lora::worker
