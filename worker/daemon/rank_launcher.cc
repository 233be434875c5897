#include "worker/daemon/rank_launcher.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace d2lora::worker {

std::string ExitStatus::Describe() const {
  if (signal != 0) {
    const char* name = strsignal(signal);
    return absl::StrCat("rank process killed by signal ", signal, name != nullptr ? absl::StrCat(" (", name, ")") : "");
  }
  return absl::StrCat("rank process exited with code ", exit_code);
}

}  // namespace d2lora::worker
