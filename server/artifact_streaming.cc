#include "server/artifact_streaming.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"

namespace d2lora::server {

constexpr int64_t kChunk = 1 << 20;

absl::Status StreamArtifact(ArtifactStore& store, const std::string& key, int64_t offset,
                            grpc::ServerContext& context, grpc::ServerWriterInterface<v1::FileChunk>& writer) {
  auto info = store.Stat(key);
  if (!info.ok()) return info.status();
  if (offset < 0 || offset > info->size) {
    return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is outside the file (", info->size, " bytes)"));
  }
  bool first = true;
  while (first || offset < info->size) {
    if (context.IsCancelled()) return absl::CancelledError("the client went away");
    auto data = store.Read(key, offset, kChunk);
    if (!data.ok()) return data.status();
    v1::FileChunk chunk;
    chunk.set_offset(offset);
    if (first) {
      chunk.set_size(info->size);
      chunk.set_sha256(info->sha256);
      first = false;
    }
    offset += static_cast<int64_t>(data->size());
    *chunk.mutable_data() = *std::move(data);
    if (!writer.Write(chunk)) return absl::CancelledError("the client went away");
    if (chunk.data().empty() && offset < info->size) return absl::DataLossError(absl::StrCat(key, " shrank while being read"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ArtifactInfo> ReceiveArtifact(ArtifactStore& store, const std::string& key, int64_t size,
                                             const std::string& sha256, int64_t max_bytes,
                                             const std::function<bool(std::string* data)>& next) {
  if (size < 0) return absl::InvalidArgumentError(absl::StrCat("header.size = ", size, ": must be >= 0"));
  if (size > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("header.size = ", size, ": larger than the limit of ", max_bytes, " bytes"));
  }
  if (!sha256.empty() && (sha256.size() != 64 || sha256.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    return absl::InvalidArgumentError("header.sha256: expected 64 lower-case hex digits");
  }
  auto writer = store.OpenWriter(key);
  if (!writer.ok()) return writer.status();
  int64_t received = 0;
  std::string data;
  while (next(&data)) {
    received += static_cast<int64_t>(data.size());
    if (received > size) {
      return absl::InvalidArgumentError(absl::StrCat("more bytes than header.size = ", size, "; nothing stored"));
    }
    if (absl::Status s = (*writer)->Append(data); !s.ok()) return s;
  }
  if (received != size) {
    return absl::InvalidArgumentError(absl::StrCat("the stream ended after ", received, " of ", size,
                                                   " bytes; nothing stored"));
  }
  return (*writer)->Commit(sha256);
}

v1::Artifact ToProto(const ArtifactInfo& info, const std::string& name) {
  v1::Artifact a;
  a.set_name(name);
  a.set_size(info.size);
  a.set_sha256(info.sha256);
  *a.mutable_update_time() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(info.mtime_ms);
  a.set_damaged(info.damaged);
  return a;
}

}  // namespace d2lora::server
