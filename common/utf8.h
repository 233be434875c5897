// UTF-8 checks for text that must survive YAML and protobuf unchanged.
#pragma once

#include "absl/strings/string_view.h"

namespace d2lora {

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code
// points past U+10FFFF). yaml-cpp reads other bytes as they are but writes them
// back as U+FFFD, so a job spec holding them would not survive its canonical form.
bool IsValidUtf8(absl::string_view s);

}  // namespace d2lora
