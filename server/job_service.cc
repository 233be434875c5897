#include "server/job_service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/status_convert.h"
#include "common/status_macros.h"
#include "server/artifact_streaming.h"
#include "server/job_ids.h"
#include "server/submit_check.h"

namespace d2lora::server {
namespace {

using rpc::ToGrpcStatus;

// The store key of a job's artifact, or of an upload (job_id "").
absl::StatusOr<std::string> ArtifactKey(Coordinator& coordinator, const std::string& job_id, const std::string& name) {
  if (absl::Status s = ValidateArtifactKey(name); !s.ok()) return absl::InvalidArgumentError(absl::StrCat("name: ", s.message()));
  if (job_id.empty()) {
    if (!absl::StartsWith(name, "uploads/")) {
      return absl::InvalidArgumentError("job_id: required (or name \"uploads/ID/NAME\" for an upload)");
    }
    return name;
  }
  D2_RETURN_IF_ERROR(coordinator.CheckJobExists(job_id));
  return absl::StrCat("jobs/", job_id, "/", name);
}

// Ids from clients, bounded before they reach the coordinator, the job store
// or an error message (Coordinator::Cancel bounds the cancel reason).
constexpr size_t kMaxIdBytes = 128;

absl::Status CheckId(const char* field, const std::string& id) {
  if (id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", id.size(), " bytes, longer than the limit of ", kMaxIdBytes));
  }
  return absl::OkStatus();
}

}  // namespace

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                                       v1::Job* response) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.JobService/SubmitJob"); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = CheckSpecPathRoots(*request, *roots_); !s.ok()) return ToGrpcStatus(s);
  auto job = coordinator_->Submit(*request);
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request, v1::Job* response) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.JobService/GetJob"); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = CheckId("id", request->id()); !s.ok()) return ToGrpcStatus(s);
  auto job = coordinator_->GetJob(request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                                      v1::ListJobsResponse* response) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.JobService/ListJobs"); !s.ok()) return ToGrpcStatus(s);
  auto list = coordinator_->ListJobs(*request);
  if (!list.ok()) return ToGrpcStatus(list.status());
  *response = *std::move(list);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                                       v1::Job* response) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.JobService/CancelJob"); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = CheckId("id", request->id()); !s.ok()) return ToGrpcStatus(s);
  auto job = coordinator_->Cancel(request->id(), request->reason());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::PauseJob(grpc::ServerContext* context, const v1::PauseJobRequest* request,
                                      v1::Job* response) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.JobService/PauseJob"); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = CheckId("id", request->id()); !s.ok()) return ToGrpcStatus(s);
  auto job = coordinator_->Pause(request->id(), request->reason());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ResumeJob(grpc::ServerContext* context, const v1::ResumeJobRequest* request,
                                       v1::Job* response) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.JobService/ResumeJob"); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = CheckId("id", request->id()); !s.ok()) return ToGrpcStatus(s);
  auto job = coordinator_->Resume(request->id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                                      grpc::ServerWriter<v1::JobEvent>* writer) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.JobService/WatchJob"); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = CheckId("id", request->id()); !s.ok()) return ToGrpcStatus(s);
  int64_t after = request->after_seq();
  while (!context->IsCancelled()) {
    auto batch = coordinator_->WaitEvents(request->id(), after, request->follow() ? absl::Seconds(1) : absl::ZeroDuration());
    if (!batch.ok()) return ToGrpcStatus(batch.status());
    for (const v1::JobEvent& e : batch->events) {
      if (!writer->Write(e)) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      after = e.seq();
    }
    if (batch->job_ended) break;
    if (!request->follow() && batch->events.empty()) break;
  }
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListArtifacts(grpc::ServerContext* context, const v1::ListArtifactsRequest* request,
                                           v1::ListArtifactsResponse* response) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.JobService/ListArtifacts"); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = CheckId("job_id", request->job_id()); !s.ok()) return ToGrpcStatus(s);
  const std::string& prefix = request->prefix();
  if (prefix.size() > 1024 || absl::StrContains(prefix, "..") || absl::StartsWith(prefix, "/")) {
    return ToGrpcStatus(absl::InvalidArgumentError("prefix: must be a relative path without \"..\""));
  }
  // job_id "" lists an upload: prefix "uploads/ID/"; names come back as "uploads/ID/NAME".
  std::string root;
  if (request->job_id().empty()) {
    if (!absl::StartsWith(prefix, "uploads/") || prefix.size() <= 8) {
      return ToGrpcStatus(absl::InvalidArgumentError("job_id: required (or prefix \"uploads/ID/\" to list an upload)"));
    }
  } else {
    if (absl::Status s = coordinator_->CheckJobExists(request->job_id()); !s.ok()) return ToGrpcStatus(s);
    root = absl::StrCat("jobs/", request->job_id(), "/");
  }
  auto files = artifacts_->List(root + prefix);
  if (!files.ok()) return ToGrpcStatus(files.status());
  for (const ArtifactInfo& f : *files) *response->add_artifacts() = ToProto(f, f.key.substr(root.size()));
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListCheckpoints(grpc::ServerContext* context, const v1::ListCheckpointsRequest* request,
                                             v1::ListCheckpointsResponse* response) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.JobService/ListCheckpoints"); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (absl::Status s = CheckId("job_id", request->job_id()); !s.ok()) return ToGrpcStatus(s);
  if (request->job_id().empty()) return ToGrpcStatus(absl::InvalidArgumentError("job_id: required"));
  auto listed = coordinator_->ListCheckpoints(request->job_id());
  if (!listed.ok()) return ToGrpcStatus(listed.status());
  *response = *std::move(listed);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::DownloadArtifact(grpc::ServerContext* context, const v1::DownloadArtifactRequest* request,
                                              grpc::ServerWriter<v1::FileChunk>* writer) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.JobService/DownloadArtifact"); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = CheckId("job_id", request->job_id()); !s.ok()) return ToGrpcStatus(s);
  auto key = ArtifactKey(*coordinator_, request->job_id(), request->name());
  if (!key.ok()) return ToGrpcStatus(key.status());
  return ToGrpcStatus(StreamArtifact(*artifacts_, *key, request->offset(), *context, *writer));
}

