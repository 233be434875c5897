// absl::Status <-> grpc::Status. ToGrpcStatus is the one place a server turns
// an error into what goes on the wire; FromGrpcStatus is the client's way back.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace d2lora::rpc {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// "INVALID_ARGUMENT" etc., for job errors and logs.
std::string StatusCodeName(absl::StatusCode code);
absl::StatusCode StatusCodeFromName(const std::string& name);  // kUnknown if not a name

}  // namespace d2lora::rpc
