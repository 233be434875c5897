// Relative paths in a spec are relative to the spec file's directory.
#include <string>

#include "common/spec/job_spec.h"

namespace d2lora::spec {

std::string ResolveSpecPath(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path.front() == '/' || base_dir.empty()) return path;
  std::string rel = path;
  while (rel.size() > 2 && rel.compare(0, 2, "./") == 0) rel.erase(0, 2);
  if (rel == ".") return base_dir;
  return base_dir.back() == '/' ? base_dir + rel : base_dir + "/" + rel;
}

std::string SpecDirectory(const std::string& spec_path) {
  const size_t slash = spec_path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return spec_path.substr(0, slash);
}

JobSpec ResolveSpecPaths(const JobSpec& spec, const std::string& base_dir) {
  JobSpec out = spec;
  out.model = ResolveSpecPath(base_dir, spec.model);
  if (spec.init.adapter.rfind("upload:", 0) != 0) out.init.adapter = ResolveSpecPath(base_dir, spec.init.adapter);
  out.data.train = ResolveSpecPath(base_dir, spec.data.train);
  out.data.validation = ResolveSpecPath(base_dir, spec.data.validation);
  out.output.dir = ResolveSpecPath(base_dir, spec.output.dir);
  return out;
}

ValidJobSpec ResolveSpecPaths(const ValidJobSpec& spec, const std::string& base_dir) {
  return ValidJobSpec(ResolveSpecPaths(spec.get(), base_dir));
}

}  // namespace d2lora::spec
