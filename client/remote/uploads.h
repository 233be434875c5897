// Sending local files to the coordinator with JobService.UploadFile: one file,
// or every regular file of a folder (recursively) into one upload.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/remote/remote_util.h"

namespace d2lora::cli {

// The regular files under `dir` (symbolic links to files included), as
// sorted names relative to it ("a/b.json").
absl::StatusOr<std::vector<std::string>> ListRegularFiles(const std::string& dir);

// Uploads the file at `path` as `name` into `upload_id` ("" = a new upload).
// The header carries its size and sha256, computed first.
absl::StatusOr<v1::UploadFileResponse> UploadOneFile(const Remote& remote, const std::string& path,
                                                     const std::string& name, const std::string& upload_id);

struct UploadedFolder {
  std::string upload_id;
  std::vector<v1::UploadFileResponse> files;
  int64_t bytes = 0;
};

// Uploads every regular file under `dir` into one upload (`upload_id`, or a
// new one), names relative to `dir`. An empty folder is an error.
absl::StatusOr<UploadedFolder> UploadFolder(const Remote& remote, const std::string& dir, const std::string& upload_id);

// A file name made acceptable as an upload name: characters outside
// [A-Za-z0-9._-] become '_'.
std::string UploadName(const std::string& file_name);

}  // namespace d2lora::cli
