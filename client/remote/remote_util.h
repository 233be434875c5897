// What the remote subcommands share: the connection, error reporting (a
// coordinator's refusal exits 3, a local problem 1), flag parsing and JSON.
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/remote/client_config.h"
#include "common/rpc/channel.h"
#include "common/rpc/job_state.h"
#include "d2lora/v1/job_service.grpc.pb.h"

namespace CLI {
class Validator;
}

namespace d2lora::cli {

// A connection to the coordinator's JobService.
struct Remote {
  rpc::ClientOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::JobService::Stub> stub;
  absl::Duration timeout = absl::Seconds(30);
  bool json = false;

  // Token, and for a unary call the deadline (streams have none).
  void Prepare(grpc::ClientContext& context, bool unary = true) const;
};

// Resolves the settings (client_config.h) and makes the channel; errors are local.
absl::StatusOr<Remote> Connect(const ConnectionFlags& flags);

// An error the coordinator answered (or the transport reported), marked so
// that ReportError exits 3 and names its code. `context` prefixes the message.
absl::Status ServerError(const grpc::Status& status, const std::string& context = "");
absl::Status MarkServerError(absl::Status status);
bool IsServerError(const absl::Status& status);

// One unary JobService call with the token and deadline: its answer, or the
// ServerError. `Call(remote, &v1::JobService::Stub::GetJob, request)`.
template <typename Request, typename Response>
absl::StatusOr<Response> Call(const Remote& remote,
                              grpc::Status (v1::JobService::Stub::*method)(grpc::ClientContext*, const Request&,
                                                                          Response*),
                              const Request& request) {
  grpc::ClientContext context;
  remote.Prepare(context);
  Response response;
  const grpc::Status status = ((*remote.stub).*method)(&context, request, &response);
  if (!status.ok()) return ServerError(status);
  return response;
}

// Prints "d2lora COMMAND: error: CODE_NAME: message" (server) or
// "d2lora COMMAND: error: message" (local) and returns kExitServer / kExitError.
int ReportError(const std::string& command, const absl::Status& status);

// Runs a command body and stores its exit code.
void RunCommand(const std::string& command, int* exit_code, const std::function<absl::StatusOr<int>()>& body);

// "k=v" items (--label): keys non-empty, each at most once. Errors name `flag`.
absl::StatusOr<std::map<std::string, std::string>> ParseKeyValues(const std::vector<std::string>& items,
                                                                  const std::string& flag);

// A CLI11 check that a flag's value is KEY=VALUE with a non-empty key.
CLI::Validator KeyValueValidator();
// A CLI11 check that a number is >= 0 (or > 0 when `positive`), with a short message.
CLI::Validator NonNegativeValidator(bool positive = false);

// "running", "RUNNING", "Running" -> RUNNING. Errors list the names.
absl::StatusOr<v1::JobState> ParseJobStateName(const std::string& name);
std::string JobStateName(v1::JobState state);
using rpc::IsTerminal;  // common/rpc/job_state.h

// One line of JSON, field names as in the .proto files.
std::string MessageToJson(const google::protobuf::Message& message);

// Job ids for ListArtifacts/DownloadArtifact: "-" means "" (uploads).
std::string ArtifactJobId(const std::string& id);

}  // namespace d2lora::cli
