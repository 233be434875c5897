// One line of a daemon's log, as the worker daemon and the coordinator write
// it on stderr: "2025-01-31T12:00:00Z d2lora-worker: MESSAGE\n" (UTC).
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace d2lora {

std::string LogLine(absl::string_view program, absl::string_view message, absl::Time now);

}  // namespace d2lora
