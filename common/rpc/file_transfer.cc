#include "common/rpc/file_transfer.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/rpc/status_convert.h"
#include "common/sha256.h"

namespace d2lora::rpc {
namespace fs = std::filesystem;

namespace {

// The digest of what PATH.part already holds, to continue it.
absl::StatusOr<FileDigest> DigestPartial(const std::string& part, Sha256Hasher& hasher) {
  FileDigest digest;
  std::error_code ec;
  if (!fs::exists(part, ec)) return digest;
  std::ifstream in(part, std::ios::binary);
  if (!in) return ErrnoError("cannot read", part);
  std::vector<char> buf(kChunkBytes);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    hasher.Update(absl::string_view(buf.data(), static_cast<size_t>(n)));
    digest.size += n;
  }
  return digest;
}

}  // namespace

absl::StatusOr<FileDigest> DownloadFile(const OpenDownload& open, const PrepareContextFn& prepare,
                                        const std::string& path) {
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", parent.string(), ": ", ec.message()));
  const std::string part = path + ".part";
  Sha256Hasher hasher;
  auto have = DigestPartial(part, hasher);
  if (!have.ok()) return have.status();
  int64_t offset = have->size;

  grpc::ClientContext context;
  prepare(context);
  auto reader = open(context, offset);
  std::ofstream out(part, std::ios::binary | std::ios::app);
  if (!out) return ErrnoError("cannot write", part);
  v1::FileChunk chunk;
  int64_t size = -1;
  std::string expected;
  while (reader->Read(&chunk)) {
    if (size < 0) {
      size = chunk.size();
      expected = chunk.sha256();
    }
    if (chunk.offset() != offset) {
      return absl::DataLossError(absl::StrCat("download of ", path, ": got bytes at ", chunk.offset(),
                                              ", expected ", offset));
    }
    out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    if (!out) return ErrnoError("cannot write", part);
    hasher.Update(chunk.data());
    offset += static_cast<int64_t>(chunk.data().size());
  }
  out.close();
  if (!out) return ErrnoError("cannot write", part);
  const grpc::Status status = reader->Finish();
  if (!status.ok()) {
    absl::Status error = FromGrpcStatus(status);
    return absl::Status(error.code(), absl::StrCat("download of ", path, ": ", error.message()));
  }
  if (size < 0) size = offset;  // an empty tail: the file was already complete
  if (offset != size) {
    return absl::DataLossError(absl::StrCat("download of ", path, ": stream ended at ", offset, " of ", size,
                                            " bytes (run again to continue)"));
  }
  FileDigest digest{offset, hasher.HexDigest()};
  if (!expected.empty() && digest.sha256 != expected) {
    fs::remove(part, ec);
    return absl::DataLossError(absl::StrCat("download of ", path, ": sha256 ", digest.sha256,
                                            " does not match the server's ", expected));
  }
  if (absl::Status synced = SyncPath(part); !synced.ok()) return synced;
  fs::rename(part, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot rename ", part, " to ", path, ": ", ec.message()));
  return digest;
}

absl::StatusOr<FileDigest> SendFileData(const std::string& path,
                                        const std::function<bool(const std::string& data)>& write) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError("cannot open", path);
  Sha256Hasher hasher;
  FileDigest digest;
  std::string buf(kChunkBytes, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    const std::string data = buf.substr(0, static_cast<size_t>(n));
    hasher.Update(data);
    digest.size += n;
    if (!write(data)) return absl::UnavailableError(absl::StrCat("upload of ", path, ": the stream broke"));
  }
  if (in.bad()) return ErrnoError("cannot read", path);
  digest.sha256 = hasher.HexDigest();
  return digest;
}

}  // namespace d2lora::rpc
