// The worker daemon's own log: one line per event on stderr, with a UTC
// timestamp ("2025-01-31T12:00:00Z d2lora-worker: ...", common/log_line.h). stdout is kept for
// the few lines scripts parse (metrics address, worker id).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace d2lora::worker {

// Thread-safe; whole lines are never interleaved.
void Log(absl::string_view message);

// Appends the log to the file at `path` instead of stderr ("" = stderr again),
// for a process that runs many daemons (the coordinator benchmarks).
absl::Status SetLogFile(const std::string& path);

}  // namespace d2lora::worker
