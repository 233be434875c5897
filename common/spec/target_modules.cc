#include "common/spec/target_modules.h"

#include <re2/re2.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace d2lora::spec {
namespace {

constexpr absl::string_view kAllLinear = "all-linear";
constexpr absl::string_view kOutputHead = "lm_head";

bool IsRegex(absl::string_view pattern) {
  return pattern.find_first_of("^$*+?()[]{}|\\") != absl::string_view::npos;
}

bool SuffixMatch(absl::string_view path, absl::string_view name) {
  return path == name || absl::EndsWith(path, absl::StrCat(".", name));
}

}  // namespace

absl::StatusOr<bool> MatchesTargetModules(const std::string& path, const std::vector<std::string>& patterns) {
  for (const std::string& pattern : patterns) {
    if (pattern == kAllLinear) {
      if (!SuffixMatch(path, kOutputHead)) return true;
    } else if (IsRegex(pattern)) {
      RE2 re(pattern, RE2::Quiet);
      if (!re.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("adapter.target_modules: invalid regex '", pattern, "': ", re.error()));
      }
      if (RE2::FullMatch(path, re)) return true;
    } else if (SuffixMatch(path, pattern)) {
      return true;
    }
  }
  return false;
}

}  // namespace d2lora::spec
