#include "common/version.h"

#include "absl/strings/str_cat.h"

#ifndef D2LORA_VERSION
#define D2LORA_VERSION "unknown"
#endif
#ifndef D2LORA_GIT_COMMIT
#define D2LORA_GIT_COMMIT "unknown"
#endif

namespace d2lora {

std::string ProjectVersion() { return D2LORA_VERSION; }
std::string GitCommit() { return D2LORA_GIT_COMMIT; }

std::string VersionText(absl::string_view binary, const std::vector<std::string>& details) {
  std::string text = absl::StrCat(binary, " ", ProjectVersion(), " (commit ", GitCommit(), ")");
  for (const std::string& d : details) absl::StrAppend(&text, "\n", d);
  return text;
}

}  // namespace d2lora
