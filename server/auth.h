// Bearer-token check for every RPC of our services (gRPC's health service is
// separate and open, so probes need no secret).
#pragma once

#include <string>

#include <grpcpp/server_context.h>

#include "absl/status/status.h"

namespace d2lora::server {

class TokenAuth {
 public:
  // An empty token turns the check off.
  explicit TokenAuth(std::string token) : token_(std::move(token)) {}
  // UNAUTHENTICATED unless the call carries "authorization: Bearer TOKEN";
  // compared in constant time.
  absl::Status Check(const grpc::ServerContext& context) const;

 private:
  std::string token_;
};

}  // namespace d2lora::server
