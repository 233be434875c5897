#include "worker/daemon/artifact_transfer.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/rpc/file_transfer.h"
#include "common/rpc/status_convert.h"
#include "common/sha256.h"
#include "common/trainer/output_names.h"

namespace d2lora::worker {
namespace fs = std::filesystem;

namespace {

using trainer::kTrainerStateFile;

// A download stream that tells the hook when it goes away (before its context does).
class HookedReader : public grpc::ClientReaderInterface<v1::FileChunk> {
 public:
  HookedReader(std::unique_ptr<grpc::ClientReaderInterface<v1::FileChunk>> inner, CallHook hook)
      : inner_(std::move(inner)), hook_(std::move(hook)) {}
  ~HookedReader() override {
    if (hook_) hook_(nullptr);
  }
  bool NextMessageSize(uint32_t* size) override { return inner_->NextMessageSize(size); }
  bool Read(v1::FileChunk* chunk) override { return inner_->Read(chunk); }
  void WaitForInitialMetadata() override { inner_->WaitForInitialMetadata(); }
  grpc::Status Finish() override { return inner_->Finish(); }

 private:
  std::unique_ptr<grpc::ClientReaderInterface<v1::FileChunk>> inner_;
  CallHook hook_;
};

// Does the file at `path` have this size and (when given) sha256?
bool Matches(const std::string& path, int64_t size, const std::string& sha256) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  const auto actual_size = fs::file_size(path, ec);
  if (ec || static_cast<int64_t>(actual_size) != size) return false;
  if (sha256.empty()) return true;
  auto digest = Sha256File(path);
  return digest.ok() && *digest == sha256;
}

}  // namespace

absl::Status DownloadInput(const CoordinatorClient& client, const TransferTarget& target, const v1::InputFile& input,
                           const std::string& path, const CallHook& hook) {
  if (Matches(path, input.size(), input.sha256())) return absl::OkStatus();
  auto open = [&](grpc::ClientContext& context,
                  int64_t offset) -> std::unique_ptr<grpc::ClientReaderInterface<v1::FileChunk>> {
    v1::DownloadInputRequest request;
    request.set_worker_id(target.worker_id);
    request.set_assignment_id(target.assignment_id);
    request.set_name(input.name());
    request.set_offset(offset);
    if (hook) hook(&context);
    return std::make_unique<HookedReader>(client.stub->DownloadInput(&context, request), hook);
  };
  auto prepare = [&](grpc::ClientContext& context) { client.Prepare(context, TransferTimeout(input.size())); };
  absl::StatusOr<rpc::FileDigest> digest = rpc::DownloadFile(open, prepare, path);
  if (!digest.ok()) return digest.status();
  const bool size_ok = input.size() <= 0 || digest->size == input.size();
  const bool sha_ok = input.sha256().empty() || digest->sha256 == input.sha256();
  if (!size_ok || !sha_ok) {
    std::error_code ec;
    fs::remove(path, ec);
    return absl::DataLossError(absl::StrCat("input ", input.name(), ": received ", digest->size, " bytes with sha256 ",
                                            digest->sha256, ", the assignment announced ", input.size(),
                                            " bytes with sha256 ", input.sha256()));
  }
  return absl::OkStatus();
}

absl::Status UploadArtifact(const CoordinatorClient& client, const TransferTarget& target, const std::string& path,
                            const std::string& name, const CallHook& hook) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  // Local trouble is FAILED_PRECONDITION: NOT_FOUND is the coordinator's word.
  if (ec) return absl::FailedPreconditionError(absl::StrCat("upload of ", name, ": ", path, ": ", ec.message()));
  absl::StatusOr<std::string> sha256 = Sha256File(path);
  if (!sha256.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("upload of ", name, ": ", sha256.status().message()));
  }

  grpc::ClientContext context;
  client.Prepare(context, TransferTimeout(static_cast<int64_t>(size)));
  if (hook) hook(&context);
  struct Unhook {
    const CallHook& hook;
    ~Unhook() {
      if (hook) hook(nullptr);
    }
  } unhook{hook};

  v1::Artifact response;
  std::unique_ptr<grpc::ClientWriterInterface<v1::UploadArtifactRequest>> writer =
      client.stub->UploadArtifact(&context, &response);
  v1::UploadArtifactRequest header;
  v1::UploadArtifactHeader* h = header.mutable_header();
  h->set_worker_id(target.worker_id);
  h->set_assignment_id(target.assignment_id);
  h->set_name(name);
  h->set_size(static_cast<int64_t>(size));
  h->set_sha256(*sha256);
  absl::StatusOr<rpc::FileDigest> sent = absl::UnavailableError("the stream broke before the first byte");
  if (writer->Write(header)) {
    sent = rpc::SendFileData(path, [&](const std::string& data) {
      v1::UploadArtifactRequest piece;
      piece.set_data(data);
      return writer->Write(piece);
    });
    writer->WritesDone();
  }
  const grpc::Status status = writer->Finish();
  if (!status.ok()) {
    const absl::Status error = rpc::FromGrpcStatus(status);
    return absl::Status(error.code(), absl::StrCat("upload of ", name, ": ", error.message()));
  }
  if (!sent.ok()) {
    if (sent.status().code() == absl::StatusCode::kUnavailable) return sent.status();
    return absl::FailedPreconditionError(absl::StrCat("upload of ", name, ": ", sent.status().message()));
  }
  if (sent->size != static_cast<int64_t>(size) || sent->sha256 != *sha256) {
    return absl::DataLossError(absl::StrCat("upload of ", name, ": ", path, " changed while it was sent"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> FilesToUpload(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
    if (it->is_regular_file(ec)) files.push_back(fs::relative(it->path(), dir, ec).generic_string());
  }
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  auto is_state = [](const std::string& f) { return fs::path(f).filename() == kTrainerStateFile; };
  std::sort(files.begin(), files.end(), [&](const std::string& a, const std::string& b) {
    const bool sa = is_state(a), sb = is_state(b);
    if (sa != sb) return sb;  // trainer_state.json after everything else
    return a < b;
  });
  return files;
}

bool IsSafeRelativePath(const std::string& path) {
  if (path.empty() || path.front() == '/') return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "." || part == "..") return false;
  }
  return true;
}

}  // namespace d2lora::worker
