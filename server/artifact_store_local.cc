#include "server/artifact_store_local.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace d2lora::server {
namespace {

constexpr char kTmpDir[] = ".d2lora-tmp";
constexpr char kMetaDir[] = ".d2lora-meta";
constexpr char kSidecarVersion[] = "d2lora-meta-v1";

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
// O_NONBLOCK: a FIFO planted in the root must not hang a reader.
constexpr int kReadFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_ino == b.st_ino && a.st_size == b.st_size && MtimeNs(a) == MtimeNs(b);
}

// Some filesystems refuse fsync on folders; that is not a data loss.
absl::Status FsyncDir(int fd, const std::string& path) {
  if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) return ErrnoError("cannot fsync", path);
  return absl::OkStatus();
}

// A new descriptor of the folder `dir_fd`, with its own readdir offset (a
// dup() would share it with every other user of `dir_fd`).
int ReopenDir(int dir_fd) { return ::openat(dir_fd, ".", kDirFlags); }

std::string ParentPath(const std::string& path) { return path.substr(0, path.rfind('/')); }

absl::Status SymlinkRefused(const std::string& path) {
  return absl::PermissionDeniedError(absl::StrCat(path, ": is a symbolic link; the store never follows one"));
}

enum class WalkMode {
  kOpen,            // missing folders are NOT_FOUND
  kCreate,          // missing folders are made
  kCreateReplacing  // and files in the way removed (the sidecar tree only)
};

// Opens the folder `segments` below `base_fd` (whose path is `base_path`), one
// segment at a time with O_NOFOLLOW, so that no symbolic link is followed.
// A file on the way is FAILED_PRECONDITION, a link PERMISSION_DENIED.
absl::StatusOr<Fd> WalkDirs(int base_fd, const std::string& base_path, const std::vector<std::string>& segments,
                            WalkMode mode) {
  Fd dir(ReopenDir(base_fd));
  if (dir.get() < 0) return ErrnoError("cannot open folder", base_path);
  std::string path = base_path;
  for (const std::string& segment : segments) {
    const std::string parent_path = path;
    absl::StrAppend(&path, "/", segment);
    for (int attempt = 0;; ++attempt) {
      int fd = ::openat(dir.get(), segment.c_str(), kDirFlags);
      if (fd >= 0) {
        dir = Fd(fd);
        break;
      }
      if (attempt >= 3) return ErrnoError("cannot open folder", path);
      const int err = errno;
      if (err == ENOENT) {
        if (mode == WalkMode::kOpen) return absl::NotFoundError(absl::StrCat(path, ": no such folder"));
        if (::mkdirat(dir.get(), segment.c_str(), 0755) == 0) {
          // The new folder's entry must be durable before a file renamed into it.
          D2_RETURN_IF_ERROR(FsyncDir(dir.get(), parent_path));
        } else if (errno != EEXIST) {
          return ErrnoError("cannot create folder", path);
        }
        continue;
      }
      if (err != ENOTDIR && err != ELOOP) {
        errno = err;
        return ErrnoError("cannot open folder", path);
      }
      struct stat st;
      if (::fstatat(dir.get(), segment.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // raced: retry
      if (S_ISLNK(st.st_mode)) return SymlinkRefused(path);
      if (mode == WalkMode::kCreateReplacing) {
        // A sidecar left behind where a folder of sidecars is now needed.
        if (::unlinkat(dir.get(), segment.c_str(), 0) != 0 && errno != ENOENT) return ErrnoError("cannot remove", path);
        continue;
      }
      return absl::FailedPreconditionError(absl::StrCat(path, ": is a file, not a folder"));
    }
  }
  return dir;
}

std::vector<std::string> Segments(absl::string_view key) { return absl::StrSplit(key, '/', absl::SkipEmpty()); }

// The folder segments of `key` (all but the last); `name` gets the last.
std::vector<std::string> ParentSegments(const std::string& key, std::string* name) {
  std::vector<std::string> segments = Segments(key);
  *name = segments.back();
  segments.pop_back();
  return segments;
}

// Removes `name` in `dir_fd`: a file, a link (not its target) or a whole folder.
absl::Status RemoveTree(int dir_fd, const std::string& name, const std::string& path) {
  struct stat st;
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? absl::OkStatus() : ErrnoError("cannot stat", path);
  }
  if (S_ISDIR(st.st_mode)) {
    int fd = ::openat(dir_fd, name.c_str(), kDirFlags);
    if (fd < 0) return errno == ENOENT ? absl::OkStatus() : ErrnoError("cannot open folder", path);
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      absl::Status error = ErrnoError("cannot list", path);
      ::close(fd);
      return error;
    }
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d)) {
      std::string child = e->d_name;
      if (child != "." && child != "..") names.push_back(std::move(child));
    }
    absl::Status status;
    for (const std::string& child : names) {
      status.Update(RemoveTree(::dirfd(d), child, absl::StrCat(path, "/", child)));
    }
    ::closedir(d);
    D2_RETURN_IF_ERROR(status);
    if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return ErrnoError("cannot remove folder", path);
    }
    return absl::OkStatus();
  }
  if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) return ErrnoError("cannot remove", path);
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Up to `n` bytes from `offset`; fewer only at the end of the file.
absl::StatusOr<std::string> PreadAll(int fd, int64_t offset, size_t n, const std::string& path) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, out.data() + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot read", path);
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

