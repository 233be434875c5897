#include "client/remote/remote_util.h"

#include <google/protobuf/util/json_util.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "client/cli_util.h"
#include "common/rpc/status_convert.h"
#include "common/status_macros.h"

namespace d2lora::cli {
namespace {

constexpr char kServerPayload[] = "type.d2lora.dev/cli.server_error";

}  // namespace

void Remote::Prepare(grpc::ClientContext& context, bool unary) const {
  rpc::PrepareContext(context, options, unary ? std::optional<absl::Duration>(timeout) : std::nullopt);
}

absl::StatusOr<Remote> Connect(const ConnectionFlags& flags) {
  Remote remote;
  D2_ASSIGN_OR_RETURN(remote.options, ResolveClientOptions(flags));
  D2_ASSIGN_OR_RETURN(remote.channel, rpc::MakeChannel(remote.options));
  remote.stub = v1::JobService::NewStub(remote.channel);
  remote.timeout = absl::Seconds(flags.timeout_seconds);
  remote.json = flags.json;
  return remote;
}

absl::Status MarkServerError(absl::Status status) {
  if (!status.ok()) status.SetPayload(kServerPayload, absl::Cord("1"));
  return status;
}

absl::Status ServerError(const grpc::Status& status, const std::string& context) {
  const absl::Status converted = rpc::FromGrpcStatus(status);
  return MarkServerError(absl::Status(converted.code(), absl::StrCat(context, converted.message())));
}

bool IsServerError(const absl::Status& status) { return status.GetPayload(kServerPayload).has_value(); }

int ReportError(const std::string& command, const absl::Status& status) {
  // The same words as cli_util's Fail (not linked here, to keep this file free of the engine).
  std::cerr << "d2lora " << command << ": error: ";
  if (!IsServerError(status)) {
    std::cerr << status.message() << std::endl;
    return kExitError;
  }
  std::cerr << rpc::StatusCodeName(status.code()) << ": " << status.message() << std::endl;
  return kExitServer;
}

void RunCommand(const std::string& command, int* exit_code, const std::function<absl::StatusOr<int>()>& body) {
  absl::StatusOr<int> result = body();
  *exit_code = result.ok() ? *result : ReportError(command, result.status());
}

absl::StatusOr<std::map<std::string, std::string>> ParseKeyValues(const std::vector<std::string>& items,
                                                                  const std::string& flag) {
  std::map<std::string, std::string> out;
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " \"", item, "\": expected KEY=VALUE"));
    }
    const std::string key = item.substr(0, eq);
    if (!out.emplace(key, item.substr(eq + 1)).second) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " ", key, ": given more than once"));
    }
  }
  return out;
}

CLI::Validator KeyValueValidator() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        const size_t eq = value.find('=');
        return eq == std::string::npos || eq == 0 ? "expected KEY=VALUE, got \"" + value + "\"" : "";
      },
      "KEY=VALUE");
}

CLI::Validator NonNegativeValidator(bool positive) {
  return CLI::Validator(
      [positive](std::string& value) -> std::string {
        double number = 0;
        if (!CLI::detail::lexical_cast(value, number)) return "expected a number, got \"" + value + "\"";
        if (positive ? number <= 0 : number < 0) return std::string("must be ") + (positive ? "> 0" : ">= 0");
        return "";
      },
      positive ? "> 0" : ">= 0");
}

absl::StatusOr<v1::JobState> ParseJobStateName(const std::string& name) {
  v1::JobState state;
  const std::string upper = absl::AsciiStrToUpper(name);
  if (upper != "JOB_STATE_UNSPECIFIED" && v1::JobState_Parse(upper, &state)) return state;
  return absl::InvalidArgumentError(absl::StrCat("--state ", name,
                                                 ": expected one of queued, scheduled, running, succeeded, "
                                                 "failed, cancelled"));
}

std::string JobStateName(v1::JobState state) {
  const std::string& name = v1::JobState_Name(state);
  return name.empty() ? absl::StrCat("STATE_", static_cast<int>(state)) : name;
}


std::string MessageToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  const auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) return absl::StrCat("{\"error\":\"cannot print ", message.GetTypeName(), " as JSON\"}");
  return out;
}

std::string ArtifactJobId(const std::string& id) { return id == "-" ? "" : id; }

}  // namespace d2lora::cli
