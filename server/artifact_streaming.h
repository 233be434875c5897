// Artifact bytes over gRPC streams, for JobService and WorkerService alike.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <grpcpp/server_context.h>
#include <grpcpp/support/sync_stream.h>

#include "absl/status/statusor.h"
#include "d2lora/v1/job.pb.h"
#include "server/artifact_store.h"

namespace d2lora::server {

// Streams the artifact `key` from `offset`: the first chunk carries size and
// sha256 (a single empty chunk when offset == size). OUT_OF_RANGE past the end.
absl::Status StreamArtifact(ArtifactStore& store, const std::string& key, int64_t offset,
                            grpc::ServerContext& context, grpc::ServerWriterInterface<v1::FileChunk>& writer);

// Receives exactly `size` bytes (pulled with `next`, which returns false at the
// end of the stream) into `key` and commits them if they match `sha256` (when
// given). A short, long or broken stream stores nothing.
absl::StatusOr<ArtifactInfo> ReceiveArtifact(ArtifactStore& store, const std::string& key, int64_t size,
                                             const std::string& sha256, int64_t max_bytes,
                                             const std::function<bool(std::string* data)>& next);

// The data parts of a client stream whose header was read (for ReceiveArtifact).
template <typename Request>
std::function<bool(std::string* data)> DataParts(grpc::ServerReaderInterface<Request>* reader) {
  return [reader](std::string* data) {
    Request next;
    while (reader->Read(&next)) {
      if (next.has_data()) {
        *data = std::move(*next.mutable_data());
        return true;
      }
    }
    return false;
  };
}

v1::Artifact ToProto(const ArtifactInfo& info, const std::string& name);

}  // namespace d2lora::server