absl::StatusOr<std::string> HashFd(int fd, const std::string& path) {
  Sha256Hasher hasher;
  constexpr size_t kChunk = 1 << 20;
  for (int64_t offset = 0;;) {
    D2_ASSIGN_OR_RETURN(std::string chunk, PreadAll(fd, offset, kChunk, path));
    hasher.Update(chunk);
    offset += static_cast<int64_t>(chunk.size());
    if (chunk.size() < kChunk) break;
  }
  return hasher.HexDigest();
}

// One line: version, size, mtime (ns), inode, SHA-256. The sidecar is trusted
// only for the file with exactly this size, mtime and inode.
std::string FormatSidecar(const struct stat& st, const std::string& sha256) {
  return absl::StrCat(kSidecarVersion, " ", st.st_size, " ", MtimeNs(st), " ", st.st_ino, " ", sha256, "\n");
}

struct Sidecar {
  int64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t ino = 0;
  std::string sha256;
};

// A sidecar's record, or nullopt when `text` is not one (damaged, or an older format).
std::optional<Sidecar> ParseSidecar(absl::string_view text) {
  std::vector<absl::string_view> f = absl::StrSplit(absl::StripTrailingAsciiWhitespace(text), ' ');
  Sidecar s;
  if (f.size() != 5 || f[0] != kSidecarVersion || !absl::SimpleAtoi(f[1], &s.size) ||
      !absl::SimpleAtoi(f[2], &s.mtime_ns) || !absl::SimpleAtoi(f[3], &s.ino) || f[4].size() != 64) {
    return std::nullopt;
  }
  for (char c : f[4]) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) || absl::ascii_isupper(static_cast<unsigned char>(c))) {
      return std::nullopt;
    }
  }
  s.sha256 = std::string(f[4]);
  return s;
}

// The sidecar is written before its file is renamed into place, and rename
// keeps the inode: a record of this inode whose size or mtime differ means the
// file was written to after its commit (by something other than the store).
// A record of another inode is stale (a crash between the two steps): no damage.
std::string Damage(const Sidecar& s, const struct stat& st) {
  if (s.ino != static_cast<uint64_t>(st.st_ino)) return "";
  if (s.size == st.st_size && s.mtime_ns == MtimeNs(st)) return "";
  return absl::StrCat("changed on disk after it was stored (committed ", s.size, " bytes with SHA-256 ",
                      s.sha256.substr(0, 12), "..., modified at ", s.mtime_ns / 1000000000, "; now ", st.st_size,
                      " bytes, modified at ", MtimeNs(st) / 1000000000, ")");
}

ArtifactInfo MakeInfo(const std::string& key, const struct stat& st, std::string sha256) {
  return ArtifactInfo{key, static_cast<int64_t>(st.st_size), std::move(sha256), MtimeNs(st) / 1000000, {}};
}

