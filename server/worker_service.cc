#include "server/worker_service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/rpc/status_convert.h"
#include "common/trainer/output_names.h"
#include "server/artifact_streaming.h"

namespace d2lora::server {
namespace {

constexpr int kMaxLeaseWaitMs = 30000;  // LeaseAssignmentRequest.wait_ms

using rpc::ToGrpcStatus;

// The folder a rank's log goes to (worker/daemon/assignment_runner.cc).
constexpr char kLogsDir[] = "logs";

// What a rank may hand over: the output layout of `d2lora train`
// (common/trainer/output_names.h), its checkpoints and its logs.
bool AllowedArtifactName(const std::string& name) {
  for (const char* folder : trainer::kOutputFolders) {
    if (absl::StartsWith(name, absl::StrCat(folder, "/"))) return true;
  }
  for (const char* folder : {trainer::kCheckpointsDir, kLogsDir}) {
    if (absl::StartsWith(name, absl::StrCat(folder, "/"))) return true;
  }
  for (const char* file : trainer::kOutputFiles) {
    if (name == file) return true;
  }
  return false;
}

std::string AllowedArtifactNames() {
  std::vector<std::string> names;
  for (const char* folder : trainer::kOutputFolders) names.push_back(absl::StrCat(folder, "/"));
  names.push_back(absl::StrCat(trainer::kCheckpointsDir, "/"));
  names.push_back(absl::StrCat(kLogsDir, "/"));
  for (const char* file : trainer::kOutputFiles) names.push_back(file);
  return absl::StrJoin(names, ", ");
}

template <typename Response, typename Call>
grpc::Status Unary(const TokenAuth& auth, grpc::ServerContext& context, const char* method, Response* response,
                   Call call) {
  if (absl::Status s = auth.Authorize(context, method); !s.ok()) return ToGrpcStatus(s);
  auto result = call();
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status WorkerServiceImpl::RegisterWorker(grpc::ServerContext* context, const v1::RegisterWorkerRequest* request,
                                               v1::RegisterWorkerResponse* response) {
  return Unary(*auth_, *context, "d2lora.v1.WorkerService/RegisterWorker", response,
               [&] { return coordinator_->Register(*request); });
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                                          v1::HeartbeatResponse* response) {
  return Unary(*auth_, *context, "d2lora.v1.WorkerService/Heartbeat", response,
               [&] { return coordinator_->Heartbeat(*request); });
}

grpc::Status WorkerServiceImpl::LeaseAssignment(grpc::ServerContext* context, const v1::LeaseAssignmentRequest* request,
                                                v1::LeaseAssignmentResponse* response) {
  return Unary(*auth_, *context, "d2lora.v1.WorkerService/LeaseAssignment", response,
               [&]() -> absl::StatusOr<v1::LeaseAssignmentResponse> {
                 if (request->wait_ms() < 0 || request->wait_ms() > kMaxLeaseWaitMs) {
                   return absl::InvalidArgumentError(
                       absl::StrCat("wait_ms = ", request->wait_ms(), ": must be in [0, ", kMaxLeaseWaitMs, "]"));
                 }
                 return coordinator_->Lease(*request, absl::Milliseconds(request->wait_ms()),
                                            [context] { return context->IsCancelled(); });
               });
}

grpc::Status WorkerServiceImpl::ReportProgress(grpc::ServerContext* context, const v1::ReportProgressRequest* request,
                                               v1::ReportProgressResponse* response) {
  return Unary(*auth_, *context, "d2lora.v1.WorkerService/ReportProgress", response,
               [&] { return coordinator_->Report(*request); });
}

grpc::Status WorkerServiceImpl::DownloadInput(grpc::ServerContext* context, const v1::DownloadInputRequest* request,
                                              grpc::ServerWriter<v1::FileChunk>* writer) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.WorkerService/DownloadInput"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  auto assignment = coordinator_->CheckAssignment(request->worker_id(), request->assignment_id());
  if (!assignment.ok()) return ToGrpcStatus(assignment.status());
  bool listed = false;
  for (const v1::InputFile& in : assignment->inputs()) listed |= in.name() == request->name();
  if (!listed) {
    return ToGrpcStatus(absl::PermissionDeniedError(
        absl::StrCat("name: ", request->name(), " is not an input of assignment ", request->assignment_id())));
  }
  return ToGrpcStatus(StreamArtifact(*artifacts_, request->name(), request->offset(), *context, *writer));
}

grpc::Status WorkerServiceImpl::UploadArtifact(grpc::ServerContext* context,
                                               grpc::ServerReader<v1::UploadArtifactRequest>* reader,
                                               v1::Artifact* response) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.WorkerService/UploadArtifact"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  v1::UploadArtifactRequest message;
  if (!reader->Read(&message) || !message.has_header()) {
    return ToGrpcStatus(absl::InvalidArgumentError("the first message must be the header"));
  }
  const v1::UploadArtifactHeader header = message.header();
  auto assignment = coordinator_->CheckAssignment(header.worker_id(), header.assignment_id());
  if (!assignment.ok()) return ToGrpcStatus(assignment.status());
  if (absl::Status s = ValidateArtifactKey(header.name()); !s.ok()) {
    return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat("header.name: ", s.message())));
  }
  if (!AllowedArtifactName(header.name())) {
    return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
        "header.name: ", header.name(), " is not an artifact (", AllowedArtifactNames(), ")")));
  }
  const std::string key = absl::StrCat("jobs/", assignment->job_id(), "/", header.name());
  auto info = ReceiveArtifact(*artifacts_, key, header.size(), header.sha256(), coordinator_->options().max_upload_bytes,
                              DataParts(reader));
  if (!info.ok()) return ToGrpcStatus(info.status());
  if (absl::Status s = coordinator_->ArtifactStored(*assignment, header.name()); !s.ok()) return ToGrpcStatus(s);
  *response = ToProto(*info, header.name());
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::CompleteAssignment(grpc::ServerContext* context,
                                                   const v1::CompleteAssignmentRequest* request,
                                                   v1::CompleteAssignmentResponse*) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.WorkerService/CompleteAssignment"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  return ToGrpcStatus(coordinator_->Complete(*request));
}

grpc::Status WorkerServiceImpl::FailAssignment(grpc::ServerContext* context, const v1::FailAssignmentRequest* request,
                                               v1::FailAssignmentResponse*) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.WorkerService/FailAssignment"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  return ToGrpcStatus(coordinator_->Fail(*request));
}

grpc::Status WorkerServiceImpl::LeaveWorker(grpc::ServerContext* context, const v1::LeaveWorkerRequest* request,
                                            v1::LeaveWorkerResponse*) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.WorkerService/LeaveWorker"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  return ToGrpcStatus(coordinator_->Leave(*request));
}

}  // namespace d2lora::server
