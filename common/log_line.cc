#include "common/log_line.h"

#include "absl/strings/str_cat.h"

namespace d2lora {

std::string LogLine(absl::string_view program, absl::string_view message, absl::Time now) {
  return absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", now, absl::UTCTimeZone()), " ", program, ": ", message,
                      "\n");
}

}  // namespace d2lora