absl::Status ValidatePrefix(const std::string& prefix) {
  if (prefix.empty()) return absl::OkStatus();
  return ValidateArtifactKey(absl::StripSuffix(prefix, "/"));
}

std::string RandomHex() {
  thread_local std::mt19937_64 rng(std::random_device{}() ^
                                   std::hash<std::thread::id>{}(std::this_thread::get_id()));
  static constexpr char kDigits[] = "0123456789abcdef";
  uint64_t x = rng();
  std::string out(16, '0');
  for (char& c : out) {
    c = kDigits[x & 15];
    x >>= 4;
  }
  return out;
}

// Removes the temporary files whose writer is gone: a live writer holds an
// flock on its file, and flocks die with their process.
absl::Status RemoveStaleTempFiles(int tmp_fd, const std::string& tmp_path) {
  int fd = ReopenDir(tmp_fd);
  if (fd < 0) return ErrnoError("cannot open folder", tmp_path);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    absl::Status error = ErrnoError("cannot list", tmp_path);
    ::close(fd);
    return error;
  }
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  absl::Status status;
  for (const std::string& name : names) {
    const std::string path = absl::StrCat(tmp_path, "/", name);
    Fd file(::openat(::dirfd(d), name.c_str(), kReadFlags));
    if (file.get() < 0) {
      // A folder or a link: nothing of ours; remove it all the same.
      if (errno == EISDIR || errno == ELOOP) status.Update(RemoveTree(::dirfd(d), name, path));
      continue;
    }
    struct stat st;
    if (::fstat(file.get(), &st) == 0 && S_ISDIR(st.st_mode)) {
      status.Update(RemoveTree(::dirfd(d), name, path));
    } else if (::flock(file.get(), LOCK_EX | LOCK_NB) == 0) {
      if (::unlinkat(::dirfd(d), name.c_str(), 0) != 0 && errno != ENOENT) {
        status.Update(ErrnoError("cannot remove stale temporary file", path));
      }
    }
  }
  ::closedir(d);
  return status;
}

}  // namespace

// The file being written: ROOT/.d2lora-tmp/NAME, hashed as it grows.
class LocalArtifactWriter : public ArtifactWriter {
 public:
  LocalArtifactWriter(LocalArtifactStore* store, std::string key, int fd, std::string temp_name)
      : store_(store), key_(std::move(key)), fd_(fd), temp_name_(std::move(temp_name)) {}
  ~LocalArtifactWriter() override { Discard(); }

  absl::Status Append(absl::string_view data) override {
    D2_RETURN_IF_ERROR(CheckOpen());
    const int64_t limit = store_->options().max_file_bytes;
    if (static_cast<int64_t>(data.size()) > limit - size_) {
      return Fail(absl::ResourceExhaustedError(
          absl::StrCat(store_->PathOf(key_), ": larger than the limit of ", limit, " bytes per file")));
    }
    absl::Status written = WriteAll(fd_, data, store_->PathOf(key_));
    if (!written.ok()) return Fail(written);
    hasher_.Update(data);
    size_ += static_cast<int64_t>(data.size());
    return absl::OkStatus();
  }

  absl::StatusOr<ArtifactInfo> Commit(const std::string& expected_sha256) override {
    D2_RETURN_IF_ERROR(CheckOpen());
    const std::string sha256 = hasher_.HexDigest();
    if (!expected_sha256.empty() && !absl::EqualsIgnoreCase(expected_sha256, sha256)) {
      return Fail(absl::DataLossError(absl::StrCat(store_->PathOf(key_), ": SHA-256 mismatch: expected ",
                                                   expected_sha256, ", got ", sha256, " (", size_, " bytes)")));
    }
    absl::StatusOr<ArtifactInfo> info = store_->CommitFile(key_, fd_, temp_name_, sha256);
    if (!info.ok()) return Fail(info.status());
    ::close(fd_);
    fd_ = -1;
    done_ = true;
    return info;
  }

