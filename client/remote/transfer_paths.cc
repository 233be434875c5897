#include "client/remote/transfer_paths.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace d2lora::cli {
namespace fs = std::filesystem;

std::string UploadArtifactName(const std::string& name) {
  if (name.rfind("upload:", 0) == 0) return "uploads/" + name.substr(7);
  return name;
}

std::string FolderName(const std::string& name) {
  std::string out = name;
  while (!out.empty() && out.back() == '/') out.pop_back();
  return out;
}

absl::StatusOr<std::string> RelativeArtifactPath(const std::string& name, const std::string& prefix) {
  if (name.compare(0, prefix.size(), prefix) != 0 || name.size() == prefix.size()) {
    return absl::InvalidArgumentError(absl::StrCat("artifact ", name, " is not a file under ", prefix));
  }
  const fs::path rel(name.substr(prefix.size()));
  if (rel.is_absolute()) return absl::InvalidArgumentError(absl::StrCat("artifact name ", name, " is absolute"));
  for (const fs::path& part : rel) {
    if (part == "..") return absl::InvalidArgumentError(absl::StrCat("artifact name ", name, " climbs out with .."));
  }
  return rel.lexically_normal().string();
}

std::string FileOutputPath(const std::string& name, const std::string& out) {
  const std::string base = fs::path(FolderName(name)).filename().string();
  if (out.empty()) return base;
  std::error_code ec;
  if (out.back() == '/' || fs::is_directory(out, ec)) return (fs::path(out) / base).string();
  return out;
}

}  // namespace d2lora::cli
