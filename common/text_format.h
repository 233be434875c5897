// Numbers, sizes and durations for people, shared by the engine's progress printer
// and the remote CLI.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace d2lora {

// "45s", "3m12s", "1h02m" (rounded to whole seconds; "?" if negative, not
// finite or absurdly large).
std::string FormatDuration(double seconds);
// 1234567 -> "1,234,567"; -1234 -> "-1,234".
std::string FormatCount(int64_t n);
// 1536 -> "1.5 KiB", 5 << 30 -> "5.0 GiB"; below 1 KiB "N B".
std::string FormatBytes(int64_t bytes);
// "81920", "80GiB", "80 GiB", "1.5TiB", "500MB": a byte count, binary (KiB..TiB)
// or decimal (kB..TB) units, "B" or none for bytes; whole bytes, > 0. The
// error names the text.
absl::StatusOr<int64_t> ParseBytes(absl::string_view text);

}  // namespace d2lora