 private:
  absl::Status CheckOpen() const {
    if (!status_.ok()) return status_;
    if (done_) return absl::FailedPreconditionError(absl::StrCat(store_->PathOf(key_), ": already committed"));
    return absl::OkStatus();
  }
  // Errors are final: the temporary file goes at once, so that a full disk
  // is not kept full by a writer its caller has not destroyed yet.
  absl::Status Fail(absl::Status status) {
    Discard();
    status_ = status;
    return status;
  }
  void Discard() {
    if (fd_ < 0) return;
    ::unlinkat(store_->tmp_fd_, temp_name_.c_str(), 0);
    ::close(fd_);
    fd_ = -1;
  }

  LocalArtifactStore* const store_;
  const std::string key_;
  int fd_;
  const std::string temp_name_;
  Sha256Hasher hasher_;
  int64_t size_ = 0;
  bool done_ = false;
  absl::Status status_;
};

absl::StatusOr<std::unique_ptr<LocalArtifactStore>> LocalArtifactStore::Create(Options options) {
  if (options.root.empty()) return absl::InvalidArgumentError("artifact store: the root folder is not set");
  if (options.max_file_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat("artifact store: negative max_file_bytes ", options.max_file_bytes));
  }
  while (options.root.size() > 1 && options.root.back() == '/') options.root.pop_back();
  std::error_code ec;
  std::filesystem::create_directories(options.root, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", options.root, ": ", ec.message()));
  // The root itself may be a link (an operator's choice); nothing below it may.
  Fd root(::open(options.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root.get() < 0) return ErrnoError("cannot open the artifact store root", options.root);
  const std::string tmp_path = absl::StrCat(options.root, "/", kTmpDir);
  const std::string meta_path = absl::StrCat(options.root, "/", kMetaDir);
  D2_ASSIGN_OR_RETURN(Fd tmp, WalkDirs(root.get(), options.root, {kTmpDir}, WalkMode::kCreate));
  D2_ASSIGN_OR_RETURN(Fd meta, WalkDirs(root.get(), options.root, {kMetaDir}, WalkMode::kCreate));
  D2_RETURN_IF_ERROR(RemoveStaleTempFiles(tmp.get(), tmp_path));
  return std::unique_ptr<LocalArtifactStore>(
      new LocalArtifactStore(std::move(options), root.release(), tmp.release(), meta.release()));
}

LocalArtifactStore::~LocalArtifactStore() {
  ::close(root_fd_);
  ::close(tmp_fd_);
  ::close(meta_fd_);
}

std::string LocalArtifactStore::PathOf(const std::string& key) const { return absl::StrCat(options_.root, "/", key); }
std::string LocalArtifactStore::MetaPathOf(const std::string& key) const {
  return absl::StrCat(options_.root, "/", kMetaDir, "/", key);
}

std::mutex& LocalArtifactStore::KeyMutex(const std::string& key) {
  return key_mutexes_[std::hash<std::string>{}(key) % key_mutexes_.size()];
}

absl::StatusOr<int> LocalArtifactStore::CreateTempFile(std::string* name) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    *name = absl::StrCat("w-", ::getpid(), "-", RandomHex());
    Fd fd(::openat(tmp_fd_, name->c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
      if (errno == EEXIST) continue;
      return ErrnoError("cannot create a temporary file in", absl::StrCat(options_.root, "/", kTmpDir));
    }
    struct stat st;
    if (::flock(fd.get(), LOCK_EX) != 0 || ::fstat(fd.get(), &st) != 0) {
      absl::Status error = ErrnoError("cannot lock temporary file", absl::StrCat(options_.root, "/", kTmpDir, "/", *name));
      ::unlinkat(tmp_fd_, name->c_str(), 0);
      return error;
    }
    // Another process's Create() may have taken it for stale before we locked it.
    if (st.st_nlink == 0) continue;
    return fd.release();
  }
  return absl::InternalError(absl::StrCat("cannot find a free temporary name in ", options_.root, "/", kTmpDir));
}

