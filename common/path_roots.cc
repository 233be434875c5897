#include "common/path_roots.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace d2lora {
namespace {

namespace fs = std::filesystem;

// Paths in messages are cut short: a refused request may carry megabytes.
std::string Quote(const std::string& path) {
  constexpr size_t kShown = 200;
  if (path.size() <= kShown) return absl::StrCat("\"", path, "\"");
  return absl::StrCat("\"", path.substr(0, kShown), "...\" (", path.size(), " bytes)");
}

std::string Normal(const std::string& path) {
  std::string s = fs::path(path).lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

bool Under(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 && path[root.size()] == '/');
}

bool UnderAny(const std::string& path, const std::vector<std::string>& roots) {
  for (const std::string& root : roots) {
    if (Under(path, root)) return true;
  }
  return false;
}

}  // namespace

bool HasDotDotSegment(const std::string& path) {
  for (absl::string_view segment : absl::StrSplit(path, '/')) {
    if (segment == "..") return true;
  }
  return false;
}

absl::StatusOr<PathRoots> PathRoots::Create(const std::vector<std::string>& roots, const std::string& flag) {
  PathRoots r;
  r.flag_ = flag;
  for (const std::string& root : roots) {
    if (root.empty() || root[0] != '/' || HasDotDotSegment(root)) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " ", Quote(root), ": must be an absolute path without \"..\""));
    }
    std::error_code ec;
    const fs::path resolved = fs::weakly_canonical(root, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat(flag, " ", Quote(root), ": ", ec.message()));
    r.lexical_.push_back(Normal(root));
    r.resolved_.push_back(Normal(resolved.string()));
  }
  return r;
}

absl::Status PathRoots::Check(const std::string& field, const std::string& path) const {
  auto refuse = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", Quote(path), " ", why));
  };
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": empty path"));
  if (path.size() > kMaxPathBytes) return refuse(absl::StrCat("is longer than ", kMaxPathBytes, " bytes"));
  if (path.find('\0') != std::string::npos) return refuse("contains a NUL byte");
  if (path[0] != '/') return refuse("is not an absolute path");
  if (HasDotDotSegment(path)) return refuse("has a \"..\" segment: name the directory itself");
  if (!restricted()) return absl::OkStatus();
  const std::string allowed = absl::StrCat("(", flag_, ": ", absl::StrJoin(lexical_, ", "), ")");
  if (!UnderAny(Normal(path), lexical_)) return refuse(absl::StrCat("is outside the allowed roots ", allowed));
  // Symlinks followed as far as the path exists: a link inside a root may point out of it.
  std::error_code ec;
  const fs::path resolved = fs::weakly_canonical(path, ec);
  if (ec) return refuse(absl::StrCat("cannot be resolved: ", ec.message()));
  const std::string real = Normal(resolved.string());
  if (!UnderAny(real, resolved_) && !UnderAny(real, lexical_)) {
    return refuse(absl::StrCat("resolves to ", Quote(real), " (symlinks followed), outside the allowed roots ", allowed));
  }
  return absl::OkStatus();
}

}  // namespace d2lora
