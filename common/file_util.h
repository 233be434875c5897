// Files that are never seen half-written: write to a temporary name in the same
// directory, fsync, rename, fsync the directory.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace d2lora {

// An error for the errno in effect: "WHAT PATH: strerror", its code chosen by
// errno (ENOSPC/EDQUOT ResourceExhausted, ENOENT NotFound, EACCES/EPERM
// PermissionDenied, else Internal).
absl::Status ErrnoError(absl::string_view what, const std::string& path);

// Replaces `path` with `contents` atomically.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// Reads a whole file; the error names the path.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// fsyncs a file or directory by path.
absl::Status SyncPath(const std::string& path);

// A directory that appears under its final name only when Commit() succeeds.
// Files are written under path() (a sibling temporary directory); Commit()
// fsyncs them and renames the directory into place, replacing an existing one
// only if `replace` is set. Without Commit() the temporary directory is removed.
class StagedDirectory {
 public:
  static absl::StatusOr<StagedDirectory> Create(const std::string& final_path);
  StagedDirectory(StagedDirectory&& other) noexcept;
  StagedDirectory& operator=(StagedDirectory&&) = delete;
  ~StagedDirectory();

  const std::string& path() const { return temp_path_; }
  const std::string& final_path() const { return final_path_; }
  absl::Status Commit(bool replace = false);

 private:
  StagedDirectory(std::string final_path, std::string temp_path)
      : final_path_(std::move(final_path)), temp_path_(std::move(temp_path)) {}
  std::string final_path_;
  std::string temp_path_;
  bool done_ = false;
};

}  // namespace d2lora
