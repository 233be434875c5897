// Numbers and durations for people, shared by the engine's progress printer
// and the remote CLI.
#pragma once

#include <cstdint>
#include <string>

namespace d2lora {

// "45s", "3m12s", "1h02m" (rounded to whole seconds; "?" if negative, not
// finite or absurdly large).
std::string FormatDuration(double seconds);
// 1234567 -> "1,234,567"; -1234 -> "-1,234".
std::string FormatCount(int64_t n);
// 1536 -> "1.5 KiB", 5 << 30 -> "5.0 GiB"; below 1 KiB "N B".
std::string FormatBytes(int64_t bytes);

}  // namespace d2lora