absl::StatusOr<std::unique_ptr<ArtifactWriter>> LocalArtifactStore::OpenWriter(const std::string& key) {
  D2_RETURN_IF_ERROR(ValidateArtifactKey(key));
  // Refuse early what Commit() would refuse: a link or a file on the way, a
  // folder or a link at the key.
  std::string name;
  absl::StatusOr<Fd> parent = WalkDirs(root_fd_, options_.root, ParentSegments(key, &name), WalkMode::kOpen);
  if (parent.ok()) {
    struct stat st;
    if (::fstatat(parent->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISLNK(st.st_mode)) return SymlinkRefused(PathOf(key));
      if (!S_ISREG(st.st_mode)) {
        return absl::FailedPreconditionError(absl::StrCat(PathOf(key), ": is a folder, not a file"));
      }
    }
  } else if (!absl::IsNotFound(parent.status())) {
    return parent.status();
  }
  std::string temp_name;
  D2_ASSIGN_OR_RETURN(int fd, CreateTempFile(&temp_name));
  return std::unique_ptr<ArtifactWriter>(new LocalArtifactWriter(this, key, fd, std::move(temp_name)));
}

absl::Status LocalArtifactStore::WriteSidecar(const std::string& key, const struct stat& st,
                                              const std::string& sha256) {
  const std::string path = MetaPathOf(key);
  std::string name;
  D2_ASSIGN_OR_RETURN(Fd parent, WalkDirs(meta_fd_, absl::StrCat(options_.root, "/", kMetaDir),
                                          ParentSegments(key, &name), WalkMode::kCreateReplacing));
  std::string temp_name;
  D2_ASSIGN_OR_RETURN(int raw_fd, CreateTempFile(&temp_name));
  Fd fd(raw_fd);
  absl::Status status = WriteAll(fd.get(), FormatSidecar(st, sha256), path);
  if (status.ok() && ::fsync(fd.get()) != 0) status = ErrnoError("cannot fsync", path);
  for (int attempt = 0; status.ok(); ++attempt) {
    if (::renameat(tmp_fd_, temp_name.c_str(), parent.get(), name.c_str()) == 0) break;
    if (attempt == 0 && (errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST)) {
      // Sidecars of an old folder where this file now is.
      status = RemoveTree(parent.get(), name, path);
      continue;
    }
    status = ErrnoError("cannot rename into", path);
  }
  if (!status.ok()) {
    ::unlinkat(tmp_fd_, temp_name.c_str(), 0);
    return status;
  }
  return FsyncDir(parent.get(), ParentPath(path));
}

absl::StatusOr<ArtifactInfo> LocalArtifactStore::CommitFile(const std::string& key, int fd,
                                                            const std::string& temp_name, const std::string& sha256) {
  const std::string path = PathOf(key);
  // The mtime is the commit time; the sidecar records it, and rename keeps it.
  struct stat st;
  if (::futimens(fd, nullptr) != 0) return ErrnoError("cannot set the time of", path);
  if (::fsync(fd) != 0) return ErrnoError("cannot fsync", path);
  if (::fstat(fd, &st) != 0) return ErrnoError("cannot stat", path);

  std::lock_guard<std::mutex> lock(KeyMutex(key));
  std::string name;
  D2_ASSIGN_OR_RETURN(Fd parent, WalkDirs(root_fd_, options_.root, ParentSegments(key, &name), WalkMode::kCreate));
  struct stat old;
  if (::fstatat(parent.get(), name.c_str(), &old, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(old.st_mode)) return SymlinkRefused(path);
    if (!S_ISREG(old.st_mode)) return absl::FailedPreconditionError(absl::StrCat(path, ": is a folder, not a file"));
  }
  // The sidecar goes first: a crash before the rename below leaves it
  // describing a file that is not there, which Stat sees and repairs.
  D2_RETURN_IF_ERROR(WriteSidecar(key, st, sha256));
  if (::renameat(tmp_fd_, temp_name.c_str(), parent.get(), name.c_str()) != 0) {
    return ErrnoError("cannot rename into", path);
  }
  // Past the rename the file is visible; an error here only says that its
  // name may not survive a crash.
  D2_RETURN_IF_ERROR(FsyncDir(parent.get(), ParentPath(path)));
  return MakeInfo(key, st, sha256);
}

