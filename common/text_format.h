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

}  // namespace d2lora
