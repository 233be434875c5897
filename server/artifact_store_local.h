// The artifact store on a local directory (or a shared volume): the file for
// KEY is ROOT/KEY. The store keeps its own files in two reserved folders that
// no key can name:
//
//   ROOT/.d2lora-tmp/    files being written (one per writer, locked with
//                        flock while its writer lives)
//   ROOT/.d2lora-meta/KEY  the sidecar of KEY: its size, mtime, inode and
//                        SHA-256, so that Stat and List never rehash
//
// Commit: fsync the temporary file, write the sidecar atomically, rename the
// file into place, fsync the folder. A sidecar is trusted only while its size,
// mtime and inode match the file; otherwise (a crash between the two renames,
// a lost or damaged sidecar) Stat rehashes the file and rewrites the sidecar,
// so it never reports a digest that does not match the bytes.
//
// Every path is walked one segment at a time with O_NOFOLLOW from a descriptor
// of ROOT: a symbolic link inside the root is refused (PERMISSION_DENIED),
// never followed out of it.
#pragma once

#include <sys/stat.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/artifact_store.h"

namespace d2lora::server {

class LocalArtifactStore : public ArtifactStore {
 public:
  struct Options {
    std::string root;
    // Larger files fail with RESOURCE_EXHAUSTED while being appended.
    int64_t max_file_bytes = 64LL << 30;
  };

  // Creates `root` (and the reserved folders) when missing, and removes the
  // temporary files of writers that are gone (a crashed process).
  static absl::StatusOr<std::unique_ptr<LocalArtifactStore>> Create(Options options);
  ~LocalArtifactStore() override;

  // The store must outlive its writers.
  absl::StatusOr<std::unique_ptr<ArtifactWriter>> OpenWriter(const std::string& key) override;
  absl::StatusOr<ArtifactInfo> Stat(const std::string& key) override;
  absl::StatusOr<std::string> Read(const std::string& key, int64_t offset, int64_t max_bytes) override;
  // `prefix` is empty or a valid key, optionally followed by "/".
  absl::StatusOr<std::vector<ArtifactInfo>> List(const std::string& prefix) override;
  absl::Status Delete(const std::string& key) override;

  const Options& options() const { return options_; }

 private:
  friend class LocalArtifactWriter;
  LocalArtifactStore(Options options, int root_fd, int tmp_fd, int meta_fd)
      : options_(std::move(options)), root_fd_(root_fd), tmp_fd_(tmp_fd), meta_fd_(meta_fd) {}

  // ROOT/KEY and ROOT/.d2lora-meta/KEY, for messages.
  std::string PathOf(const std::string& key) const;
  std::string MetaPathOf(const std::string& key) const;
  // Commits, deletes and sidecar repairs of one key are serialised (different
  // keys run in parallel): this keeps a sidecar in step with its file without
  // a global lock. Correctness never depends on it (see above).
  std::mutex& KeyMutex(const std::string& key);
  // Opens the regular file of `key` (O_NOFOLLOW all the way) and fstats it.
  absl::StatusOr<int> OpenFile(const std::string& key, struct stat* st);
  // Info of the file of `key`, open as `fd` with fstat `st`: from its sidecar,
  // or by rehashing (and repairing the sidecar) when that does not match.
  absl::StatusOr<ArtifactInfo> InfoOf(const std::string& key, int fd, const struct stat& st);
  // Atomically replaces the sidecar of `key` with one for the file `st`.
  absl::Status WriteSidecar(const std::string& key, const struct stat& st, const std::string& sha256);
  // Creates a new temporary file in ROOT/.d2lora-tmp, open for writing and
  // flock'ed (so that Create() elsewhere knows its writer lives); sets `name`.
  absl::StatusOr<int> CreateTempFile(std::string* name);
  // Fsyncs the temporary file `temp_name` (open as `fd`), writes the sidecar
  // and renames the file into place as `key`.
  absl::StatusOr<ArtifactInfo> CommitFile(const std::string& key, int fd, const std::string& temp_name,
                                          const std::string& sha256);
  absl::Status ListUnder(int dir_fd, const std::string& dir_key, const std::string& prefix,
                         std::vector<ArtifactInfo>* out);

  const Options options_;
  const int root_fd_;
  const int tmp_fd_;
  const int meta_fd_;
  std::array<std::mutex, 64> key_mutexes_;
};

}  // namespace d2lora::server
