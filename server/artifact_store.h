// Where jobs' files live: adapters, merged models, checkpoints, metrics, logs,
// and the files users upload. Keys are relative paths of safe segments:
//
//   jobs/<job_id>/adapter/adapter_model.safetensors
//   jobs/<job_id>/checkpoints/step-50/trainer_state.json
//   uploads/<upload_id>/train.jsonl
//
// Every file is written atomically (it appears under its key only once
// Commit() succeeded, complete and fsynced) and carries its SHA-256.
// Implementations: artifact_store_local.h (a directory; the default, and a
// shared volume in Kubernetes), artifact_store_memory.h (tests).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace d2lora::server {

struct ArtifactInfo {
  std::string key;
  int64_t size = 0;
  std::string sha256;
  int64_t mtime_ms = 0;  // unix milliseconds of the commit
  // Set (List only) when the file no longer is what was committed: what
  // changed. Stat of such a file is DATA_LOSS with the same words.
  std::string damaged;
};

// One file being written. Destroying it without Commit() discards the bytes.
class ArtifactWriter {
 public:
  virtual ~ArtifactWriter() = default;
  // RESOURCE_EXHAUSTED when the store is full (or the file exceeds its limit).
  virtual absl::Status Append(absl::string_view data) = 0;
  // Makes the file visible under its key, replacing an older one. With
  // `expected_sha256` non-empty, a mismatch is DATA_LOSS and nothing changes.
  virtual absl::StatusOr<ArtifactInfo> Commit(const std::string& expected_sha256 = "") = 0;
};

class ArtifactStore {
 public:
  virtual ~ArtifactStore() = default;

  virtual absl::StatusOr<std::unique_ptr<ArtifactWriter>> OpenWriter(const std::string& key) = 0;
  // NOT_FOUND for a missing key; DATA_LOSS for a file changed since its commit.
  virtual absl::StatusOr<ArtifactInfo> Stat(const std::string& key) = 0;
  // Up to `max_bytes` from `offset` (fewer at the end; empty at or past it).
  virtual absl::StatusOr<std::string> Read(const std::string& key, int64_t offset, int64_t max_bytes) = 0;
  // Every file whose key starts with `prefix`, sorted by key; damaged ones
  // too, with `damaged` set.
  virtual absl::StatusOr<std::vector<ArtifactInfo>> List(const std::string& prefix) = 0;
  // Removes the file `key`, or every file under the folder `key` + "/".
  // Removing nothing is OK.
  virtual absl::Status Delete(const std::string& key) = 0;
};

// INVALID_ARGUMENT unless `key` is 1..1024 bytes of "/"-separated segments,
// each 1..255 bytes of [A-Za-z0-9._-], none "." or "..", no leading "/" and no
// segment starting with ".d2lora" (reserved for the store's own files).
absl::Status ValidateArtifactKey(absl::string_view key);

}  // namespace d2lora::server
