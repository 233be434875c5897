// Names on the coordinator's side and paths on ours, for `download`.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace d2lora::cli {

// "upload:ID/NAME" -> "uploads/ID/NAME", "upload:ID" -> "uploads/ID"; other
// names unchanged (what DownloadArtifact takes with job_id "").
std::string UploadArtifactName(const std::string& name);

// NAME without trailing '/': the folder whose files NAME may mean.
std::string FolderName(const std::string& name);

// `name` below `prefix` ("merged/" + "a/b.json" -> "a/b.json"); an error if the
// rest is empty, absolute or climbs out with "..".
absl::StatusOr<std::string> RelativeArtifactPath(const std::string& name, const std::string& prefix);

// Where one downloaded file goes: `out` itself, or `out`/BASENAME when `out`
// ends with '/' or is a folder; BASENAME here when `out` is "".
std::string FileOutputPath(const std::string& name, const std::string& out);

}  // namespace d2lora::cli
