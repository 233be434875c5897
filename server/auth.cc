#include "server/auth.h"

#include <map>

#include <openssl/crypto.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace d2lora::server {
namespace {

const std::map<std::string, Role, std::less<>>& Policies() {
  static const auto* policies = new std::map<std::string, Role, std::less<>>{
      {"d2lora.v1.JobService/SubmitJob", Role::kFull},
      {"d2lora.v1.JobService/GetJob", Role::kReadOnly},
      {"d2lora.v1.JobService/ListJobs", Role::kReadOnly},
      {"d2lora.v1.JobService/CancelJob", Role::kFull},
      {"d2lora.v1.JobService/PauseJob", Role::kFull},
      {"d2lora.v1.JobService/ResumeJob", Role::kFull},
      {"d2lora.v1.JobService/WatchJob", Role::kReadOnly},
      {"d2lora.v1.JobService/ListArtifacts", Role::kReadOnly},
      {"d2lora.v1.JobService/ListCheckpoints", Role::kReadOnly},
      {"d2lora.v1.JobService/DownloadArtifact", Role::kReadOnly},
      {"d2lora.v1.JobService/UploadFile", Role::kFull},
      // Workers use the full token: they write job state and artifacts.
      {"d2lora.v1.WorkerService/RegisterWorker", Role::kFull},
      {"d2lora.v1.WorkerService/Heartbeat", Role::kFull},
      {"d2lora.v1.WorkerService/LeaseAssignment", Role::kFull},
      {"d2lora.v1.WorkerService/ReportProgress", Role::kFull},
      {"d2lora.v1.WorkerService/DownloadInput", Role::kFull},
      {"d2lora.v1.WorkerService/UploadArtifact", Role::kFull},
      {"d2lora.v1.WorkerService/CompleteAssignment", Role::kFull},
      {"d2lora.v1.WorkerService/FailAssignment", Role::kFull},
      {"d2lora.v1.WorkerService/LeaveWorker", Role::kFull},
  };
  return *policies;
}

bool SameDigest(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

std::optional<Role> RpcRole(absl::string_view method) {
  auto it = Policies().find(method);
  if (it == Policies().end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::unique_ptr<TokenAuth>> TokenAuth::Create(const TokenAuthOptions& options) {
  if (options.token.empty() && !options.read_token.empty()) {
    return absl::InvalidArgumentError("--read-token-file: needs --token-file too (a read-only token alone would leave "
                                      "submit and cancel open)");
  }
  if (!options.read_token.empty() && options.read_token == options.token) {
    return absl::InvalidArgumentError("--read-token-file: the read-only token must differ from --token-file's");
  }
  return std::unique_ptr<TokenAuth>(new TokenAuth(options));
}

TokenAuth::TokenAuth(const TokenAuthOptions& options)
    : enabled_(!options.token.empty()),
      has_read_token_(!options.read_token.empty()),
      full_digest_(Sha256Hex(options.token)),
      read_digest_(Sha256Hex(options.read_token)) {}

absl::Status TokenAuth::Authorize(const grpc::ServerContext& context, absl::string_view method) const {
  const std::optional<Role> needed = RpcRole(method);
  if (!needed) return absl::InternalError(absl::StrCat(method, ": no access policy for this RPC (server/auth.cc)"));
  if (!enabled_) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError("missing \"authorization: Bearer TOKEN\" metadata (--token or D2LORA_TOKEN)");
  }
  const std::string value(it->second.data(), it->second.size());
  static constexpr char kBearer[] = "Bearer ";
  const std::string given = absl::StartsWith(value, kBearer) ? value.substr(sizeof(kBearer) - 1) : std::string();
  // Digests have one length, so the comparison time says nothing about either
  // token; both comparisons always run.
  const std::string got = Sha256Hex(given);
  const bool full = SameDigest(got, full_digest_);
  const bool read = SameDigest(got, read_digest_) && has_read_token_;
  if (!full && !read) return absl::UnauthenticatedError("invalid bearer token");
  if (!full && *needed == Role::kFull) {
    const size_t dot = method.rfind('.', method.find('/'));
    return absl::PermissionDeniedError(absl::StrCat(dot == absl::string_view::npos ? method : method.substr(dot + 1),
                                                    ": not allowed with the read-only token (it may list, get, watch "
                                                    "and download); use the full token"));
  }
  return absl::OkStatus();
}

}  // namespace d2lora::server
