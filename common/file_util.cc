#include "common/file_util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace d2lora {
namespace fs = std::filesystem;

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  int err = errno;
  std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(msg);
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

namespace {
std::string ParentOf(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}
}  // namespace

absl::Status SyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  // Some filesystems refuse fsync on directories; that is not a data loss.
  if (rc != 0 && errno != EINVAL && errno != EROFS) return ErrnoError("cannot fsync", path);
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents) {
  std::string tmp = absl::StrCat(path, ".tmp-XXXXXX");
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) return ErrnoError("cannot create a temporary file for", path);
  const char* p = contents.data();
  size_t left = contents.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status st = ErrnoError("cannot write", path);
      ::close(fd);
      ::unlink(tmp.c_str());
      return st;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fchmod(fd, 0644) != 0 || ::fsync(fd) != 0) {
    absl::Status st = ErrnoError("cannot fsync", path);
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status st = ErrnoError("cannot rename into", path);
    ::unlink(tmp.c_str());
    return st;
  }
  return SyncPath(ParentOf(path));
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory"));
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open"));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::InternalError(absl::StrCat(path, ": read error"));
  return ss.str();
}

absl::StatusOr<StagedDirectory> StagedDirectory::Create(const std::string& final_path) {
  std::string parent = ParentOf(final_path);
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", parent, ": ", ec.message()));
  std::string tmp = absl::StrCat(final_path, ".tmp-XXXXXX");
  if (::mkdtemp(tmp.data()) == nullptr) return ErrnoError("cannot create a temporary directory for", final_path);
  return StagedDirectory(final_path, tmp);
}

StagedDirectory::StagedDirectory(StagedDirectory&& other) noexcept
    : final_path_(std::move(other.final_path_)), temp_path_(std::move(other.temp_path_)), done_(other.done_) {
  other.done_ = true;
}

StagedDirectory::~StagedDirectory() {
  if (!done_) {
    std::error_code ec;
    fs::remove_all(temp_path_, ec);
  }
}

absl::Status StagedDirectory::Commit(bool replace) {
  if (done_) return absl::FailedPreconditionError("directory already committed: " + final_path_);
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(temp_path_, ec)) {
    if (entry.is_regular_file()) {
      absl::Status st = SyncPath(entry.path().string());
      if (!st.ok()) return st;
    }
  }
  absl::Status st = SyncPath(temp_path_);
  if (!st.ok()) return st;
  if (fs::exists(final_path_, ec)) {
    if (!replace) return absl::AlreadyExistsError(absl::StrCat(final_path_, " already exists"));
    // Move the old directory aside first so that the final name is never missing
    // for longer than two renames.
    std::string old = absl::StrCat(final_path_, ".old-XXXXXX");
    if (::mkdtemp(old.data()) == nullptr) return ErrnoError("cannot stage replacement of", final_path_);
    fs::remove(old, ec);
    if (::rename(final_path_.c_str(), old.c_str()) != 0) return ErrnoError("cannot move aside", final_path_);
    if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
      absl::Status err = ErrnoError("cannot rename into", final_path_);
      ::rename(old.c_str(), final_path_.c_str());
      return err;
    }
    fs::remove_all(old, ec);
  } else if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
    return ErrnoError("cannot rename into", final_path_);
  }
  done_ = true;
  return SyncPath(ParentOf(final_path_));
}

}  // namespace d2lora
