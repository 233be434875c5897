// Directories a job's paths must stay inside (--allowed-path-root): used by the
// coordinator on every submitted spec and by the worker daemon before it
// starts ranks. A path passes when it is absolute, has no ".." segment, lies
// under a root after lexical normalisation, and (symlinks followed, as far as
// the path exists) still lies under a root.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace d2lora {

// The longest path a spec may name (PATH_MAX).
inline constexpr size_t kMaxPathBytes = 4096;

class PathRoots {
 public:
  // `roots`: absolute directories ("" entries are errors); none = no
  // restriction beyond absolute and no "..". `flag` names them in errors.
  static absl::StatusOr<PathRoots> Create(const std::vector<std::string>& roots,
                                          const std::string& flag = "--allowed-path-root");
  PathRoots() = default;

  bool restricted() const { return !lexical_.empty(); }
  const std::vector<std::string>& roots() const { return lexical_; }

  // OK, or INVALID_ARGUMENT "FIELD: ..." saying why `path` is refused.
  absl::Status Check(const std::string& field, const std::string& path) const;

 private:
  std::string flag_;
  std::vector<std::string> lexical_;   // as configured, lexically normal, no trailing '/'
  std::vector<std::string> resolved_;  // the same, symlinks followed
};

// True when some '/'-separated segment of `path` is exactly "..".
bool HasDotDotSegment(const std::string& path);

}  // namespace d2lora
