// The job spec as `d2lora submit` sends it: loaded like `d2lora train` does
// (YAML/JSON, --set overrides, every check), its paths made absolute.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/spec/job_spec.h"

namespace d2lora::cli {

// "upload:ID" or "upload:ID/NAME": a file sent with JobService.UploadFile.
bool IsUploadReference(const std::string& path);

// `path` against `base_dir`, made absolute and normal; "" and upload
// references are returned as they are.
std::string AbsoluteSpecPath(const std::string& base_dir, const std::string& path);

// Loads the spec at `path` with `overrides` ("key.path=value") and resolves
// model, init.adapter, data.train and data.validation against the spec file's folder.
absl::StatusOr<spec::JobSpec> LoadSubmitSpec(const std::string& path, const std::vector<std::string>& overrides);

}  // namespace d2lora::cli
