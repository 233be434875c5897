#include "client/remote/uploads.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/file_transfer.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace d2lora::cli {
namespace fs = std::filesystem;

absl::StatusOr<std::vector<std::string>> ListRegularFiles(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return absl::NotFoundError(absl::StrCat(dir, ": not a directory"));
  std::string base = dir;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::vector<std::string> names;
  fs::recursive_directory_iterator it(base, fs::directory_options::none, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::error_code stat_ec;
    if (!fs::is_regular_file(it->path(), stat_ec)) continue;  // follows links to files, not to folders
    names.push_back(it->path().lexically_relative(base).generic_string());
  }
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  std::sort(names.begin(), names.end());
  return names;
}

std::string UploadName(const std::string& file_name) {
  std::string out = file_name;
  for (char& c : out) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  }
  return out;
}

absl::StatusOr<v1::UploadFileResponse> UploadOneFile(const Remote& remote, const std::string& path,
                                                     const std::string& name, const std::string& upload_id) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", ec.message()));
  D2_ASSIGN_OR_RETURN(std::string sha256, Sha256File(path));

  grpc::ClientContext context;
  remote.Prepare(context, /*unary=*/false);
  v1::UploadFileResponse response;
  auto writer = remote.stub->UploadFile(&context, &response);
  v1::UploadFileRequest header;
  header.mutable_header()->set_name(name);
  header.mutable_header()->set_upload_id(upload_id);
  header.mutable_header()->set_size(static_cast<int64_t>(size));
  header.mutable_header()->set_sha256(sha256);
  if (writer->Write(header)) {
    auto sent = rpc::SendFileData(path, [&writer](const std::string& data) {
      v1::UploadFileRequest request;
      request.set_data(data);
      return writer->Write(request);
    });
    // A broken stream is explained by Finish(); a local problem is ours.
    absl::Status local;
    if (!sent.ok() && sent.status().code() != absl::StatusCode::kUnavailable) {
      local = sent.status();
    } else if (sent.ok() && (sent->size != static_cast<int64_t>(size) || sent->sha256 != sha256)) {
      local = absl::AbortedError(absl::StrCat(path, " changed while it was being uploaded"));
    }
    if (!local.ok()) {
      context.TryCancel();
      writer->Finish();
      return local;
    }
    writer->WritesDone();
  }
  const grpc::Status status = writer->Finish();
  if (!status.ok()) return ServerError(status, absl::StrCat("upload of ", path, ": "));
  return response;
}

absl::StatusOr<UploadedFolder> UploadFolder(const Remote& remote, const std::string& dir,
                                            const std::string& upload_id) {
  D2_ASSIGN_OR_RETURN(std::vector<std::string> names, ListRegularFiles(dir));
  if (names.empty()) return absl::InvalidArgumentError(absl::StrCat(dir, ": no files to upload"));
  UploadedFolder folder;
  folder.upload_id = upload_id;
  for (const std::string& name : names) {
    D2_ASSIGN_OR_RETURN(v1::UploadFileResponse response,
                        UploadOneFile(remote, (fs::path(dir) / name).string(), name, folder.upload_id));
    folder.upload_id = response.upload_id();
    folder.bytes += response.file().size();
    folder.files.push_back(std::move(response));
  }
  return folder;
}

}  // namespace d2lora::cli
