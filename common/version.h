// What every binary says to --version: the project's version and the git
// commit it was built from (read when CMake configured the build; "unknown"
// outside a git checkout unless -DD2LORA_GIT_COMMIT=... says).
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace d2lora {

std::string ProjectVersion();  // "0.1.0"
std::string GitCommit();       // "0123456789ab" | "unknown"

// "BINARY 0.1.0 (commit 0123456789ab)", then each of `details` on a line of its own.
std::string VersionText(absl::string_view binary, const std::vector<std::string>& details = {});

}  // namespace d2lora
