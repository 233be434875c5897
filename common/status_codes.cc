#include "common/status_codes.h"

namespace d2lora {

std::optional<absl::StatusCode> ParseStatusCode(absl::string_view name) {
  for (int c = 0; c <= 16; ++c) {
    const auto code = static_cast<absl::StatusCode>(c);
    if (absl::StatusCodeToString(code) == name) return code;
  }
  return std::nullopt;
}

}  // namespace d2lora