absl::StatusOr<int> LocalArtifactStore::OpenFile(const std::string& key, struct stat* st) {
  const std::string path = PathOf(key);
  std::string name;
  absl::StatusOr<Fd> parent = WalkDirs(root_fd_, options_.root, ParentSegments(key, &name), WalkMode::kOpen);
  if (absl::IsNotFound(parent.status()) || absl::IsFailedPrecondition(parent.status())) {
    return absl::NotFoundError(absl::StrCat(path, ": no such artifact"));
  }
  if (!parent.ok()) return parent.status();
  Fd fd(::openat(parent->get(), name.c_str(), kReadFlags));
  if (fd.get() < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such artifact"));
    if (errno == ELOOP) return SymlinkRefused(path);
    return ErrnoError("cannot open", path);
  }
  if (::fstat(fd.get(), st) != 0) return ErrnoError("cannot stat", path);
  if (S_ISDIR(st->st_mode)) return absl::NotFoundError(absl::StrCat(path, ": is a folder, not an artifact"));
  if (!S_ISREG(st->st_mode)) return absl::FailedPreconditionError(absl::StrCat(path, ": is not a regular file"));
  return fd.release();
}

absl::StatusOr<ArtifactInfo> LocalArtifactStore::InfoOf(const std::string& key, int fd, const struct stat& st) {
  std::string name;
  const std::vector<std::string> parent_segments = ParentSegments(key, &name);
  absl::StatusOr<Fd> meta_parent =
      WalkDirs(meta_fd_, absl::StrCat(options_.root, "/", kMetaDir), parent_segments, WalkMode::kOpen);
  if (meta_parent.ok()) {
    Fd sidecar(::openat(meta_parent->get(), name.c_str(), kReadFlags));
    if (sidecar.get() >= 0) {
      absl::StatusOr<std::string> text = PreadAll(sidecar.get(), 0, 256, MetaPathOf(key));
      std::optional<Sidecar> record = text.ok() ? ParseSidecar(*text) : std::nullopt;
      if (record.has_value()) {
        ArtifactInfo info = MakeInfo(key, st, record->sha256);
        info.damaged = Damage(*record, st);
        if (!info.damaged.empty() || record->ino == static_cast<uint64_t>(st.st_ino)) return info;
      }
    }
  }
  // Missing, damaged or stale (a crash between the sidecar and the file).
  D2_ASSIGN_OR_RETURN(std::string sha256, HashFd(fd, PathOf(key)));
  struct stat after;
  if (::fstat(fd, &after) != 0) return ErrnoError("cannot stat", PathOf(key));
  if (!SameFile(st, after)) return absl::AbortedError(absl::StrCat(PathOf(key), ": changed while being hashed"));
  {
    // Repair only while this file is still the one at the key; a failed
    // repair costs a rehash next time, nothing more.
    std::lock_guard<std::mutex> lock(KeyMutex(key));
    absl::StatusOr<Fd> parent = WalkDirs(root_fd_, options_.root, parent_segments, WalkMode::kOpen);
    struct stat now;
    if (parent.ok() && ::fstatat(parent->get(), name.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 && SameFile(st, now)) {
      WriteSidecar(key, st, sha256).IgnoreError();
    }
  }
  return MakeInfo(key, st, std::move(sha256));
}

absl::StatusOr<ArtifactInfo> LocalArtifactStore::Stat(const std::string& key) {
  D2_RETURN_IF_ERROR(ValidateArtifactKey(key));
  struct stat st;
  D2_ASSIGN_OR_RETURN(int raw_fd, OpenFile(key, &st));
  Fd fd(raw_fd);
  D2_ASSIGN_OR_RETURN(ArtifactInfo info, InfoOf(key, fd.get(), st));
  if (!info.damaged.empty()) return absl::DataLossError(absl::StrCat(PathOf(key), ": ", info.damaged));
  return info;
}

absl::StatusOr<std::string> LocalArtifactStore::Read(const std::string& key, int64_t offset, int64_t max_bytes) {
  D2_RETURN_IF_ERROR(ValidateArtifactKey(key));
  if (offset < 0 || max_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(PathOf(key), ": negative offset or length (", offset, ", ", max_bytes, ")"));
  }
  struct stat st;
  D2_ASSIGN_OR_RETURN(int raw_fd, OpenFile(key, &st));
  Fd fd(raw_fd);
  if (offset >= st.st_size) return std::string();
  return PreadAll(fd.get(), offset, static_cast<size_t>(std::min<int64_t>(max_bytes, st.st_size - offset)),
                  PathOf(key));
}

