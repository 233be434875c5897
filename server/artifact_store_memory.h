// The artifact store in memory, for tests of the code that uses one: the same
// semantics as the local store (atomic commits, SHA-256, key checks, files and
// folders that cannot share a name), and an optional capacity to play a full
// store.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/artifact_store.h"

namespace d2lora::server {

class MemoryArtifactStore : public ArtifactStore {
 public:
  struct Options {
    // Bytes of committed files plus bytes held by open writers (as temporary
    // files hold disk space); past it, Append is RESOURCE_EXHAUSTED. < 0: no limit.
    int64_t capacity_bytes = -1;
  };

  MemoryArtifactStore() : MemoryArtifactStore(Options()) {}
  explicit MemoryArtifactStore(Options options) : options_(options) {}

  // The store must outlive its writers.
  absl::StatusOr<std::unique_ptr<ArtifactWriter>> OpenWriter(const std::string& key) override;
  absl::StatusOr<ArtifactInfo> Stat(const std::string& key) override;
  absl::StatusOr<std::string> Read(const std::string& key, int64_t offset, int64_t max_bytes) override;
  // `prefix` is empty or a valid key, optionally followed by "/".
  absl::StatusOr<std::vector<ArtifactInfo>> List(const std::string& prefix) override;
  absl::Status Delete(const std::string& key) override;

  // Bytes in use, as counted against the capacity.
  int64_t used_bytes() const;

 private:
  friend class MemoryArtifactWriter;
  struct File {
    std::string data;
    ArtifactInfo info;
  };

  // FAILED_PRECONDITION when `key` names a folder or lies below a file. Needs mu_.
  absl::Status CheckShape(const std::string& key) const;
  absl::Status Reserve(const std::string& key, int64_t bytes);
  void Release(int64_t bytes);
  absl::StatusOr<ArtifactInfo> Put(const std::string& key, std::string data, std::string sha256);

  const Options options_;
  mutable std::mutex mu_;
  std::map<std::string, File> files_;  // sorted, for List
  int64_t used_bytes_ = 0;
};

}  // namespace d2lora::server
