#include "server/artifact_store_memory.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace d2lora::server {
namespace {

absl::Status ValidatePrefix(const std::string& prefix) {
  if (prefix.empty()) return absl::OkStatus();
  return ValidateArtifactKey(absl::StripSuffix(prefix, "/"));
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// The bytes being written, held (and counted against the capacity) until
// Commit() moves them into the store.
class MemoryArtifactWriter : public ArtifactWriter {
 public:
  MemoryArtifactWriter(MemoryArtifactStore* store, std::string key) : store_(store), key_(std::move(key)) {}
  ~MemoryArtifactWriter() override { Discard(); }

  absl::Status Append(absl::string_view data) override {
    D2_RETURN_IF_ERROR(CheckOpen());
    absl::Status reserved = store_->Reserve(key_, static_cast<int64_t>(data.size()));
    if (!reserved.ok()) return Fail(reserved);
    reserved_ += static_cast<int64_t>(data.size());
    data_.append(data.data(), data.size());
    return absl::OkStatus();
  }

  absl::StatusOr<ArtifactInfo> Commit(const std::string& expected_sha256) override {
    D2_RETURN_IF_ERROR(CheckOpen());
    std::string sha256 = Sha256Hex(data_);
    if (!expected_sha256.empty() && !absl::EqualsIgnoreCase(expected_sha256, sha256)) {
      return Fail(absl::DataLossError(absl::StrCat("artifact ", key_, ": SHA-256 mismatch: expected ",
                                                   expected_sha256, ", got ", sha256, " (", data_.size(),
                                                   " bytes)")));
    }
    absl::StatusOr<ArtifactInfo> info = store_->Put(key_, std::move(data_), std::move(sha256));
    if (!info.ok()) return Fail(info.status());
    reserved_ = 0;  // now the committed file's bytes
    done_ = true;
    return info;
  }

 private:
  absl::Status CheckOpen() const {
    if (!status_.ok()) return status_;
    if (done_) return absl::FailedPreconditionError(absl::StrCat("artifact ", key_, ": already committed"));
    return absl::OkStatus();
  }
  absl::Status Fail(absl::Status status) {
    Discard();
    status_ = status;
    return status;
  }
  void Discard() {
    store_->Release(reserved_);
    reserved_ = 0;
    std::string().swap(data_);
  }

  MemoryArtifactStore* const store_;
  const std::string key_;
  std::string data_;
  int64_t reserved_ = 0;
  bool done_ = false;
  absl::Status status_;
};

absl::Status MemoryArtifactStore::CheckShape(const std::string& key) const {
  for (size_t slash = key.find('/'); slash != std::string::npos; slash = key.find('/', slash + 1)) {
    if (files_.count(key.substr(0, slash)) > 0) {
      return absl::FailedPreconditionError(absl::StrCat("artifact ", key.substr(0, slash), ": is a file, not a folder"));
    }
  }
  auto below = files_.lower_bound(key + "/");
  if (below != files_.end() && absl::StartsWith(below->first, key + "/")) {
    return absl::FailedPreconditionError(absl::StrCat("artifact ", key, ": is a folder, not a file"));
  }
  return absl::OkStatus();
}

absl::Status MemoryArtifactStore::Reserve(const std::string& key, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (options_.capacity_bytes >= 0 && bytes > options_.capacity_bytes - used_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat("artifact ", key, ": the store is full (", used_bytes_, " of ",
                                                     options_.capacity_bytes, " bytes in use)"));
  }
  used_bytes_ += bytes;
  return absl::OkStatus();
}

void MemoryArtifactStore::Release(int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  used_bytes_ -= bytes;
}

int64_t MemoryArtifactStore::used_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_bytes_;
}

absl::StatusOr<ArtifactInfo> MemoryArtifactStore::Put(const std::string& key, std::string data, std::string sha256) {
  std::lock_guard<std::mutex> lock(mu_);
  D2_RETURN_IF_ERROR(CheckShape(key));
  File& file = files_[key];
  used_bytes_ -= static_cast<int64_t>(file.data.size());  // the replaced file's bytes
  file.info = ArtifactInfo{key, static_cast<int64_t>(data.size()), std::move(sha256), NowMs(), {}};
  file.data = std::move(data);
  return file.info;
}

absl::StatusOr<std::unique_ptr<ArtifactWriter>> MemoryArtifactStore::OpenWriter(const std::string& key) {
  D2_RETURN_IF_ERROR(ValidateArtifactKey(key));
  {
    std::lock_guard<std::mutex> lock(mu_);
    D2_RETURN_IF_ERROR(CheckShape(key));
  }
  return std::unique_ptr<ArtifactWriter>(new MemoryArtifactWriter(this, key));
}

absl::StatusOr<ArtifactInfo> MemoryArtifactStore::Stat(const std::string& key) {
  D2_RETURN_IF_ERROR(ValidateArtifactKey(key));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(key);
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("artifact ", key, ": no such artifact"));
  return it->second.info;
}

absl::StatusOr<std::string> MemoryArtifactStore::Read(const std::string& key, int64_t offset, int64_t max_bytes) {
  D2_RETURN_IF_ERROR(ValidateArtifactKey(key));
  if (offset < 0 || max_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("artifact ", key, ": negative offset or length (", offset, ", ", max_bytes, ")"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(key);
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("artifact ", key, ": no such artifact"));
  const std::string& data = it->second.data;
  if (offset >= static_cast<int64_t>(data.size())) return std::string();
  return data.substr(static_cast<size_t>(offset), static_cast<size_t>(std::min<int64_t>(max_bytes, data.size())));
}

absl::StatusOr<std::vector<ArtifactInfo>> MemoryArtifactStore::List(const std::string& prefix) {
  D2_RETURN_IF_ERROR(ValidatePrefix(prefix));
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ArtifactInfo> out;
  for (auto it = files_.lower_bound(prefix); it != files_.end() && absl::StartsWith(it->first, prefix); ++it) {
    out.push_back(it->second.info);
  }
  return out;
}

absl::Status MemoryArtifactStore::Delete(const std::string& key) {
  D2_RETURN_IF_ERROR(ValidateArtifactKey(key));
  std::lock_guard<std::mutex> lock(mu_);
  auto erase = [this](std::map<std::string, File>::iterator it) {
    used_bytes_ -= static_cast<int64_t>(it->second.data.size());
    return files_.erase(it);
  };
  if (auto it = files_.find(key); it != files_.end()) erase(it);
  const std::string folder = key + "/";
  for (auto it = files_.lower_bound(folder); it != files_.end() && absl::StartsWith(it->first, folder);) it = erase(it);
  return absl::OkStatus();
}

}  // namespace d2lora::server