absl::Status LocalArtifactStore::ListUnder(int dir_fd, const std::string& dir_key, const std::string& prefix,
                                           std::vector<ArtifactInfo>* out) {
  const std::string dir_path = dir_key.empty() ? options_.root : PathOf(dir_key);
  int fd = ReopenDir(dir_fd);
  if (fd < 0) return ErrnoError("cannot open folder", dir_path);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    absl::Status error = ErrnoError("cannot list", dir_path);
    ::close(fd);
    return error;
  }
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);

  for (const std::string& name : names) {
    // Skips ".", "..", the reserved folders and anything no key can name.
    if (!ValidateArtifactKey(name).ok()) continue;
    const std::string key = dir_key.empty() ? name : absl::StrCat(dir_key, "/", name);
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    if (S_ISDIR(st.st_mode)) {
      const std::string folder = key + "/";
      if (!absl::StartsWith(folder, prefix) && !absl::StartsWith(prefix, folder)) continue;
      Fd child(::openat(dir_fd, name.c_str(), kDirFlags));
      if (child.get() < 0) continue;
      D2_RETURN_IF_ERROR(ListUnder(child.get(), key, prefix, out));
    } else if (S_ISREG(st.st_mode) && absl::StartsWith(key, prefix) && ValidateArtifactKey(key).ok()) {
      Fd file(::openat(dir_fd, name.c_str(), kReadFlags));
      if (file.get() < 0 || ::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      D2_ASSIGN_OR_RETURN(ArtifactInfo info, InfoOf(key, file.get(), st));
      out->push_back(std::move(info));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ArtifactInfo>> LocalArtifactStore::List(const std::string& prefix) {
  D2_RETURN_IF_ERROR(ValidatePrefix(prefix));
  // Start at the deepest whole folder of the prefix: "jobs/1" lists "jobs".
  const size_t slash = prefix.rfind('/');
  const std::string dir_key = slash == std::string::npos ? "" : prefix.substr(0, slash);
  std::vector<ArtifactInfo> out;
  absl::StatusOr<Fd> dir = WalkDirs(root_fd_, options_.root, Segments(dir_key), WalkMode::kOpen);
  if (absl::IsNotFound(dir.status()) || absl::IsFailedPrecondition(dir.status())) return out;
  if (!dir.ok()) return dir.status();
  D2_RETURN_IF_ERROR(ListUnder(dir->get(), dir_key, prefix, &out));
  std::sort(out.begin(), out.end(), [](const ArtifactInfo& a, const ArtifactInfo& b) { return a.key < b.key; });
  return out;
}

absl::Status LocalArtifactStore::Delete(const std::string& key) {
  D2_RETURN_IF_ERROR(ValidateArtifactKey(key));
  std::string name;
  const std::vector<std::string> parent_segments = ParentSegments(key, &name);
  std::lock_guard<std::mutex> lock(KeyMutex(key));
  // The file first: a crash in between leaves only sidecars no file matches.
  absl::StatusOr<Fd> parent = WalkDirs(root_fd_, options_.root, parent_segments, WalkMode::kOpen);
  if (parent.ok()) {
    D2_RETURN_IF_ERROR(RemoveTree(parent->get(), name, PathOf(key)));
    D2_RETURN_IF_ERROR(FsyncDir(parent->get(), ParentPath(PathOf(key))));
  } else if (!absl::IsNotFound(parent.status()) && !absl::IsFailedPrecondition(parent.status())) {
    return parent.status();
  }
  absl::StatusOr<Fd> meta_parent =
      WalkDirs(meta_fd_, absl::StrCat(options_.root, "/", kMetaDir), parent_segments, WalkMode::kOpen);
  if (meta_parent.ok()) return RemoveTree(meta_parent->get(), name, MetaPathOf(key));
  // A file in the way in the sidecar tree is a stale sidecar: harmless.
  if (absl::IsNotFound(meta_parent.status()) || absl::IsFailedPrecondition(meta_parent.status())) {
    return absl::OkStatus();
  }
  return meta_parent.status();
}

}  // namespace d2lora::server
