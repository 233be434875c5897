// Bearer tokens and roles for every RPC of our services (gRPC's health service
// is separate and open, so probes need no secret). Two roles: the full token
// may call everything; the read-only token may list, get, watch and download
// but not submit, cancel, upload or act as a worker. Each RPC's decision lives
// in one table (RpcRole); a method without an entry is refused, and a test
// walks the service descriptors to see that every method has one.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace d2lora::server {

enum class Role { kReadOnly, kFull };

// The role an RPC needs, by its full name ("d2lora.v1.JobService/SubmitJob");
// nullopt for a method the table does not know.
std::optional<Role> RpcRole(absl::string_view method);

struct TokenAuthOptions {
  std::string token;       // the full token; "" = no authentication at all
  std::string read_token;  // the read-only token; "" = none (needs `token`, and must differ from it)
};

class TokenAuth {
 public:
  static absl::StatusOr<std::unique_ptr<TokenAuth>> Create(const TokenAuthOptions& options);

  // For `method` (a full name, see RpcRole): UNAUTHENTICATED unless the call
  // carries "authorization: Bearer TOKEN" with a known token (each compared in
  // constant time); PERMISSION_DENIED, naming the RPC, when the token's role is
  // below what the RPC needs; INTERNAL for a method RpcRole does not know.
  absl::Status Authorize(const grpc::ServerContext& context, absl::string_view method) const;

 private:
  explicit TokenAuth(const TokenAuthOptions& options);

  bool enabled_ = false;
  bool has_read_token_ = false;
  std::string full_digest_, read_digest_;  // SHA-256 of the tokens: equal lengths for the comparison
};

}  // namespace d2lora::server
