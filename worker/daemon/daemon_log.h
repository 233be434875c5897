// The worker daemon's own log: one line per event on stderr, with a UTC
// timestamp ("2025-01-31T12:00:00Z d2lora-worker: ..."). stdout is kept for
// the few lines scripts parse (metrics address, worker id).
#pragma once

#include "absl/strings/string_view.h"

namespace d2lora::worker {

// Thread-safe; whole lines are never interleaved.
void Log(absl::string_view message);

}  // namespace d2lora::worker
