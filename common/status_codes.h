// absl::StatusCode by its canonical name ("INVALID_ARGUMENT"), as error.json
// and the wire's JobError carry it.
#pragma once

#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace d2lora {

// The code named `name` (absl::StatusCodeToString's spelling); nullopt for
// anything else.
std::optional<absl::StatusCode> ParseStatusCode(absl::string_view name);

}  // namespace d2lora
