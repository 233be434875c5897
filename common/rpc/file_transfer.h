// Files over gRPC streams, both directions, in 1 MiB pieces with SHA-256 end to
// end. Downloads land under a temporary name and appear only when complete and
// verified; an interrupted download resumes from the bytes already received.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "d2lora/v1/job.pb.h"

namespace d2lora::rpc {

inline constexpr int64_t kChunkBytes = 1 << 20;

struct FileDigest {
  int64_t size = 0;
  std::string sha256;
};

// Opens a download stream starting at `offset`, on a context the caller has
// prepared (token, deadline).
using OpenDownload = std::function<std::unique_ptr<grpc::ClientReaderInterface<v1::FileChunk>>(
    grpc::ClientContext& context, int64_t offset)>;
using PrepareContextFn = std::function<void(grpc::ClientContext&)>;

// Downloads into `path` (parents created). Bytes go to PATH.part first; a
// PATH.part left by an interrupted download is continued. The finished file is
// checked against the sha256 the server announced, then renamed into place.
absl::StatusOr<FileDigest> DownloadFile(const OpenDownload& open, const PrepareContextFn& prepare,
                                        const std::string& path);

// Reads the file at `path` in pieces and hands each to `write` (false = the
// stream broke). Returns size and digest of what was sent.
absl::StatusOr<FileDigest> SendFileData(const std::string& path,
                                        const std::function<bool(const std::string& data)>& write);

}  // namespace d2lora::rpc
