#include "common/rpc/status_convert.h"

#include <string>

#include "common/status_codes.h"

namespace d2lora::rpc {

// absl and gRPC number their codes the same way (both follow google.rpc.Code).
grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

std::string StatusCodeName(absl::StatusCode code) { return absl::StatusCodeToString(code); }

absl::StatusCode StatusCodeFromName(const std::string& name) {
  return ParseStatusCode(name).value_or(absl::StatusCode::kUnknown);
}

}  // namespace d2lora::rpc
