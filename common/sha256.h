// SHA-256 digests (OpenSSL's libcrypto) for checkpoint and artifact integrity.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace d2lora {

// Lower-case hex digest of `data`.
std::string Sha256Hex(absl::string_view data);
// Lower-case hex digest of the file at `path`, read in chunks; errors name the path.
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace d2lora
