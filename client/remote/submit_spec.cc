#include "client/remote/submit_spec.h"

#include <filesystem>

#include "common/status_macros.h"

namespace d2lora::cli {
namespace fs = std::filesystem;

bool IsUploadReference(const std::string& path) { return path.rfind("upload:", 0) == 0; }

std::string AbsoluteSpecPath(const std::string& base_dir, const std::string& path) {
  if (path.empty() || IsUploadReference(path)) return path;
  const std::string resolved = spec::ResolveSpecPath(base_dir, path);
  std::error_code ec;
  fs::path absolute = fs::absolute(resolved, ec);
  if (ec) return resolved;
  std::string out = absolute.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

absl::StatusOr<spec::JobSpec> LoadSubmitSpec(const std::string& path, const std::vector<std::string>& overrides) {
  D2_ASSIGN_OR_RETURN(spec::JobSpec spec, spec::LoadJobSpec(path, overrides));
  const std::string dir = spec::SpecDirectory(path);
  spec.model = AbsoluteSpecPath(dir, spec.model);
  spec.init.adapter = AbsoluteSpecPath(dir, spec.init.adapter);
  spec.data.train = AbsoluteSpecPath(dir, spec.data.train);
  spec.data.validation = AbsoluteSpecPath(dir, spec.data.validation);
  return spec;
}

}  // namespace d2lora::cli