grpc::Status JobServiceImpl::UploadFile(grpc::ServerContext* context, grpc::ServerReader<v1::UploadFileRequest>* reader,
                                        v1::UploadFileResponse* response) {
  if (absl::Status s = auth_->Authorize(*context, "d2lora.v1.JobService/UploadFile"); !s.ok()) return ToGrpcStatus(s);
  v1::UploadFileRequest message;
  if (!reader->Read(&message) || !message.has_header()) {
    return ToGrpcStatus(absl::InvalidArgumentError("the first message must be the header"));
  }
  const v1::UploadHeader header = message.header();
  if (absl::Status s = ValidateArtifactKey(header.name()); !s.ok()) {
    return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat("header.name: ", s.message())));
  }
  std::string upload_id = header.upload_id();
  if (upload_id.empty()) {
    upload_id = NewUploadId();
  } else {
    if (!LooksLikeId(upload_id)) return ToGrpcStatus(absl::InvalidArgumentError("header.upload_id: not an upload id"));
    auto existing = artifacts_->List(absl::StrCat("uploads/", upload_id, "/"));
    if (!existing.ok()) return ToGrpcStatus(existing.status());
    if (existing->empty()) return ToGrpcStatus(absl::NotFoundError(absl::StrCat("upload ", upload_id, " not found")));
  }
  const std::string key = absl::StrCat("uploads/", upload_id, "/", header.name());
  auto info = ReceiveArtifact(*artifacts_, key, header.size(), header.sha256(),
                              coordinator_->options().max_upload_bytes, DataParts(reader));
  if (!info.ok()) return ToGrpcStatus(info.status());
  response->set_upload_id(upload_id);
  *response->mutable_file() = ToProto(*info, header.name());
  response->set_reference(absl::StrCat("upload:", upload_id, "/", header.name()));
  return grpc::Status::OK;
}

}  // namespace d2lora::server
